// Core checks and defaults of the Tunnel message. Address- and URL-shaped fields are found by
// name anywhere in the message (backends' messages included), so a backend that adds a
// `listen` or `*_addr` field gets the check without code here.
#include <set>

#include "field_access.hpp"
#include "tunnelkit/config/config_loader.hpp"
#include "tunnelkit/config/duration.hpp"
#include "tunnelkit/session/backoff.hpp"

namespace tunnelkit::config {

namespace pb = google::protobuf;

namespace {

const std::set<std::string> kAddressFields = {"listen", "http", "tcp", "server", "metrics", "edge"};
const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "off"};
const std::set<std::string> kFormats = {"text", "json"};
const std::set<std::string> kModes = {"run", "serve", "link", "access"};

bool EndsWith(const std::string& text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string Join(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "." + name;
}

void CheckString(const pb::FieldDescriptor* field, const std::string& value,
                 const std::string& path, std::vector<ConfigIssue>& issues) {
  if (value.empty()) return;
  const std::string& name = field->name();
  const std::string parent = field->containing_type()->full_name();
  std::string reason;
  if (name == "url" || (name == "service" && parent == "tunnelkit.config.v1.IngressRule")) {
    reason = CheckService(value);
  } else if (name == "quick_service") {
    reason = CheckUrl(value, {"http", "https"});
  } else if (kAddressFields.count(name) || EndsWith(name, "_addr")) {
    // A URL-shaped value (zlayer's server is ws[s]://...) is checked as a URL.
    if (value.find("://") != std::string::npos) {
      reason = CheckUrl(value, {"ws", "wss", "http", "https", "tcp"});
    } else {
      // The admin endpoint may bind an ephemeral port; it prints the one it got.
      reason = CheckHostPort(value, name == "metrics" ? 0 : 1);
    }
  }
  if (!reason.empty()) issues.push_back({path, detail::Quote(value) + ": " + reason});
}

void Walk(const pb::Message& message, const std::string& path, std::vector<ConfigIssue>& issues) {
  const auto* reflection = message.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const auto* field : fields) {
    const std::string field_path = Join(path, field->name());
    if (detail::IsDuration(field)) {
      auto check = [&](const pb::Message& d, const std::string& p) {
        const auto& duration = static_cast<const google::protobuf::Duration&>(d);
        if (duration.seconds() < 0 || duration.nanos() < 0) {
          issues.push_back({p, "duration must not be negative"});
        }
      };
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          check(reflection->GetRepeatedMessage(message, field, i),
                field_path + "[" + std::to_string(i) + "]");
        }
      } else {
        check(reflection->GetMessage(message, field), field_path);
      }
      continue;
    }
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_map()) continue;
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          Walk(reflection->GetRepeatedMessage(message, field, i),
               field_path + "[" + std::to_string(i) + "]", issues);
        }
      } else {
        Walk(reflection->GetMessage(message, field), field_path, issues);
      }
      continue;
    }
    if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING) continue;
    if (field->is_repeated()) {
      for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
        CheckString(field, reflection->GetRepeatedString(message, field, i),
                    field_path + "[" + std::to_string(i) + "]", issues);
      }
    } else {
      CheckString(field, reflection->GetString(message, field), field_path, issues);
    }
  }
}

void CheckChoice(const std::string& value, const std::set<std::string>& allowed,
                 const std::string& path, std::vector<ConfigIssue>& issues) {
  if (value.empty() || allowed.count(value)) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : "|") + a;
  issues.push_back({path, detail::Quote(value) + ": expected " + list});
}

}  // namespace

std::vector<ConfigIssue> ValidateCore(const config::v1::Tunnel& tunnel) {
  std::vector<ConfigIssue> issues;
  CheckChoice(tunnel.log().level(), kLevels, "log.level", issues);
  CheckChoice(tunnel.log().format(), kFormats, "log.format", issues);
  CheckChoice(tunnel.mode(), kModes, "mode", issues);
  for (char c : tunnel.id()) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f || c == '"' || c == '\\') {
      issues.push_back({"id", detail::Quote(tunnel.id()) +
                                  ": spaces, quotes and control characters are not allowed"});
      break;
    }
  }
  Walk(tunnel, "", issues);
  if (!tunnel.url().empty() && tunnel.ingress_size() > 0) {
    issues.push_back({"url", "cannot be combined with ingress rules (put it in ingress instead)"});
  }
  if (tunnel.has_reconnect()) {
    session::ValidateBackoffConfig(tunnel.reconnect(), "reconnect", issues);
  }
  return issues;
}

void FillCoreDefaults(config::v1::Tunnel& tunnel) {
  using namespace std::chrono_literals;
  if (tunnel.mode().empty()) tunnel.set_mode("run");
  if (tunnel.id().empty()) {
    // The backend's own tunnel name when it has one, else the backend's name.
    std::string id;
    const auto* backend_field = config::v1::Tunnel::descriptor()->FindFieldByName(tunnel.backend());
    if (backend_field && detail::IsPlainMessage(backend_field) && !backend_field->is_repeated()) {
      const auto& sub = tunnel.GetReflection()->GetMessage(tunnel, backend_field);
      if (const auto* tid = sub.GetDescriptor()->FindFieldByName("tunnel_id");
          tid && tid->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING && !tid->is_repeated()) {
        id = sub.GetReflection()->GetString(sub, tid);
      }
    }
    if (id.empty()) id = tunnel.backend().empty() ? "tunnel" : tunnel.backend();
    tunnel.set_id(id);
  }
  auto* log = tunnel.mutable_log();
  if (log->level().empty()) log->set_level("info");
  if (log->format().empty()) log->set_format("text");
  if (!tunnel.has_grace_period()) *tunnel.mutable_grace_period() = ToProto(30s);
  auto* r = tunnel.mutable_reconnect();
  if (!r->has_base()) *r->mutable_base() = ToProto(1s);
  if (r->factor() == 0) r->set_factor(2);
  if (!r->has_cap()) *r->mutable_cap() = ToProto(60s);
  if (r->jitter() == 0) r->set_jitter(0.3);
  if (!r->has_healthy_after()) *r->mutable_healthy_after() = ToProto(30s);
  auto* o = tunnel.mutable_origin_request();
  if (!o->has_connect_timeout()) *o->mutable_connect_timeout() = ToProto(30s);
  if (o->keep_alive_connections() == 0) o->set_keep_alive_connections(100);
  if (!o->has_keep_alive_timeout()) *o->mutable_keep_alive_timeout() = ToProto(90s);
}

}  // namespace tunnelkit::config
