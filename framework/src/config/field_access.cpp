#include "field_access.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "tunnelkit/config/duration.hpp"

namespace tunnelkit::config::detail {

namespace pb = google::protobuf;

namespace {

// Well-formed UTF-8 (RFC 3629: shortest forms, no surrogates, at most U+10FFFF). Protobuf
// `string` fields must hold it: a file's raw bytes would make a message that does not
// serialise and renders (RenderYaml) as a different string.
bool IsUtf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    std::uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
      code = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      code = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if ((length == 3 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) ||
        (length == 4 && (code < 0x10000 || code > 0x10FFFF))) {
      return false;
    }
    i += length;
  }
  return true;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

template <typename T>
std::string ParseInteger(std::string_view text, T& out) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  if (digits.empty()) return "expected an integer, got " + Quote(text);
  if (std::is_unsigned_v<T> && digits.front() == '-') {
    return "must not be negative, got " + Quote(text);
  }
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
  if (ec == std::errc::result_out_of_range) {
    return Quote(text) + ": out of range " + std::to_string(std::numeric_limits<T>::min()) + ".." +
           std::to_string(std::numeric_limits<T>::max());
  }
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    return "expected an integer, got " + Quote(text);
  }
  return {};
}

std::string ParseDouble(std::string_view text, double& out) {
  std::string copy(text);
  if (copy.empty()) return "expected a number, got \"\"";
  char* end = nullptr;
  errno = 0;
  out = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || errno == ERANGE || !std::isfinite(out)) {
    return "expected a number, got " + Quote(text);
  }
  return {};
}

std::string ParseBool(std::string_view text, bool& out) {
  const std::string lower = Lower(text);
  if (lower == "true" || lower == "yes" || lower == "on" || lower == "1") {
    out = true;
    return {};
  }
  if (lower == "false" || lower == "no" || lower == "off" || lower == "0") {
    out = false;
    return {};
  }
  return "expected true or false, got " + Quote(text);
}

}  // namespace

std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[(c >> 4) & 0xf];
      out += hex[c & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

const pb::FieldDescriptor* FindField(const pb::Descriptor* type, std::string_view key) {
  std::string name(key);
  if (const auto* field = type->FindFieldByName(name)) return field;
  for (auto& c : name) {
    if (c == '-') c = '_';
  }
  if (const auto* field = type->FindFieldByName(name)) return field;
  return type->FindFieldByCamelcaseName(std::string(key));
}

bool IsDuration(const pb::FieldDescriptor* field) {
  return field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
         field->message_type()->full_name() == "google.protobuf.Duration";
}

bool IsPlainMessage(const pb::FieldDescriptor* field) {
  return field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !IsDuration(field);
}

std::string TypeName(const pb::FieldDescriptor* field) {
  if (field->is_map()) return "map";
  if (IsDuration(field)) return "duration (e.g. 500ms, 30s, 1h30m)";
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return "true or false";
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return "integer";
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return "non-negative integer";
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return "number";
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return "string";
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return "one of the names of " + field->enum_type()->name();
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return "map of fields";
  }
  return "value";
}

std::string SetFromText(pb::Message& message, const pb::FieldDescriptor* field,
                        std::string_view text, bool plain_number_is_seconds) {
  const auto* reflection = message.GetReflection();
  const bool repeated = field->is_repeated();
  if (field->is_map()) {
    // key=value for map<scalar, scalar>
    const auto* entry_type = field->message_type();
    const auto* key_field = entry_type->FindFieldByName("key");
    const auto* value_field = entry_type->FindFieldByName("value");
    auto eq = text.find('=');
    if (eq == std::string_view::npos) return "expected KEY=VALUE, got " + Quote(text);
    if (value_field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
        !IsDuration(value_field)) {
      return "map of messages cannot be set from text";
    }
    pb::Message* entry = reflection->AddMessage(&message, field);
    std::string err = SetFromText(*entry, key_field, text.substr(0, eq), false);
    if (err.empty()) {
      err = SetFromText(*entry, value_field, text.substr(eq + 1), plain_number_is_seconds);
    }
    if (!err.empty()) reflection->RemoveLast(&message, field);
    return err;
  }
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      if (field->type() == pb::FieldDescriptor::TYPE_STRING && !IsUtf8(text)) {
        return "not valid UTF-8";
      }
      std::string value(text);
      if (repeated)
        reflection->AddString(&message, field, value);
      else
        reflection->SetString(&message, field, value);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      bool value = false;
      if (auto err = ParseBool(text, value); !err.empty()) return err;
      if (repeated)
        reflection->AddBool(&message, field, value);
      else
        reflection->SetBool(&message, field, value);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      std::int32_t value = 0;
      if (auto err = ParseInteger(text, value); !err.empty()) return err;
      if (repeated)
        reflection->AddInt32(&message, field, value);
      else
        reflection->SetInt32(&message, field, value);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      std::int64_t value = 0;
      if (auto err = ParseInteger(text, value); !err.empty()) return err;
      if (repeated)
        reflection->AddInt64(&message, field, value);
      else
        reflection->SetInt64(&message, field, value);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      std::uint32_t value = 0;
      if (auto err = ParseInteger(text, value); !err.empty()) return err;
      if (repeated)
        reflection->AddUInt32(&message, field, value);
      else
        reflection->SetUInt32(&message, field, value);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      std::uint64_t value = 0;
      if (auto err = ParseInteger(text, value); !err.empty()) return err;
      if (repeated)
        reflection->AddUInt64(&message, field, value);
      else
        reflection->SetUInt64(&message, field, value);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      double value = 0;
      if (auto err = ParseDouble(text, value); !err.empty()) return err;
      if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT) {
        if (repeated)
          reflection->AddFloat(&message, field, static_cast<float>(value));
        else
          reflection->SetFloat(&message, field, static_cast<float>(value));
      } else {
        if (repeated)
          reflection->AddDouble(&message, field, value);
        else
          reflection->SetDouble(&message, field, value);
      }
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const auto* type = field->enum_type();
      const std::string wanted = Lower(text);
      const pb::EnumValueDescriptor* match = nullptr;
      std::string names;
      for (int i = 0; i < type->value_count(); ++i) {
        const auto* value = type->value(i);
        if (Lower(value->name()) == wanted) match = value;
        names += (i ? ", " : "") + Lower(value->name());
      }
      if (!match) return Quote(text) + ": expected one of " + names;
      if (repeated)
        reflection->AddEnum(&message, field, match);
      else
        reflection->SetEnum(&message, field, match);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE: {
      if (!IsDuration(field)) return "expected a map of fields, got " + Quote(text);
      std::optional<std::chrono::nanoseconds> value;
      std::string error;
      double seconds = 0;
      if (plain_number_is_seconds && ParseDouble(text, seconds).empty()) {
        value = SecondsToDuration(seconds);
        if (!value) error = "duration out of range: " + Quote(text);
      } else if (auto parsed = ParseDuration(text)) {
        value = *parsed;
      } else {
        error = parsed.message();
      }
      if (!value) return error;
      auto proto = ToProto(*value);
      if (repeated)
        reflection->AddMessage(&message, field)->CopyFrom(proto);
      else
        reflection->MutableMessage(&message, field)->CopyFrom(proto);
      return {};
    }
  }
  return "unsupported field type";
}

}  // namespace tunnelkit::config::detail
