// bincode 2 "standard" configuration (little-endian, varint integers) as FerroTunnel 1.x uses
// it for control frames. Only the pieces the frames need.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "codec/frame.hpp"

namespace tunnelkit::ferro::bincode {

// Thrown by Reader on malformed input; DecodeControlPayload turns it into an error string.
class DecodeFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// true when `text` is well-formed UTF-8 as Rust's str::from_utf8 defines it.
bool IsValidUtf8(std::string_view text);

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}
  // <251: one byte; then 0xFB u16, 0xFC u32, 0xFD u64 (all little-endian).
  void Varint(std::uint64_t value);
  void U8(std::uint8_t value) { out_.push_back(value); }
  void Bool(bool value) { out_.push_back(value ? 1 : 0); }
  void Str(std::string_view text);
  void Blob(const std::uint8_t* data, std::size_t size);
  void OptionTag(bool present) { out_.push_back(present ? 1 : 0); }

 private:
  Bytes& out_;
};

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  std::uint64_t VarintU64(const char* field);
  std::uint32_t VarintU32(const char* field);
  std::uint8_t U8(const char* field);
  bool Bool(const char* field);
  bool OptionTag(const char* field);
  // A varint length that must fit in the remaining input (each element needs at least
  // `min_element_size` bytes), so nothing is allocated beyond what the frame holds.
  std::size_t Length(const char* field, std::size_t max, std::size_t min_element_size = 1);
  std::string Str(const char* field, std::size_t max);
  Bytes Blob(const char* field, std::size_t max);
  // Enum variant index, checked against the number of variants.
  std::uint32_t Variant(const char* field, std::uint32_t count);

  // `n` raw bytes (no length prefix).
  const std::uint8_t* Take(std::size_t n, const char* field);

  std::size_t remaining() const { return size_ - pos_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace tunnelkit::ferro::bincode
