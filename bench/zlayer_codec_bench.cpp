// ZLayer control-message codec: encode and decode rates of the messages a busy tunnel sends
// most (Connect per public connection, Heartbeat per interval).
#include <benchmark/benchmark.h>

#include "codec/codec.hpp"

using namespace tunnelkit::zlayer::codec;

namespace {

Message SampleConnect() {
  return Connect{*Uuid::Parse("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
                 *Uuid::Parse("12345678-9abc-def0-1234-56789abcdef0"), "203.0.113.7:51234"};
}

void BM_EncodeConnect(benchmark::State& state) {
  const Message message = SampleConnect();
  for (auto _ : state) {
    auto encoded = Encode(message);
    benchmark::DoNotOptimize(encoded.bytes.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeConnect);

void BM_DecodeConnect(benchmark::State& state) {
  const auto bytes = Encode(SampleConnect()).bytes;
  for (auto _ : state) {
    auto decoded = Decode(bytes);
    benchmark::DoNotOptimize(decoded.consumed);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_DecodeConnect);

void BM_DecodeHeartbeat(benchmark::State& state) {
  const auto bytes = Encode(Heartbeat{1700000000000}).bytes;
  for (auto _ : state) {
    auto decoded = Decode(bytes);
    benchmark::DoNotOptimize(decoded.consumed);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeHeartbeat);

void BM_DecodeLargestDisconnect(benchmark::State& state) {
  const auto bytes = Encode(Disconnect{std::string(kMaxPayloadSize - 2, 'r')}).bytes;
  for (auto _ : state) {
    auto decoded = Decode(bytes);
    benchmark::DoNotOptimize(decoded.consumed);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_DecodeLargestDisconnect);

}  // namespace
