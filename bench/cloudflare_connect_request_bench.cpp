// Cost of reading and writing the per-stream Cap'n Proto header of a cloudflare data stream
// (ConnectRequest with a typical browser request's metadata, ConnectResponse with a reply's).
#include <benchmark/benchmark.h>

#include <string>

#include "tunnelkit/cloudflare/wire/codec/connect_metadata.hpp"

namespace {

using namespace tunnelkit::cloudflare;

ConnectRequest BrowserRequest(int headers) {
  ConnectRequest request;
  request.dest = "https://quiet-river-moon-glow.trycloudflare.com/assets/app.js?v=12345";
  request.metadata = {{"HttpMethod", "GET"},
                      {"HttpHost", "quiet-river-moon-glow.trycloudflare.com"}};
  for (int i = 0; i < headers; ++i) {
    request.metadata.push_back({"HttpHeader:X-Header-" + std::to_string(i),
                                std::string(40, static_cast<char>('a' + i % 26))});
  }
  return request;
}

void BM_DecodeConnectRequest(benchmark::State& state) {
  auto bytes = EncodeConnectRequest(BrowserRequest(static_cast<int>(state.range(0))));
  for (auto _ : state) {
    auto result = DecodeConnectRequest(bytes);
    benchmark::DoNotOptimize(result.message.metadata.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_DecodeConnectRequest)->Arg(4)->Arg(16)->Arg(64);

void BM_EncodeConnectRequest(benchmark::State& state) {
  auto request = BrowserRequest(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto bytes = EncodeConnectRequest(request);
    benchmark::DoNotOptimize(bytes.data());
  }
}
BENCHMARK(BM_EncodeConnectRequest)->Arg(4)->Arg(16)->Arg(64);

void BM_EncodeConnectResponse(benchmark::State& state) {
  ConnectResponse response{"",
                           {{"HttpStatus", "200"},
                            {"HttpHeader:Content-Type", "application/javascript"},
                            {"HttpHeader:Content-Length", "48213"},
                            {"HttpHeader:Cache-Control", "max-age=3600"}}};
  for (auto _ : state) {
    auto bytes = EncodeConnectResponse(response);
    benchmark::DoNotOptimize(bytes.data());
  }
}
BENCHMARK(BM_EncodeConnectResponse);

}  // namespace
