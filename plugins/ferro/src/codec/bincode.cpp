#include "codec/bincode.hpp"

#include <cstring>

namespace tunnelkit::ferro::bincode {

namespace {

constexpr std::uint8_t kSingleByteMax = 250;
constexpr std::uint8_t kU16Marker = 0xFB;
constexpr std::uint8_t kU32Marker = 0xFC;
constexpr std::uint8_t kU64Marker = 0xFD;
constexpr std::uint8_t kU128Marker = 0xFE;

std::uint64_t LoadLittleEndian(const std::uint8_t* p, std::size_t n) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < n; ++i) value |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return value;
}

[[noreturn]] void Fail(const char* field, const std::string& what) {
  throw DecodeFailure(std::string(field) + ": " + what);
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t min;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

void Writer::Varint(std::uint64_t value) {
  auto store = [this](std::uint64_t v, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  if (value <= kSingleByteMax) {
    out_.push_back(static_cast<std::uint8_t>(value));
  } else if (value <= 0xFFFF) {
    out_.push_back(kU16Marker);
    store(value, 2);
  } else if (value <= 0xFFFFFFFFull) {
    out_.push_back(kU32Marker);
    store(value, 4);
  } else {
    out_.push_back(kU64Marker);
    store(value, 8);
  }
}

void Writer::Str(std::string_view text) {
  Varint(text.size());
  out_.insert(out_.end(), text.begin(), text.end());
}

void Writer::Blob(const std::uint8_t* data, std::size_t size) {
  Varint(size);
  out_.insert(out_.end(), data, data + size);
}

const std::uint8_t* Reader::Take(std::size_t n, const char* field) {
  if (n > remaining()) {
    Fail(field, "needs " + std::to_string(n) + " bytes, only " + std::to_string(remaining()) +
                    " left in the frame");
  }
  const std::uint8_t* p = data_ + pos_;
  pos_ += n;
  return p;
}

// bincode's encoder writes every integer in its shortest form (specs/ferrotunnel.md 2.4), so
// a longer one ("fb f7 00" for 247) comes from no conforming peer. It is refused: one value has
// one encoding, and nothing that looks at raw bytes can be told a different story than the
// decoder (bincode's own decoder is lenient here; no FerroTunnel peer sends such bytes).
std::uint64_t Reader::VarintU64(const char* field) {
  const std::uint8_t first = *Take(1, field);
  std::size_t width = 0;
  std::uint64_t smallest = 0;  // the least value that needs this width
  switch (first) {
    case kU16Marker:
      width = 2, smallest = kSingleByteMax + 1;
      break;
    case kU32Marker:
      width = 4, smallest = 0x10000;
      break;
    case kU64Marker:
      width = 8, smallest = 0x100000000ull;
      break;
    case kU128Marker:
      Fail(field, "128-bit integer where at most 64 bits are allowed");
    case 0xFF:
      Fail(field, "invalid varint marker 0xFF");
    default:
      return first;
  }
  const std::uint64_t value = LoadLittleEndian(Take(width, field), width);
  if (value < smallest) {
    Fail(field, "overlong varint: " + std::to_string(value) + " written in " +
                    std::to_string(width + 1) + " bytes (bincode writes the shortest form)");
  }
  return value;
}

std::uint32_t Reader::VarintU32(const char* field) {
  if (remaining() > 0 && (data_[pos_] == kU64Marker || data_[pos_] == kU128Marker)) {
    Fail(field, "integer wider than 32 bits");
  }
  return static_cast<std::uint32_t>(VarintU64(field));
}

std::uint8_t Reader::U8(const char* field) {
  return *Take(1, field);
}

bool Reader::Bool(const char* field) {
  const std::uint8_t b = *Take(1, field);
  if (b > 1) Fail(field, "bool byte " + std::to_string(b) + " is neither 0 nor 1");
  return b == 1;
}

bool Reader::OptionTag(const char* field) {
  const std::uint8_t b = *Take(1, field);
  if (b > 1) Fail(field, "option tag " + std::to_string(b) + " is neither 0 nor 1");
  return b == 1;
}

std::size_t Reader::Length(const char* field, std::size_t max, std::size_t min_element_size) {
  const std::uint64_t n = VarintU64(field);
  if (n > max) {
    Fail(field, "length " + std::to_string(n) + " exceeds the limit " + std::to_string(max));
  }
  if (min_element_size > 0 && n > remaining() / min_element_size) {
    Fail(field, "length " + std::to_string(n) + " exceeds the " + std::to_string(remaining()) +
                    " bytes left in the frame");
  }
  return static_cast<std::size_t>(n);
}

std::string Reader::Str(const char* field, std::size_t max) {
  const std::size_t n = Length(field, max);
  const std::uint8_t* p = Take(n, field);
  std::string text(reinterpret_cast<const char*>(p), n);
  if (!IsValidUtf8(text)) Fail(field, "invalid UTF-8");
  return text;
}

Bytes Reader::Blob(const char* field, std::size_t max) {
  const std::size_t n = Length(field, max);
  const std::uint8_t* p = Take(n, field);
  return Bytes(p, p + n);
}

std::uint32_t Reader::Variant(const char* field, std::uint32_t count) {
  const std::uint32_t index = VarintU32(field);
  if (index >= count) {
    Fail(field, "unknown variant index " + std::to_string(index) + " (known: 0.." +
                    std::to_string(count - 1) + ")");
  }
  return index;
}

}  // namespace tunnelkit::ferro::bincode
