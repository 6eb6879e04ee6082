// The two smaller cloudflare codecs on their hot paths: HTTP heads as ConnectRequest /
// ConnectResponse metadata (every request through the tunnel) and the DNS messages of edge
// discovery (start-up and reconnects): encode and decode each.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/dns/dns_codec.hpp"

namespace {

using namespace tunnelkit::cloudflare;
using namespace tunnelkit::cloudflare::dns;

HttpRequestMeta BrowserHead(int headers) {
  HttpRequestMeta head{"GET", "quiet-river-moon-glow.trycloudflare.com", {}};
  for (int i = 0; i < headers; ++i) {
    head.headers.emplace_back("X-Header-" + std::to_string(i),
                              std::string(40, static_cast<char>('a' + i % 26)));
  }
  return head;
}

void BM_EncodeRequestMetadata(benchmark::State& state) {
  auto head = BrowserHead(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto metadata = EncodeRequestMetadata(head);
    benchmark::DoNotOptimize(metadata.data());
  }
}
BENCHMARK(BM_EncodeRequestMetadata)->Arg(4)->Arg(16)->Arg(64);

void BM_DecodeRequestMetadata(benchmark::State& state) {
  auto metadata = EncodeRequestMetadata(BrowserHead(static_cast<int>(state.range(0))));
  for (auto _ : state) {
    HttpRequestMeta head;
    auto error = DecodeRequestMetadata(metadata, head);
    benchmark::DoNotOptimize(head.headers.data());
    benchmark::DoNotOptimize(error.data());
  }
}
BENCHMARK(BM_DecodeRequestMetadata)->Arg(4)->Arg(16)->Arg(64);

void BM_DecodeResponseMetadata(benchmark::State& state) {
  auto metadata = EncodeResponseMetadata(
      {200, {{"Content-Type", "text/html"}, {"Content-Length", "48213"}, {"ETag", "\"abc\""}}});
  for (auto _ : state) {
    HttpResponseMeta head;
    auto error = DecodeResponseMetadata(metadata, head);
    benchmark::DoNotOptimize(head.status);
    benchmark::DoNotOptimize(error.data());
  }
}
BENCHMARK(BM_DecodeResponseMetadata);

constexpr const char* kSrvName = "_v2-origintunneld._tcp.argotunnel.com";

void BM_EncodeDnsQuery(benchmark::State& state) {
  for (auto _ : state) {
    auto query = EncodeQuery(0x1234, kSrvName, RecordType::kSrv);
    benchmark::DoNotOptimize(query.data());
  }
}
BENCHMARK(BM_EncodeDnsQuery);

// The query turned into an answer with `count` SRV records (name compressed to the question).
std::vector<std::uint8_t> SrvAnswer(int count) {
  auto message = EncodeQuery(0x1234, kSrvName, RecordType::kSrv);
  message[2] |= 0x80;  // QR: a response
  message[6] = 0;
  message[7] = static_cast<std::uint8_t>(count);  // ANCOUNT
  for (int i = 0; i < count; ++i) {
    std::vector<std::uint8_t> target;
    for (std::string label : {"region1", "v2", "argotunnel", "com"}) {
      if (label == "region1") label += "-" + std::to_string(i);
      target.push_back(static_cast<std::uint8_t>(label.size()));
      target.insert(target.end(), label.begin(), label.end());
    }
    target.push_back(0);
    const std::size_t rdlength = 6 + target.size();
    const std::uint8_t rr[] = {0xC0,
                               0x0C,
                               0x00,
                               0x21,
                               0x00,
                               0x01,
                               0x00,
                               0x00,
                               0x01,
                               0x2C,
                               static_cast<std::uint8_t>(rdlength >> 8),
                               static_cast<std::uint8_t>(rdlength & 0xff),
                               0x00,
                               0x01,
                               0x00,
                               0x01,
                               0x1C,
                               0xA4};
    message.insert(message.end(), std::begin(rr), std::end(rr));
    message.insert(message.end(), target.begin(), target.end());
  }
  return message;
}

void BM_DecodeDnsSrvResponse(benchmark::State& state) {
  auto message = SrvAnswer(static_cast<int>(state.range(0)));
  if (!DecodeResponse(message, 0x1234)) {
    state.SkipWithError("the benchmark's SRV answer does not decode");
    return;
  }
  for (auto _ : state) {
    auto result = DecodeResponse(message, 0x1234);
    benchmark::DoNotOptimize(result->srv.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * message.size()));
}
BENCHMARK(BM_DecodeDnsSrvResponse)->Arg(2)->Arg(10);

}  // namespace
