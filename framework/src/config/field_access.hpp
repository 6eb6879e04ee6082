// Reflection helpers shared by the loader, the validator and the YAML renderer (internal).
#pragma once

#include <string>
#include <string_view>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

namespace tunnelkit::config::detail {

// The field of `type` named `key` in snake_case, camelCase or kebab-case; null if none.
const google::protobuf::FieldDescriptor* FindField(const google::protobuf::Descriptor* type,
                                                   std::string_view key);

bool IsDuration(const google::protobuf::FieldDescriptor* field);
// A nested message other than Duration (a map of fields in a file).
bool IsPlainMessage(const google::protobuf::FieldDescriptor* field);

// Converts text to the field's type and sets it (or appends, for repeated fields).
// `plain_number_is_seconds`: a bare number for a Duration means seconds (files only).
// Returns an empty string on success, else the reason.
std::string SetFromText(google::protobuf::Message& message,
                        const google::protobuf::FieldDescriptor* field, std::string_view text,
                        bool plain_number_is_seconds);

// "bool", "integer", "duration (e.g. 30s)", ... for messages about wrong types.
std::string TypeName(const google::protobuf::FieldDescriptor* field);

std::string Quote(std::string_view text);

}  // namespace tunnelkit::config::detail
