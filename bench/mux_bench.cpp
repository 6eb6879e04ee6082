// Multiplexer throughput through the in-memory transport: application writes of 64 B and
// 64 KiB on 1 and 8 streams. Reports writes/s ("items") and payload MB/s ("bytes"), plus how
// many wire frames the writer packed into one transport write.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "tunnelkit/mux/memory_transport.hpp"
#include "tunnelkit/mux/session.hpp"

namespace {
namespace asio = boost::asio;
using namespace tunnelkit;
using namespace tunnelkit::mux;

// u32 BE length | u8 kind | u32 BE stream | u8 priority | u32 BE value | payload
class BenchCodec final : public FrameCodec {
 public:
  std::string Encode(const Frame& f, std::vector<std::uint8_t>& out) override {
    const std::size_t at = out.size();
    out.resize(at + 14 + f.payload.size());
    std::uint8_t* p = out.data() + at;
    Put(p, static_cast<std::uint32_t>(10 + f.payload.size()));
    p[4] = static_cast<std::uint8_t>(f.kind);
    Put(p + 5, f.stream_id);
    p[9] = static_cast<std::uint8_t>(f.priority);
    Put(p + 10, f.kind == FrameKind::kReset ? f.code : f.credit);
    if (!f.payload.empty()) std::memcpy(p + 14, f.payload.data(), f.payload.size());
    return {};
  }
  DecodeResult Decode(std::span<const std::uint8_t> in) override {
    if (in.size() < 4) return DecodeResult::NeedMore();
    const std::uint32_t length = Get(in.data());
    if (length < 10 || length > 10 + (1u << 20)) return DecodeResult::Error("bad length");
    if (in.size() < 4 + length) return DecodeResult::NeedMore();
    if (in[4] > 5 || in[9] > 3) return DecodeResult::Error("bad kind or priority");
    Frame f;
    f.kind = static_cast<FrameKind>(in[4]);
    f.stream_id = Get(in.data() + 5);
    f.priority = static_cast<Priority>(in[9]);
    f.credit = f.code = Get(in.data() + 10);
    f.payload = in.subspan(14, length - 10);
    return DecodeResult::Ok(f, 4 + length);
  }
  bool SupportsWindowUpdate() const override { return true; }
  std::size_t MaxDataPayload() const override { return 64 * 1024; }

 private:
  static void Put(std::uint8_t* p, std::uint32_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
  }
  static std::uint32_t Get(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           p[3];
  }
};

asio::awaitable<void> Sender(std::shared_ptr<MuxStream> stream, std::size_t frame,
                             std::size_t count) {
  std::vector<std::uint8_t> buf(frame, 0x5A);
  for (std::size_t i = 0; i < count; ++i) {
    IoResult r = co_await stream->Write(asio::buffer(buf));
    if (r.ec) co_return;
  }
  co_await stream->ShutdownWrite();
}

asio::awaitable<void> Drain(std::shared_ptr<MuxStream> stream, std::size_t* received) {
  std::vector<std::uint8_t> buf(256 * 1024);
  while (true) {
    IoResult r = co_await stream->ReadSome(asio::buffer(buf));
    if (r.ec) break;
    *received += r.bytes;
  }
}

asio::awaitable<void> Receiver(std::shared_ptr<MuxSession> server, int streams,
                               std::size_t* received) {
  for (int i = 0; i < streams; ++i) {
    auto stream = co_await server->Accept();
    if (!stream) co_return;
    asio::co_spawn(server->get_executor(), Drain(stream, received), asio::detached);
  }
}

void BM_MuxThroughput(benchmark::State& state) {
  spdlog::set_level(spdlog::level::warn);  // one "session closed" line per iteration is noise
  const std::size_t frame = static_cast<std::size_t>(state.range(0));
  const int streams = static_cast<int>(state.range(1));
  // Enough bytes that setup is noise: 8 MiB of 64 B writes, 256 MiB of 64 KiB writes.
  const std::size_t total = frame < 1024 ? 8u << 20 : 256u << 20;
  const std::size_t per_stream = total / frame / static_cast<std::size_t>(streams);
  std::uint64_t writes = 0, wire_frames = 0, transport_writes = 0;
  for (auto _ : state) {
    asio::io_context io;
    auto [a, b] = MemoryTransport::Pair(io.get_executor(), 1024 * 1024);
    MuxConfig client_config;
    client_config.local_ids = IdParity::kOdd;
    client_config.chunk_size = 64 * 1024;
    client_config.stream_window = 1024 * 1024;
    MuxConfig server_config = client_config;
    server_config.local_ids = IdParity::kEven;
    auto client = MuxSession::Create(std::move(a), std::make_unique<BenchCodec>(), client_config);
    auto server = MuxSession::Create(std::move(b), std::make_unique<BenchCodec>(), server_config);
    client->Start();
    server->Start();
    std::size_t received = 0;
    asio::co_spawn(io, Receiver(server, streams, &received), asio::detached);
    for (int i = 0; i < streams; ++i) {
      boost::system::error_code ec;
      auto stream = client->Open(Priority::kNormal, ec);
      asio::co_spawn(io, Sender(stream, frame, per_stream), asio::detached);
    }
    const std::size_t expected = per_stream * frame * static_cast<std::size_t>(streams);
    while (received < expected && !client->closed()) io.run_one();
    if (received != expected) state.SkipWithError("transfer incomplete");
    writes += per_stream * static_cast<std::size_t>(streams);
    wire_frames += client->counters().frames_out;
    transport_writes += client->transport_writes();
    client->Close("done");
    server->Close("done");
    io.run();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(writes));
  state.SetBytesProcessed(static_cast<std::int64_t>(writes * frame));
  state.counters["frames_per_write"] =
      transport_writes ? static_cast<double>(wire_frames) / static_cast<double>(transport_writes)
                       : 0.0;
}

BENCHMARK(BM_MuxThroughput)
    ->ArgNames({"bytes", "streams"})
    ->Args({64, 1})
    ->Args({64, 8})
    ->Args({64 * 1024, 1})
    ->Args({64 * 1024, 8})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
