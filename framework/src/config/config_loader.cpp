#include "tunnelkit/config/config_loader.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "field_access.hpp"
#include "tunnelkit/config/duration.hpp"

namespace tunnelkit::config {

namespace pb = google::protobuf;
using detail::FindField;
using detail::IsDuration;
using detail::IsPlainMessage;
using detail::Quote;

std::string Issue::Describe() const {
  std::string out;
  if (!file.empty()) {
    out += file;
    if (line > 0) out += ":" + std::to_string(line);
    out += ": ";
  }
  if (!path.empty()) out += path + ": ";
  out += reason;
  return out;
}

namespace {

std::string Join(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "." + name;
}

int LineOf(const YAML::Node& node) {
  const auto mark = node.Mark();
  return mark.line >= 0 ? mark.line + 1 : 0;
}

std::string NodeKind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "nothing";
  }
}

}  // namespace

// The file walk: one YAML node onto one message, recording where each field was set.
struct LoaderAccess {
  ConfigLoader& loader;
  std::string source;

  void Add(const std::string& path, std::string reason, const YAML::Node& node) {
    Issue issue;
    issue.path = path;
    issue.reason = std::move(reason);
    issue.file = source;
    issue.line = LineOf(node);
    loader.issues_.push_back(std::move(issue));
  }

  void Remember(const std::string& path, const YAML::Node& node) {
    loader.origins_[path] = {source, LineOf(node)};
  }

  void MergeMap(const YAML::Node& node, pb::Message& message, const std::string& path) {
    if (!node.IsMap()) {
      Add(path, "expected a map of fields, got " + NodeKind(node), node);
      return;
    }
    const auto* type = message.GetDescriptor();
    for (const auto& item : node) {
      const std::string key = item.first.Scalar();
      const auto* field = FindField(type, key);
      if (!field) {
        Add(Join(path, key), "unknown field", item.first);
        continue;
      }
      MergeField(item.second, message, field, Join(path, field->name()));
    }
  }

  // A scalar node's text; false (with an issue) if the node is not a scalar.
  bool ScalarText(const YAML::Node& node, const pb::FieldDescriptor* field, const std::string& path,
                  std::string& text) {
    if (!node.IsScalar()) {
      Add(path, "expected " + detail::TypeName(field) + ", got " + NodeKind(node), node);
      return false;
    }
    text = node.Scalar();
    return true;
  }

  void MergeScalar(const YAML::Node& node, pb::Message& message, const pb::FieldDescriptor* field,
                   const std::string& path) {
    std::string text;
    if (!ScalarText(node, field, path, text)) return;
    // A plain (unquoted) number is seconds for a Duration, as in JSON.
    const bool plain = node.Tag() != "!";
    if (auto err = detail::SetFromText(message, field, text, plain); !err.empty()) {
      Add(path, err, node);
      return;
    }
    Remember(path, node);
  }

  void MergeField(const YAML::Node& node, pb::Message& message, const pb::FieldDescriptor* field,
                  const std::string& path) {
    if (node.IsNull()) return;  // "key:" with no value leaves the field unset
    const auto* reflection = message.GetReflection();
    if (field->is_map()) {
      if (!node.IsMap()) {
        Add(path, "expected a map, got " + NodeKind(node), node);
        return;
      }
      const auto* entry_type = field->message_type();
      const auto* value_field = entry_type->FindFieldByName("value");
      for (const auto& item : node) {
        const std::string entry_path = path + "[" + item.first.Scalar() + "]";
        pb::Message* entry = reflection->AddMessage(&message, field);
        auto err = detail::SetFromText(*entry, entry_type->FindFieldByName("key"),
                                       item.first.Scalar(), false);
        if (!err.empty()) {
          reflection->RemoveLast(&message, field);
          Add(entry_path, err, item.first);
          continue;
        }
        if (IsPlainMessage(value_field)) {
          MergeMap(item.second, *reflection->MutableMessage(entry, value_field), entry_path);
        } else {
          MergeScalar(item.second, *entry, value_field, entry_path);
        }
      }
      Remember(path, node);
      return;
    }
    if (field->is_repeated()) {
      // A single value is accepted as a list of one.
      std::vector<YAML::Node> items;
      if (node.IsSequence()) {
        for (const auto& item : node) items.push_back(item);
      } else {
        items.push_back(node);
      }
      reflection->ClearField(&message, field);
      Remember(path, node);
      for (std::size_t i = 0; i < items.size(); ++i) {
        const std::string item_path = path + "[" + std::to_string(i) + "]";
        if (IsPlainMessage(field)) {
          pb::Message* child = reflection->AddMessage(&message, field);
          Remember(item_path, items[i]);
          MergeMap(items[i], *child, item_path);
        } else {
          MergeScalar(items[i], message, field, item_path);
        }
      }
      return;
    }
    if (IsPlainMessage(field)) {
      Remember(path, node);
      MergeMap(node, *reflection->MutableMessage(&message, field), path);
      return;
    }
    MergeScalar(node, message, field, path);
  }
};

