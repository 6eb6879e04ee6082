#include "server/http_relay.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "mux/notifier.hpp"
#include "server/chunked_body.hpp"
#include "tunnelkit/buffer_pool.hpp"

namespace tunnelkit::ferro {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr std::size_t kMaxResponseHead = 64 * 1024;
constexpr std::size_t kRelayChunk = 64 * 1024;
constexpr std::size_t kBodyChunk = 16 * 1024;

// What the request body still owes, as it passes.
class BodyRemainder {
 public:
  explicit BodyRemainder(const BodyFraming& framing)
      : chunked_(framing.kind == BodyFraming::Kind::kChunked),
        left_(framing.kind == BodyFraming::Kind::kLength ? framing.length : 0) {}
  // How many of `data`'s bytes belong to the body.
  std::size_t Take(std::string_view data) {
    if (chunked_) return scanner_.Feed(data);
    const auto n =
        static_cast<std::size_t>(std::min<long long>(left_, static_cast<long long>(data.size())));
    left_ -= static_cast<long long>(n);
    return n;
  }
  bool done() const { return chunked_ ? scanner_.done() : left_ == 0; }
  bool malformed() const { return chunked_ && scanner_.failed(); }

 private:
  bool chunked_;
  long long left_;
  ChunkedBodyEnd scanner_;
};

struct ExchangeState {
  explicit ExchangeState(const asio::any_io_executor& executor)
      : response_timer(executor), body_finished(executor) {}
  asio::steady_timer response_timer;
  Notifier body_finished;
  bool body_running = false;
  bool stop_body = false;           // the exchange is over: the forwarder stops reading
  bool response_started = false;    // bytes of the response went to the public client
  bool body_timed_out = false;      // 408
  bool body_malformed = false;      // 400
  bool response_timed_out = false;  // 504
};

// The response timeout starts once the whole request went out: expiry resets the stream, so
// that the relay's read wakes (and answers 504).
void ArmResponseTimer(const std::shared_ptr<ExchangeState>& state,
                      const std::shared_ptr<Stream>& stream, std::chrono::milliseconds timeout) {
  state->response_timer.expires_after(timeout);
  std::weak_ptr<ExchangeState> weak = state;
  std::weak_ptr<Stream> weak_stream = stream;
  state->response_timer.async_wait([weak, weak_stream](const boost::system::error_code& ec) {
    auto s = weak.lock();
    if (ec || !s || s->response_started) return;
    s->response_timed_out = true;
    if (auto st = weak_stream.lock()) st->Reset();
  });
}

// Forwards the rest of the request body from the public client. A pause longer than the idle
// timeout ends the exchange (the stream is reset: the origin connection at the client side is
// released, and the relay answers 408).
asio::awaitable<void> ForwardBody(tcp::socket& socket, std::shared_ptr<Stream> stream,
                                  std::shared_ptr<ExchangeState> state,
                                  std::shared_ptr<BodyRemainder> body, ExchangeTimeouts timeouts) {
  std::array<char, kBodyChunk> buffer;
  asio::steady_timer idle(socket.get_executor());
  bool idle_expired = false;
  while (!body->done() && !state->stop_body) {
    idle.expires_after(timeouts.request_body);
    idle.async_wait([&socket, &idle_expired, state](const boost::system::error_code& ec) {
      // Also after the response has started: an origin that streams its answer while it reads
      // the body would otherwise keep the exchange (and its origin connection) open for as
      // long as the client stalls. Too late for a 408 then; the reset ends the exchange.
      if (ec || state->stop_body) return;
      idle_expired = true;
      boost::system::error_code ignored;
      socket.cancel(ignored);  // the relay waits on the stream (or, mid-response, its write fails)
    });
    boost::system::error_code ec;
    const std::size_t n = co_await socket.async_read_some(
        asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    idle.cancel();
    if (state->stop_body) break;
    if (idle_expired) {
      state->body_timed_out = true;
      stream->Reset();
      break;
    }
    if (ec) {
      // The public client went away (or half-closed) before its body was complete.
      stream->Reset();
      break;
    }
    const std::size_t take = body->Take(std::string_view(buffer.data(), n));
    if (body->malformed()) {
      state->body_malformed = true;
      stream->Reset();
      break;
    }
    IoResult w;
    if (!stream->TryWrite(asio::buffer(buffer.data(), take), w)) {
      w = co_await stream->Write(asio::buffer(buffer.data(), take));
    }
    if (w.ec) break;  // the relay sees the stream's failure
  }
  if (body->done() && !state->stop_body) {
    ArmResponseTimer(state, stream, timeouts.response_head);
  }
  state->body_running = false;
  state->body_finished.Notify();
}

// Stops a body forwarder that is still running (the relay is not writing to the socket, so
// cancelling its read is safe; the stream is reset, since its request can no longer end
// cleanly, which also wakes a write waiting for credit) and waits for it to finish.
asio::awaitable<void> StopBody(tcp::socket& socket, Stream& stream, ExchangeState& state) {
  state.stop_body = true;
  if (!state.body_running) co_return;
  stream.Reset();
  boost::system::error_code ignored;
  socket.cancel(ignored);
  while (state.body_running) co_await state.body_finished.Wait();
}

// The public client's answer when the exchange failed before a response head: why, as a status.
asio::awaitable<void> RespondFailure(tcp::socket& socket, const ExchangeState& state,
                                     const IoResult& read) {
  if (state.body_timed_out) {
    co_await RespondAndClose(socket, 408, "Request Timeout", "Request body timed out");
  } else if (state.body_malformed) {
    co_await RespondAndClose(socket, 400, "Bad Request", "Bad request: malformed chunked body");
  } else if (state.response_timed_out) {
    co_await RespondAndClose(socket, 504, "Gateway Timeout", "The tunnel did not answer in time");
  } else if (read.ec == asio::error::eof) {
    co_await RespondAndClose(socket, 502, "Bad Gateway", "The origin closed without answering");
  } else {
    co_await RespondAndClose(socket, 502, "Bad Gateway", "The tunnel's connection was lost");
  }
}

}  // namespace

asio::awaitable<void> CloseGracefully(tcp::socket& socket) {
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
  asio::steady_timer timer(socket.get_executor());
  timer.expires_after(std::chrono::seconds(2));
  timer.async_wait([&socket](const boost::system::error_code& e) {
    if (!e) {
      boost::system::error_code ignored;
      socket.close(ignored);
    }
  });
  char sink[1024];
  for (int i = 0; i < 256 && !ec; ++i) {
    co_await socket.async_read_some(asio::buffer(sink),
                                    asio::redirect_error(asio::use_awaitable, ec));
  }
  timer.cancel();
  socket.close(ec);
}

asio::awaitable<void> RespondAndClose(tcp::socket& socket, int status, std::string_view reason,
                                      std::string_view body, std::string_view extra_headers) {
  std::string response = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                         "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n" + std::string(extra_headers) +
                         "Connection: close\r\n\r\n" + std::string(body);
  boost::system::error_code ec;
  co_await asio::async_write(socket, asio::buffer(response),
                             asio::redirect_error(asio::use_awaitable, ec));
  co_await CloseGracefully(socket);
}

asio::awaitable<bool> RelayExchange(tcp::socket& socket, std::shared_ptr<Stream> stream,
                                    const ExchangeRequest& request) {
  auto state = std::make_shared<ExchangeState>(socket.get_executor());
  Stream& tunnel = *stream;
  boost::system::error_code ec;
  // The body: what came with the head first, then the forwarder for the rest.
  auto body = std::make_shared<BodyRemainder>(request.body);
  if (!body->done()) {
    const std::size_t take = body->Take(request.body_start);
    if (body->malformed()) {
      tunnel.Reset();
      co_await RespondAndClose(socket, 400, "Bad Request", "Bad request: malformed chunked body");
      co_return false;
    }
    if (take > 0) {
      const IoResult w = co_await tunnel.Write(asio::buffer(request.body_start.data(), take));
      if (w.ec) {
        tunnel.Reset();
        co_await RespondAndClose(socket, 502, "Bad Gateway", "The tunnel's connection was lost");
        co_return false;
      }
    }
  }
  if (body->done()) {
    ArmResponseTimer(state, stream, request.timeouts.response_head);
  } else {
    state->body_running = true;
    asio::co_spawn(socket.get_executor(),
                   ForwardBody(socket, stream, state, body, request.timeouts), asio::detached);
  }

  Chunk chunk = ThreadBufferPool(kRelayChunk).Acquire();
  const asio::mutable_buffer relay_buffer(chunk.writable().data(), kRelayChunk);
  std::string head_bytes;
  std::size_t head_end = 0;
  IoResult r;
  while ((head_end = FindHeadEnd(head_bytes)) == 0 && head_bytes.size() <= kMaxResponseHead) {
    // Bytes already there are taken without a coroutine frame.
    if (!tunnel.TryReadSome(relay_buffer, r)) r = co_await tunnel.ReadSome(relay_buffer);
    if (r.ec) break;
    head_bytes.append(static_cast<const char*>(relay_buffer.data()), r.bytes);
  }
  if (head_end == 0) {
    state->response_timer.cancel();
    tunnel.Reset();
    co_await StopBody(socket, tunnel, *state);
    if (head_bytes.empty()) {
      co_await RespondFailure(socket, *state, r);
      co_return false;
    }
    // An incomplete or oversized head: pass on what came and close.
    co_await asio::async_write(socket, asio::buffer(head_bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (r.ec == asio::error::eof) {
      co_await CloseGracefully(socket);
    } else {
      socket.close(ec);
    }
    co_return false;
  }
  state->response_started = true;
  state->response_timer.cancel();
  std::string error;
  const auto head = ParseResponseHead(std::string_view(head_bytes).substr(0, head_end), error);
  bool keep = request.keep_alive && head && head->IsSelfDelimited(request.method);
  const std::optional<long long> expected = keep ? head->BodyLength(request.method) : std::nullopt;
  const std::string out = keep ? SerializeKeptAliveResponseHead(*head) : std::string();
  const std::string_view first_head =
      keep ? std::string_view(out) : std::string_view(head_bytes).substr(0, head_end);
  const std::string_view first_body = std::string_view(head_bytes).substr(head_end);
  const std::array<asio::const_buffer, 2> first{asio::buffer(first_head), asio::buffer(first_body)};
  co_await asio::async_write(socket, first, asio::redirect_error(asio::use_awaitable, ec));
  bool failed = static_cast<bool>(ec);
  long long forwarded = static_cast<long long>(first_body.size());
  head_bytes = std::string();
  while (!failed) {
    // Bytes already there are taken without a coroutine frame.
    if (!tunnel.TryReadSome(relay_buffer, r)) r = co_await tunnel.ReadSome(relay_buffer);
    if (r.ec == asio::error::eof) break;
    if (r.ec) {
      failed = true;
      break;
    }
    co_await asio::async_write(socket, asio::buffer(relay_buffer.data(), r.bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
    failed = static_cast<bool>(ec);
    forwarded += static_cast<long long>(r.bytes);
  }
  chunk = Chunk();  // back to the pool before the stream ends
  co_await StopBody(socket, tunnel, *state);
  if (failed) {
    tunnel.Reset();
    socket.close(ec);
    co_return false;
  }
  co_await tunnel.ShutdownWrite();  // the exchange is over: the stream leaves the table
  if (keep && expected && forwarded != *expected) keep = false;  // truncated or overlong
  if (!keep) co_await CloseGracefully(socket);
  co_return keep;
}

}  // namespace tunnelkit::ferro
