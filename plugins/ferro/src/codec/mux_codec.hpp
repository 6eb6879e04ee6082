// The FerroTunnel wire as a tunnelkit::mux::FrameCodec, so the core multiplexer can carry
// ferro streams. Pure (no I/O). Mapping:
//   kOpen         <-> OpenStream (payload: 1 byte, the Protocol index; empty = HTTP)
//   kData         <-> type-0x01 data frame (a bincode Data in a control frame decodes too)
//   kClose        <-> CloseStream(Normal)
//   kReset        <-> CloseStream(Error(reason)); other non-Normal reasons decode as kReset
//   kWindowUpdate <-> WindowUpdate (Frame tag 12), only when "tk-flow" was negotiated
//   kControl      <-> any other frame; payload = the whole encoded frame (header included)
#pragma once

#include "codec/codec.hpp"
#include "tunnelkit/mux/frame_codec.hpp"

namespace tunnelkit::ferro {

class FerroMuxCodec final : public mux::FrameCodec {
 public:
  explicit FerroMuxCodec(bool flow_control, std::uint32_t max_frame_size = kDefaultMaxFrameSize)
      : flow_control_(flow_control), max_frame_size_(max_frame_size) {}

  std::string Encode(const mux::Frame& frame, std::vector<std::uint8_t>& out) override;
  mux::DecodeResult Decode(std::span<const std::uint8_t> input) override;
  bool SupportsWindowUpdate() const override { return flow_control_; }
  std::size_t MaxDataPayload() const override { return kMaxDataChunk; }

 private:
  bool flow_control_;
  std::uint32_t max_frame_size_;
};

StreamPriority ToFerroPriority(mux::Priority priority);
mux::Priority ToMuxPriority(StreamPriority priority);

}  // namespace tunnelkit::ferro