ConfigLoader::ConfigLoader() = default;

void ConfigLoader::MergeText(std::string_view text, const std::string& source) {
  LoaderAccess access{*this, source};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::ParserException& e) {
    Issue issue;
    issue.file = source;
    issue.line = e.mark.line >= 0 ? e.mark.line + 1 : 0;
    issue.reason = "not valid YAML or JSON: " + e.msg;
    issues_.push_back(std::move(issue));
    return;
  } catch (const YAML::Exception& e) {
    Issue issue;
    issue.file = source;
    issue.reason = std::string("not valid YAML or JSON: ") + e.what();
    issues_.push_back(std::move(issue));
    return;
  }
  if (root.IsNull()) return;  // an empty file configures nothing
  try {
    access.MergeMap(root, config_, "");
  } catch (const YAML::Exception& e) {
    Issue issue;
    issue.file = source;
    issue.reason = std::string("cannot read: ") + e.what();
    issues_.push_back(std::move(issue));
  }
}

void ConfigLoader::MergeFile(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    Issue issue;
    issue.path = "--config";
    issue.reason = Quote(file.string()) + ": cannot open the file";
    issues_.push_back(std::move(issue));
    return;
  }
  std::ostringstream text;
  text << in.rdbuf();
  // Files larger than this are not configuration.
  constexpr std::size_t kMaxConfigBytes = 4 << 20;
  if (text.str().size() > kMaxConfigBytes) {
    Issue issue;
    issue.file = file.string();
    issue.reason = "file larger than 4 MiB";
    issues_.push_back(std::move(issue));
    return;
  }
  MergeText(text.str(), file.string());
}

namespace {

struct FlagTarget {
  std::vector<const pb::FieldDescriptor*> chain;  // message fields to walk, then the leaf
  std::string path;
};

// Resolves dash-separated words onto fields, walking into nested messages: the longest
// prefix of words that names a field wins at each level.
bool ResolveWords(const pb::Descriptor* type, const std::vector<std::string>& words,
                  std::size_t first, FlagTarget& target, const std::string& path) {
  for (std::size_t end = words.size(); end > first; --end) {
    std::string name;
    for (std::size_t i = first; i < end; ++i) name += (i > first ? "_" : "") + words[i];
    const auto* field = type->FindFieldByName(name);
    if (!field) continue;
    if (end == words.size()) {
      if (IsPlainMessage(field) && !field->is_map()) continue;  // needs a sub-field
      target.chain.push_back(field);
      target.path = Join(path, field->name());
      return true;
    }
    if (!IsPlainMessage(field) || field->is_repeated()) continue;
    target.chain.push_back(field);
    if (ResolveWords(field->message_type(), words, end, target, Join(path, field->name()))) {
      return true;
    }
    target.chain.pop_back();
  }
  return false;
}

std::vector<std::string> SplitWords(const std::string& name) {
  std::vector<std::string> words;
  std::string current;
  for (char c : name) {
    if (c == '-' || c == '_') {
      words.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  words.push_back(current);
  return words;
}

const pb::FieldDescriptor* BackendField(const std::string& backend) {
  if (backend.empty()) return nullptr;
  const auto* field = config::v1::Tunnel::descriptor()->FindFieldByName(backend);
  if (!field || !IsPlainMessage(field) || field->is_repeated()) return nullptr;
  return field;
}

bool ResolveFlag(const std::string& name, const std::string& backend, FlagTarget& target) {
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  }
  const auto words = SplitWords(name);
  for (const auto& word : words) {
    if (word.empty()) return false;
  }
  const auto* tunnel = config::v1::Tunnel::descriptor();
  if (ResolveWords(tunnel, words, 0, target, "")) return true;
  if (const auto* field = BackendField(backend)) {
    target.chain = {field};
    if (ResolveWords(field->message_type(), words, 0, target, field->name())) return true;
  }
  target.chain.clear();
  return false;
}

}  // namespace

void ConfigLoader::ApplyFlags(const std::vector<std::string>& args) {
  // The backend selects the message for backend flags; find it before anything else.
  std::string backend = config_.backend();
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--backend" && i + 1 < args.size()) backend = args[i + 1];
    if (args[i].rfind("--backend=", 0) == 0) backend = args[i].substr(10);
  }
  std::set<std::string> repeated_seen;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.rfind("--", 0) != 0) {
      Issue issue;
      issue.path = arg;
      issue.reason = "unexpected argument (flags are --name VALUE)";
      issues_.push_back(std::move(issue));
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    auto takes_next = [&] { return i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0; };
    FlagTarget target;
    if (!ResolveFlag(name, backend, target)) {
      Issue issue;
      issue.path = "--" + name;
      issue.reason = backend.empty() || !BackendField(backend)
                         ? "unknown flag"
                         : "unknown flag (not a core field nor a field of " + backend + ")";
      issues_.push_back(std::move(issue));
      if (!value && takes_next()) ++i;  // skip its value so it is not reported again
      continue;
    }
    const auto* leaf = target.chain.back();
    if (!value) {
      if (leaf->cpp_type() == pb::FieldDescriptor::CPPTYPE_BOOL && !leaf->is_repeated()) {
        value = "true";
      } else if (takes_next()) {
        value = args[++i];
      } else {
        // Missing, or followed by another flag: "--token --tls" is a mistake, not a token.
        // (A value that starts with "--" is written --flag=--value.)
        Issue issue;
        issue.path = target.path;
        issue.reason = "--" + name + " needs a value";
        issues_.push_back(std::move(issue));
        continue;
      }
    }
    // Walk to the message holding the leaf.
    pb::Message* message = &config_;
    for (std::size_t k = 0; k + 1 < target.chain.size(); ++k) {
      message = message->GetReflection()->MutableMessage(message, target.chain[k]);
    }
    if (leaf->is_repeated() && repeated_seen.insert(target.path).second) {
      // The first flag for a list replaces what the file said; later ones append.
      message->GetReflection()->ClearField(message, leaf);
    }
    // The flag now owns this field: forget where the file set it (an entry without a file
    // stops the search for a location at the field's parents).
    for (auto it = origins_.lower_bound(target.path);
         it != origins_.end() && it->first.rfind(target.path, 0) == 0;) {
      it = origins_.erase(it);
    }
    origins_[target.path] = {std::string(), 0};
    if (auto err = detail::SetFromText(*message, leaf, *value, false); !err.empty()) {
      Issue issue;
      issue.path = target.path;
      issue.reason = err;
      issues_.push_back(std::move(issue));
    }
  }
}

