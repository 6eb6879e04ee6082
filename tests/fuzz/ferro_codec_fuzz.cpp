// fuzz-links: tunnelkit_ferro_core
// FerroTunnel codec: arbitrary bytes through the incremental decoder (in two uneven pieces),
// and every decoded frame re-encoded and decoded again to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "codec/codec.hpp"

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
  return 0;
}
