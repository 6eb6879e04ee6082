// fuzz-links: tunnelkit_ferro_core
// fuzz-sources: plugins/ferro/src/codec/*.cpp
// fuzz-libs: fuzz_framework_text
// FerroTunnel codec: arbitrary bytes through the incremental decoder (in two uneven pieces),
// every decoded frame re-encoded and decoded again to the same value; then through the
// FerroMuxCodec view, every decoded frame encoded again.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "codec/codec.hpp"
#include "codec/mux_codec.hpp"

using namespace tunnelkit::ferro;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A small frame limit so oversize paths are reachable with small inputs.
  const std::uint32_t max_frame = size > 0 && (data[0] & 1) ? 4096 : kDefaultMaxFrameSize;
  FrameDecoder decoder(max_frame);
  const std::size_t split = size > 1 ? data[size - 1] % size : size;
  for (int piece = 0; piece < 2; ++piece) {
    if (piece == 0) {
      decoder.Feed(data, split);
    } else {
      decoder.Feed(data + split, size - split);
    }
    Frame frame;
    DecodeStatus status;
    while ((status = decoder.Next(frame)) == DecodeStatus::kFrame) {
      Bytes encoded;
      std::string error;
      if (!EncodeFrame(frame, encoded, error, max_frame)) std::abort();
      Frame again;
      DecodeResult r = DecodeFrame(encoded.data(), encoded.size(), again, max_frame);
      if (r.status != DecodeStatus::kFrame || r.consumed != encoded.size() || !(again == frame)) {
        std::abort();
      }
    }
    if (status == DecodeStatus::kError && decoder.error().empty()) std::abort();
  }
  // The kernel path's reading: data frames' starts peeked and skipped (payload "moved
  // elsewhere" = dropped from the input), other frames decoded; input written in place.
  FrameDecoder skipping(max_frame);
  std::size_t fed = 0;
  std::size_t skip = 0;  // payload bytes the caller would move past the decoder
  while (fed < size) {
    if (skip > 0) {
      const std::size_t n = std::min(skip, size - fed);
      fed += n;
      skip -= n;
      continue;
    }
    const std::size_t n = std::min<std::size_t>(size - fed, 1 + data[fed] % 64);
    auto room = skipping.Prepare(n);
    if (room.size() != n) std::abort();
    std::memcpy(room.data(), data + fed, n);
    skipping.Commit(n);
    fed += n;
    for (;;) {
      if (auto start = skipping.PeekDataFrame()) {
        if (start->payload_buffered > start->payload_size ||
            start->payload_buffered > skipping.buffered()) {
          std::abort();
        }
        const std::size_t before = skipping.buffered();
        skipping.Discard(kDataFrameHeaderSize + start->payload_buffered);
        if (skipping.buffered() + kDataFrameHeaderSize + start->payload_buffered != before) {
          std::abort();
        }
        skip = start->payload_size - start->payload_buffered;
        if (skip > 0) break;
        continue;
      }
      Frame frame;
      if (skipping.Next(frame) != DecodeStatus::kFrame) break;
    }
  }
  // The same bytes through the multiplexer's view: every decoded frame encodes again.
  FerroMuxCodec mux_codec(true, max_frame);
  std::span<const std::uint8_t> input(data, size);
  std::size_t pos = 0;
  while (pos < size) {
    tunnelkit::mux::DecodeResult r = mux_codec.Decode(input.subspan(pos));
    if (r.status != tunnelkit::mux::DecodeResult::Status::kFrame) break;
    if (r.consumed == 0 || r.consumed > size - pos) std::abort();
    std::vector<std::uint8_t> encoded;
    if (!mux_codec.Encode(r.frame, encoded).empty()) std::abort();
    pos += r.consumed;
  }
  return 0;
}
