// FerroTunnel codec throughput: control frames (Handshake, OpenStream, Heartbeat) and data
// frames of several sizes, encode and incremental decode.
#include <benchmark/benchmark.h>

#include <initializer_list>

#include "codec/codec.hpp"

using namespace tunnelkit::ferro;

namespace {

// Encodes `frames` back to back into one buffer per iteration.
void EncodeEach(benchmark::State& state, std::initializer_list<const Frame*> frames) {
  Bytes out;
  std::string error;
  for (auto _ : state) {
    out.clear();
    for (const Frame* frame : frames) EncodeFrame(*frame, out, error);
    benchmark::DoNotOptimize(out.data());
  }
}

void EncodeHandshake(benchmark::State& state) {
  const Frame frame = Handshake{"secret-token", "my-app", 1, 1, {"basic", "tcp", "tk-flow"}};
  EncodeEach(state, {&frame});
}
BENCHMARK(EncodeHandshake);

void DecodeHandshake(benchmark::State& state) {
  Bytes bytes;
  std::string error;
  EncodeFrame(Handshake{"secret-token", "my-app", 1, 1, {"basic", "tcp", "tk-flow"}}, bytes, error);
  Frame frame;
  for (auto _ : state) {
    auto r = DecodeFrame(bytes.data(), bytes.size(), frame);
    benchmark::DoNotOptimize(r.consumed);
  }
}
BENCHMARK(DecodeHandshake);

void EncodeOpenStreamAndHeartbeat(benchmark::State& state) {
  const Frame open = OpenStream{2, Protocol::kHttp, {}, std::nullopt, StreamPriority::kNormal};
  const Frame beat = Heartbeat{1700000000000ull};
  EncodeEach(state, {&open, &beat});
}
BENCHMARK(EncodeOpenStreamAndHeartbeat);

void EncodeData(benchmark::State& state) {
  const Frame frame = Data{2, Bytes(static_cast<std::size_t>(state.range(0)), 0x5A), false};
  EncodeEach(state, {&frame});
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(EncodeData)->Arg(64)->Arg(4096)->Arg(65536);

// A stream of data frames fed in 16 KiB reads, as a socket would deliver them.
void DecodeDataStream(benchmark::State& state) {
  const std::size_t payload = static_cast<std::size_t>(state.range(0));
  Bytes stream;
  std::string error;
  for (int i = 0; i < 64; ++i) EncodeFrame(Data{2, Bytes(payload, 0x5A), false}, stream, error);
  for (auto _ : state) {
    FrameDecoder decoder;
    Frame frame;
    for (std::size_t pos = 0; pos < stream.size(); pos += 16384) {
      decoder.Feed(stream.data() + pos, std::min<std::size_t>(16384, stream.size() - pos));
      while (decoder.Next(frame) == DecodeStatus::kFrame) benchmark::DoNotOptimize(frame.index());
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(stream.size()));
}
BENCHMARK(DecodeDataStream)->Arg(64)->Arg(4096)->Arg(65536);

}  // namespace
