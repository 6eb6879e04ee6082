// The effective configuration as YAML (tunnelctl --check). Reads back with ConfigLoader.
#include <yaml-cpp/yaml.h>

#include "field_access.hpp"
#include "tunnelkit/config/config_loader.hpp"
#include "tunnelkit/config/duration.hpp"

namespace tunnelkit::config {

namespace pb = google::protobuf;

namespace {

void EmitMessage(YAML::Emitter& out, const pb::Message& message, bool mask);

void EmitValue(YAML::Emitter& out, const pb::Message& message, const pb::FieldDescriptor* field,
               int index, bool mask) {
  const auto* r = message.GetReflection();
  const bool rep = index >= 0;
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string value =
          rep ? r->GetRepeatedString(message, field, index) : r->GetString(message, field);
      if (mask && IsSecretField(field->name()) && !value.empty()) value = "***";
      out << YAML::DoubleQuoted << value;
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      out << (rep ? r->GetRepeatedBool(message, field, index) : r->GetBool(message, field));
      break;
    case pb::FieldDescriptor::CPPTYPE_INT32:
      out << (rep ? r->GetRepeatedInt32(message, field, index) : r->GetInt32(message, field));
      break;
    case pb::FieldDescriptor::CPPTYPE_INT64:
      out << (rep ? r->GetRepeatedInt64(message, field, index) : r->GetInt64(message, field));
      break;
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      out << (rep ? r->GetRepeatedUInt32(message, field, index) : r->GetUInt32(message, field));
      break;
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      out << (rep ? r->GetRepeatedUInt64(message, field, index) : r->GetUInt64(message, field));
      break;
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      out << (rep ? r->GetRepeatedFloat(message, field, index) : r->GetFloat(message, field));
      break;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      out << (rep ? r->GetRepeatedDouble(message, field, index) : r->GetDouble(message, field));
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      std::string name =
          (rep ? r->GetRepeatedEnum(message, field, index) : r->GetEnum(message, field))->name();
      for (auto& c : name) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      out << name;
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE: {
      const auto& sub =
          rep ? r->GetRepeatedMessage(message, field, index) : r->GetMessage(message, field);
      if (detail::IsDuration(field)) {
        out << FormatDuration(FromProto(static_cast<const google::protobuf::Duration&>(sub)));
      } else {
        EmitMessage(out, sub, mask);
      }
      break;
    }
  }
}

void EmitMessage(YAML::Emitter& out, const pb::Message& message, bool mask) {
  const auto* r = message.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(message, &fields);
  out << YAML::BeginMap;
  for (const auto* field : fields) {
    out << YAML::Key << field->name() << YAML::Value;
    if (field->is_map()) {
      out << YAML::BeginMap;
      for (int i = 0; i < r->FieldSize(message, field); ++i) {
        const auto& entry = r->GetRepeatedMessage(message, field, i);
        const auto* d = entry.GetDescriptor();
        out << YAML::Key;
        EmitValue(out, entry, d->FindFieldByName("key"), -1, mask);
        out << YAML::Value;
        EmitValue(out, entry, d->FindFieldByName("value"), -1, mask);
      }
      out << YAML::EndMap;
    } else if (field->is_repeated()) {
      out << YAML::BeginSeq;
      for (int i = 0; i < r->FieldSize(message, field); ++i)
        EmitValue(out, message, field, i, mask);
      out << YAML::EndSeq;
    } else {
      EmitValue(out, message, field, -1, mask);
    }
  }
  out << YAML::EndMap;
}

}  // namespace

std::string RenderYaml(const pb::Message& message, bool mask_secrets) {
  YAML::Emitter out;
  out.SetBoolFormat(YAML::TrueFalseBool);
  out.SetBoolFormat(YAML::LowerCase);
  // Enough digits for what people type (0.3, not 0.29999999999999999).
  out.SetDoublePrecision(15);
  out.SetFloatPrecision(7);
  EmitMessage(out, message, mask_secrets);
  std::string text = out.c_str();
  if (text == "{}") return "{}\n";
  return text + "\n";
}

}  // namespace tunnelkit::config
