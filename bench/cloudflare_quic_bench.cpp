// QUIC layer of the cloudflare backend on loopback: bulk throughput of one stream, and the
// round trip of a small request on a fresh stream (the shape of a proxied HTTP request).
// Client and server share one io_context thread, as cfedge and tunnelctl would on one core.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "tunnelkit/cloudflare/wire/quic/quic_client.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_server.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"

namespace {

namespace asio = boost::asio;
namespace quic = tunnelkit::cloudflare::quic;
using udp = asio::ip::udp;

// Reads a stream to EOF, then answers with the same bytes.
asio::awaitable<void> Echo(std::shared_ptr<quic::QuicStream> s) {
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto r = co_await s->ReadSome(asio::buffer(buf));
    if (r.ec) break;
    if ((co_await s->Write(asio::buffer(buf.data(), r.bytes))).ec) co_return;
  }
  co_await s->ShutdownWrite();
}

// Reads a stream to EOF and discards it, then FIN.
asio::awaitable<void> Sink(std::shared_ptr<quic::QuicStream> s) {
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto r = co_await s->ReadSome(asio::buffer(buf));
    if (r.ec) break;
  }
  co_await s->ShutdownWrite();
}

struct Bed {
  asio::io_context io;
  std::filesystem::path dir;
  std::unique_ptr<quic::QuicServer> server;
  std::shared_ptr<quic::QuicConnection> client;

  Bed() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tk-quic-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    dir = tmpl;
    const std::string d = dir.string();
    const std::string cmd =
        "cd " + d +
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-keyout key.pem -out cert.pem -days 1 -subj /CN=quic.cftunnel.com "
        "-addext subjectAltName=DNS:quic.cftunnel.com >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl failed");
    quic::QuicServerOptions so;
    so.cert_file = d + "/cert.pem";
    so.key_file = d + "/key.pem";
    server = std::make_unique<quic::QuicServer>(
        io.get_executor(), udp::endpoint(asio::ip::make_address("127.0.0.1"), 0), so,
        [this](std::shared_ptr<quic::QuicConnection> c) {
          c->SetStreamHandler([this](std::shared_ptr<quic::QuicStream> s) {
            // co_spawn keeps the lambda (and its capture) alive for the coroutine's life.
            asio::co_spawn(
                io,
                [s]() -> asio::awaitable<void> {
                  char tag = 0;
                  auto r = co_await s->ReadSome(asio::buffer(&tag, 1));
                  if (r.ec) co_return;
                  if (tag == 'E') {
                    // Put the tag back into the echo.
                    co_await s->Write(asio::buffer(&tag, 1));
                    co_await Echo(s);
                  } else {
                    co_await Sink(s);
                  }
                },
                asio::detached);
          });
        });
    quic::QuicClientOptions co;
    co.ca_file = so.cert_file;
    Run([this, co]() -> asio::awaitable<void> {
      client = co_await quic::QuicClient::Connect(io.get_executor(), server->local_endpoint(), co);
    });
  }

  ~Bed() {
    client.reset();
    server.reset();
    std::filesystem::remove_all(dir);
  }

  template <class F>
  void Run(F f) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io, f(), [&](std::exception_ptr e) {
      error = e;
      done = true;
    });
    while (!done) io.run_one();
    if (error) std::rethrow_exception(error);
  }
};

Bed& TestBed() {
  static Bed bed;
  return bed;
}

void BM_QuicUploadOneStream(benchmark::State& state) {
  auto& bed = TestBed();
  const std::size_t total = static_cast<std::size_t>(state.range(0));
  const std::string block(64 * 1024, 'x');
  for (auto _ : state) {
    bed.Run([&]() -> asio::awaitable<void> {
      auto s = co_await bed.client->OpenStream();
      co_await s->Write(asio::buffer("S", 1));
      for (std::size_t sent = 0; sent < total; sent += block.size()) {
        co_await s->Write(asio::buffer(block));
      }
      co_await s->ShutdownWrite();
      char b[16];
      while (!(co_await s->ReadSome(asio::buffer(b))).ec) {
      }
    });
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * total));
}
BENCHMARK(BM_QuicUploadOneStream)->Arg(16 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_QuicSmallRequestRoundTrip(benchmark::State& state) {
  auto& bed = TestBed();
  const std::string request = "E" + std::string(199, 'r');
  for (auto _ : state) {
    bed.Run([&]() -> asio::awaitable<void> {
      auto s = co_await bed.client->OpenStream();
      co_await s->Write(asio::buffer(request));
      co_await s->ShutdownWrite();
      std::size_t got = 0;
      char b[512];
      for (;;) {
        auto r = co_await s->ReadSome(asio::buffer(b));
        if (r.ec) break;
        got += r.bytes;
      }
      if (got != request.size()) throw std::runtime_error("short echo");
    });
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_QuicSmallRequestRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
