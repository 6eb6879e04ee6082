#include "tunnelkit/cloudflare/wire/codec/connect_metadata.hpp"

#include <cstring>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include "cloudflare/quic_metadata_protocol.capnp.h"

namespace tunnelkit::cloudflare {

namespace {

std::uint32_t ReadLe32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

// Copies the framed message into word-aligned memory that capnp can read in place.
kj::Array<capnp::word> AlignedCopy(std::span<const std::uint8_t> frame) {
  auto words = kj::heapArray<capnp::word>(frame.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), frame.data(), frame.size());
  return words;
}

capnp::ReaderOptions ReaderOptionsFor(const MetadataLimits& limits) {
  capnp::ReaderOptions options;
  // Each word may be visited once; a message that points back into itself (amplification) hits
  // this limit instead of costing time.
  options.traversalLimitInWords = limits.max_message_bytes / sizeof(capnp::word) + 64;
  options.nestingLimit = 16;
  return options;
}

bool CheckText(capnp::Text::Reader text, std::size_t max, const char* what, std::string& error) {
  if (text.size() > max) {
    error = std::string(what) + " is " + std::to_string(text.size()) + " bytes (limit " +
            std::to_string(max) + ")";
    return false;
  }
  return true;
}

bool ReadMetadata(capnp::List<rpc::Metadata>::Reader list, const MetadataLimits& limits,
                  std::vector<MetadataEntry>& out, std::string& error) {
  if (list.size() > limits.max_entries) {
    error = "metadata has " + std::to_string(list.size()) + " entries (limit " +
            std::to_string(limits.max_entries) + ")";
    return false;
  }
  out.reserve(list.size());
  for (auto entry : list) {
    auto key = entry.getKey();
    auto val = entry.getVal();
    if (!CheckText(key, limits.max_key_bytes, "metadata key", error)) return false;
    if (!CheckText(val, limits.max_value_bytes, "metadata value", error)) return false;
    out.push_back({std::string(key.cStr(), key.size()), std::string(val.cStr(), val.size())});
  }
  return true;
}

void WriteMetadata(capnp::List<rpc::Metadata>::Builder list,
                   const std::vector<MetadataEntry>& entries) {
  for (unsigned i = 0; i < entries.size(); ++i) {
    auto entry = list[i];
    entry.setKey(capnp::Text::Reader(entries[i].key.data(), entries[i].key.size()));
    entry.setVal(capnp::Text::Reader(entries[i].val.data(), entries[i].val.size()));
  }
}

std::vector<std::uint8_t> Flatten(capnp::MessageBuilder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

// Runs `read` over the framed message at the front of `bytes`, turning capnp's exceptions
// (bad pointers, text without NUL, limits) into an error line.
template <typename Message, typename Read>
MessageResult<Message> DecodeFramed(std::span<const std::uint8_t> bytes,
                                    const MetadataLimits& limits, const char* what, Read read) {
  MessageResult<Message> result;
  FrameSize frame = MeasureFrame(bytes, limits);
  if (frame.status == DecodeStatus::kError) {
    result.status = DecodeStatus::kError;
    result.error = std::string(what) + ": " + frame.error;
    return result;
  }
  if (frame.status == DecodeStatus::kNeedMore) {
    result.needed = frame.total_bytes;
    return result;
  }
  auto words = AlignedCopy(bytes.first(frame.total_bytes));
  std::string error;
  bool ok = false;
  try {
    capnp::FlatArrayMessageReader reader(words, ReaderOptionsFor(limits));
    ok = read(reader, result.message, error);
  } catch (const kj::Exception& e) {
    error = std::string("malformed message: ") + e.getDescription().cStr();
  }
  if (!ok) {
    result.status = DecodeStatus::kError;
    result.error = std::string(what) + ": " + error;
    result.message = {};
    return result;
  }
  result.status = DecodeStatus::kOk;
  result.consumed = frame.total_bytes;
  return result;
}

}  // namespace

FrameSize MeasureFrame(std::span<const std::uint8_t> bytes, const MetadataLimits& limits) {
  FrameSize size;
  if (bytes.size() < 4) return size;
  std::uint64_t segments = static_cast<std::uint64_t>(ReadLe32(bytes.data())) + 1;
  if (segments > limits.max_segments) {
    size.status = DecodeStatus::kError;
    size.error = "frame has " + std::to_string(segments) + " segments (limit " +
                 std::to_string(limits.max_segments) + ")";
    return size;
  }
  // Segment count and sizes, 4 bytes each, padded to a whole word.
  std::size_t header = static_cast<std::size_t>(((segments + 1) * 4 + 7) / 8 * 8);
  size.header_bytes = header;
  if (bytes.size() < header) {
    size.total_bytes = 0;
    return size;
  }
  std::uint64_t body_words = 0;
  for (std::uint64_t i = 0; i < segments; ++i) {
    std::uint32_t words = ReadLe32(bytes.data() + 4 + 4 * i);
    if (words == 0 && i == 0) {
      size.status = DecodeStatus::kError;
      size.error = "first segment is empty";
      return size;
    }
    body_words += words;
  }
  std::uint64_t total = header + body_words * 8;
  if (total > limits.max_message_bytes) {
    size.status = DecodeStatus::kError;
    size.error = "message is " + std::to_string(total) + " bytes (limit " +
                 std::to_string(limits.max_message_bytes) + ")";
    return size;
  }
  size.total_bytes = static_cast<std::size_t>(total);
  if (bytes.size() >= size.total_bytes) size.status = DecodeStatus::kOk;
  return size;
}

MessageResult<ConnectRequest> DecodeConnectRequest(std::span<const std::uint8_t> bytes,
                                                   const MetadataLimits& limits) {
  return DecodeFramed<ConnectRequest>(
      bytes, limits, "ConnectRequest",
      [&limits](capnp::MessageReader& reader, ConnectRequest& out, std::string& error) {
        auto root = reader.getRoot<rpc::ConnectRequest>();
        auto dest = root.getDest();
        if (!CheckText(dest, limits.max_dest_bytes, "dest", error)) return false;
        out.dest.assign(dest.cStr(), dest.size());
        auto type = static_cast<std::uint16_t>(root.getType());
        if (type > static_cast<std::uint16_t>(ConnectionType::kTcp)) {
          error = "unknown connection type " + std::to_string(type);
          return false;
        }
        out.type = static_cast<ConnectionType>(type);
        return ReadMetadata(root.getMetadata(), limits, out.metadata, error);
      });
}

MessageResult<ConnectResponse> DecodeConnectResponse(std::span<const std::uint8_t> bytes,
                                                     const MetadataLimits& limits) {
  return DecodeFramed<ConnectResponse>(
      bytes, limits, "ConnectResponse",
      [&limits](capnp::MessageReader& reader, ConnectResponse& out, std::string& error) {
        auto root = reader.getRoot<rpc::ConnectResponse>();
        auto text = root.getError();
        if (!CheckText(text, limits.max_value_bytes, "error", error)) return false;
        out.error.assign(text.cStr(), text.size());
        return ReadMetadata(root.getMetadata(), limits, out.metadata, error);
      });
}

std::vector<std::uint8_t> EncodeConnectRequest(const ConnectRequest& request) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<rpc::ConnectRequest>();
  root.setDest(capnp::Text::Reader(request.dest.data(), request.dest.size()));
  root.setType(static_cast<rpc::ConnectionType>(request.type));
  WriteMetadata(root.initMetadata(static_cast<unsigned>(request.metadata.size())),
                request.metadata);
  return Flatten(builder);
}

std::vector<std::uint8_t> EncodeConnectResponse(const ConnectResponse& response) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<rpc::ConnectResponse>();
  root.setError(capnp::Text::Reader(response.error.data(), response.error.size()));
  WriteMetadata(root.initMetadata(static_cast<unsigned>(response.metadata.size())),
                response.metadata);
  return Flatten(builder);
}

const std::string* FindMetadata(const std::vector<MetadataEntry>& metadata, std::string_view key) {
  for (const auto& entry : metadata) {
    if (entry.key == key) return &entry.val;
  }
  return nullptr;
}

}  // namespace tunnelkit::cloudflare