void ConfigLoader::Set(const std::string& path, const std::string& value) {
  std::string flag = path;
  for (auto& c : flag) {
    if (c == '.' || c == '_') c = '-';
  }
  ApplyFlags({"--" + flag + "=" + value});
}

void ConfigLoader::FillDefaults() {
  FillCoreDefaults(config_);
}

namespace {

Issue LocateIn(const std::map<std::string, std::pair<std::string, int>>& origins,
               const ConfigIssue& found) {
  Issue issue;
  issue.path = found.path;
  issue.reason = found.reason;
  // The deepest recorded prefix of the path tells where the file set it.
  std::string probe = found.path;
  while (!probe.empty()) {
    if (auto it = origins.find(probe); it != origins.end()) {
      issue.file = it->second.first;
      issue.line = it->second.second;
      break;
    }
    auto cut = probe.find_last_of(".[");
    if (cut == std::string::npos) break;
    probe.resize(cut);
  }
  return issue;
}

}  // namespace

Issue BuildResult::Locate(const ConfigIssue& issue) const {
  return LocateIn(origins, issue);
}

void ConfigLoader::AddIssues(const std::vector<ConfigIssue>& issues) {
  for (const auto& found : issues) issues_.push_back(LocateIn(origins_, found));
}

void ConfigLoader::Validate() {
  AddIssues(ValidateCore(config_));
}

BuildResult BuildConfig(const BuildOptions& options) {
  BuildResult result;
  std::vector<std::string> flags;
  std::vector<Issue> early;
  for (std::size_t i = 0; i < options.args.size(); ++i) {
    const std::string& arg = options.args[i];
    if (arg == "--config") {
      if (i + 1 >= options.args.size()) {
        Issue issue;
        issue.path = "--config";
        issue.reason = "needs a file name";
        early.push_back(std::move(issue));
      } else {
        result.config_file = options.args[++i];
      }
    } else if (arg.rfind("--config=", 0) == 0) {
      result.config_file = arg.substr(9);
    } else if (arg == "--check" || arg == "--check=true") {
      result.check = true;
    } else if (arg == "--check=false") {
      result.check = false;
    } else {
      flags.push_back(arg);
    }
  }
  ConfigLoader loader;
  if (!result.config_file.empty()) loader.MergeFile(result.config_file);
  loader.ApplyFlags(flags);
  auto& config = loader.mutable_config();
  if (!options.mode.empty()) config.set_mode(options.mode);
  const bool unreadable = std::any_of(loader.issues().begin(), loader.issues().end(),
                                      [](const Issue& issue) { return issue.path.empty(); });
  if (config.backend().empty() && !unreadable) {
    loader.AddIssues({{"backend", "required: give --backend NAME or backend: in the file"}});
  }
  if (options.fill_defaults) loader.FillDefaults();
  loader.Validate();
  result.config = loader.config();
  result.origins = loader.origins();
  result.issues = early;
  result.issues.insert(result.issues.end(), loader.issues().begin(), loader.issues().end());
  return result;
}

}  // namespace tunnelkit::config
