// fuzz-links: tunnelkit_ferro_core
// FerroTunnel codec: arbitrary bytes through the incremental decoder (in two uneven pieces),
// every decoded frame re-encoded and decoded again to the same value; then through the
// FerroMuxCodec view, every decoded frame encoded again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

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
  // The same bytes through the multiplexer's view: every decoded frame encodes again.
  FerroMuxCodec mux_codec(true, max_frame);
  std::span<const std::uint8_t> input(data, size);
  std::size_t pos = 0;
  while (pos < size) {
    tunnelkit::mux::DecodeResult r = mux_codec.Decode(input.subspan(pos));
    if (r.status != tunnelkit::mux::DecodeResult::Status::kFrame) break;
    if (r.consumed == 0 || r.consumed > size - pos) std::abort();
    Bytes encoded;
    if (!mux_codec.Encode(r.frame, encoded).empty()) std::abort();
    pos += r.consumed;
  }
  return 0;
}
