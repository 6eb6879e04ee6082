// fuzz-links:
// fuzz-libs: fuzz_framework_io tunnelkit_proto fuzz_framework_text
// The built-in hello-world origin (/, /echo, /bytes/N, /sse, /ws, /status/N, /headers) served
// over an in-process connection as a tunnel reaches it (ServeConnection on one end of a stream
// pair): the input is what a client sends (requests, bodies, WebSocket frames after an
// upgrade), then the client half-closes and reads at most 16 KiB of the answer. Whatever the
// bytes, the server answers with HTTP or closes; everything runs until nothing is left to do
// without waiting on a timer (an /sse interval), then the client resets the connection.
// The pipe holds 4 KiB (ConnectInProcess's holds 256 KiB): a /bytes/N or /sse answer then
// waits on a full pipe after some 20 KiB instead of producing half a megabyte per input (1.8
// ms of CPU per run under ASan, now 0.7 ms, most of it libFuzzer's own bookkeeping); the same
// paths (a writer parked on a full pipe, woken by the reset) run.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "tunnelkit/hello/hello_server.hpp"
#include "tunnelkit/stream/pipe.hpp"

namespace asio = boost::asio;
using namespace tunnelkit;

namespace {

constexpr std::size_t kReadLimit = 16 * 1024;
constexpr std::size_t kPipeCapacity = 4 * 1024;

void Drain(asio::io_context& io) {
  // Bounded: a response never needs more steps than this within kReadLimit bytes.
  for (int i = 0; i < 1'000'000 && io.poll() > 0; ++i) {
  }
}

// Sends the input, half-closes, reads the answer (its first bytes into `head`). A named
// coroutine, not a lambda inside the C entry point (g++ 12 mangles both the same).
asio::awaitable<void> Converse(Stream& client, const std::string& input, std::string& head) {
  IoResult written = co_await client.Write(asio::buffer(input));
  if (!written.ec) co_await client.ShutdownWrite();
  std::array<char, 16 * 1024> chunk;
  std::size_t received = 0;
  while (received < kReadLimit) {
    IoResult r = co_await client.ReadSome(asio::buffer(chunk));
    if (r.ec) break;
    if (head.size() < 16) head.append(chunk.data(), std::min<std::size_t>(r.bytes, 16));
    received += r.bytes;
  }
}

// The server end lives in the coroutine's frame: one still parked on an /sse timer is
// destroyed with the io_context, after the client end.
asio::awaitable<void> Serve(std::shared_ptr<Stream> server) {
  co_await hello::ServeConnection(*server);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  asio::io_context io;
  auto [client, server] = MakeStreamPair(io.get_executor(), kPipeCapacity, "hello_fuzz");
  std::string head;  // the first bytes of the answer
  asio::co_spawn(io, Serve(std::move(server)), asio::detached);
  asio::co_spawn(io, Converse(*client, input, head), asio::detached);
  Drain(io);
  // An answer, if any, is HTTP.
  if (!head.empty() && head.size() >= 5 && head.rfind("HTTP/", 0) != 0) std::abort();
  client->Reset();
  Drain(io);
  client.reset();
  Drain(io);
  return 0;
}
