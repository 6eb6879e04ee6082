#include "tunnelkit/origin/origin_proxy.hpp"

#include <charconv>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

#include "../http_names.hpp"
#include "proxy_sink.hpp"
#include "tunnelkit/buffer_pool.hpp"
#include "tunnelkit/hello/hello_server.hpp"
#include "tunnelkit/origin/http_fields.hpp"
#include "tunnelkit/stream/asio_adapter.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

// Note: g++ 12 double-destroys non-trivial temporaries created inside a co_await expression,
// so arguments of awaited calls are named locals or trivially destructible values.

namespace tunnelkit::origin {

using namespace http_names;

namespace {

constexpr std::size_t kChunk = 64 * 1024;

// Body chunks come from the io thread's pool, not zero-filled: a std::vector<char> of 64 KiB
// cost a memset on every response (5-8 % of a busy tunnel client), and taking a fresh 64 KiB
// from the allocator for each small response cost a malloc/free whose free made glibc
// consolidate its fast bins (2 % more).
BufferPool& BodyChunks() {
  return ThreadBufferPool(kChunk, 16);
}
struct BodyBuffer {
  Chunk chunk = BodyChunks().Acquire();
  char* data() { return reinterpret_cast<char*>(chunk.writable().data()); }
  static constexpr std::size_t size() { return kChunk; }
};
// What a request stream's read buffer starts with: enough for any usual request head (it
// grows up to kHeaderLimit when needed). Each ferro request is a new stream.
constexpr std::size_t kFirstReadBuffer = 16 * 1024;
constexpr std::size_t kHeaderLimit = 64 * 1024;

// A one-shot event coroutines can wait for (a timer that never expires, cancelled to wake).
class Event {
 public:
  explicit Event(asio::any_io_executor ex) : timer_(ex, asio::steady_timer::time_point::max()) {}
  void Set() {
    done_ = true;
    timer_.cancel();
  }
  bool done() const { return done_; }
  awaitable<void> Wait() {
    while (!done_) {
      error_code ec;
      co_await timer_.async_wait(redirect_error(use_awaitable, ec));
    }
  }

 private:
  asio::steady_timer timer_;
  bool done_ = false;
};

awaitable<error_code> WriteAll(Stream& s, const char* data, std::size_t size) {
  IoResult r = co_await s.Write(asio::buffer(data, size));
  co_return r.ec;
}

}  // namespace

struct ProxyInternals {
  static spdlog::logger& Log(OriginProxy& p) {
    return p.logger_ ? *p.logger_ : *spdlog::default_logger();
  }

  static std::shared_ptr<asio::ssl::context> TlsContext(OriginProxy& p, const OriginOptions& o) {
    std::string key = (o.no_tls_verify ? "insecure|" : "verify|") + o.ca_pool;
    auto& ctx = p.tls_contexts_[key];
    if (!ctx) {
      TlsClientOptions options;
      options.ca_file = o.ca_pool;
      options.insecure_skip_verify = o.no_tls_verify;
      ctx = MakeTlsClientContext(options);
    }
    return ctx;
  }

  // Opens a new connection to the rule's origin; null with `reason` on failure.
  static awaitable<std::unique_ptr<Stream>> Connect(OriginProxy& p, const Service& s,
                                                    const OriginOptions& o, std::string& reason) {
    ++p.stats_.origin_connects;
    error_code ec;
    switch (s.kind) {
      case Service::Kind::kHelloWorld:
        co_return hello::ConnectInProcess(p.executor_);
      case Service::Kind::kUnix: {
        auto stream = co_await ConnectUnixStream(p.executor_, s.path, o.connect_timeout, ec);
        if (ec) reason = fmt::format("cannot connect to {}: {}", s.text, ec.message());
        co_return stream;
      }
      case Service::Kind::kHttps: {
        std::shared_ptr<asio::ssl::context> ctx;
        try {
          ctx = TlsContext(p, o);
        } catch (const std::exception& e) {
          reason = e.what();
          co_return nullptr;
        }
        asio::ip::tcp::socket socket(p.executor_);
        ec = co_await ConnectTcp(socket, s.host, s.port, o.connect_timeout);
        if (ec) {
          reason = fmt::format("cannot connect to {}: {}", s.text, ec.message());
          co_return nullptr;
        }
        std::string name = s.host;
        if (!o.http_host_header.empty()) {
          name = o.http_host_header;
          if (auto colon = name.rfind(':'); colon != std::string::npos && name.front() != '[') {
            name.resize(colon);
          }
        }
        auto tls =
            std::make_unique<TlsStream>(std::move(socket), *ctx, TlsStream::Role::kClient, name);
        Deadline deadline(p.executor_);
        deadline.Arm(o.connect_timeout, [t = tls.get()] { t->Reset(); });
        ec = co_await tls->Handshake();
        if (ec) {
          reason = fmt::format("TLS handshake with {} failed: {}", s.text,
                               deadline.fired() ? "timed out" : tls->LastError());
          co_return nullptr;
        }
        co_return tls;
      }
      case Service::Kind::kHttp:
      case Service::Kind::kTcp: {
        auto stream = co_await ConnectTcpStream(p.executor_, s.host, s.port, o.connect_timeout, ec);
        if (ec) reason = fmt::format("cannot connect to {}: {}", s.text, ec.message());
        co_return stream;
      }
      case Service::Kind::kHttpStatus:
        break;
    }
    reason = "service " + s.text + " takes no connections";
    co_return nullptr;
  }

  // The rule's pool key: made when the proxy was built for the router's rules (every caller
  // passes one of them); made into `made` only for a rule from elsewhere.
  static const std::string& PoolKeyOf(const OriginProxy& p, const Rule& rule, std::string& made) {
    const auto& rules = p.router_.rules();
    if (!rules.empty() && &rule >= rules.data() && &rule < rules.data() + rules.size()) {
      return p.pool_keys_[static_cast<std::size_t>(&rule - rules.data())];
    }
    made = PoolKey(rule);
    return made;
  }

  // A new connection to the rule's origin; null with `reason` when it cannot be reached.
  static awaitable<std::unique_ptr<OriginConnection>> NewConnection(OriginProxy& p,
                                                                    const Rule& rule,
                                                                    std::string& reason) {
    auto stream = co_await Connect(p, rule.service, rule.options, reason);
    if (!stream) co_return nullptr;
    auto conn = std::make_unique<OriginConnection>();
    conn->stream = std::move(stream);
    conn->buffer.reserve(kChunk);
    co_return conn;
  }

  // The request's side of one exchange. It lives in Exchange's frame: a spawned body writer
  // refers to it until `done`.
  struct RequestWrite {
    RequestWrite(const asio::any_io_executor& ex, Stream& origin_stream, bool has_body)
        : done(ex), origin(origin_stream), body_complete(!has_body), deadline(ex) {}
    Event done;
    Stream& origin;
    error_code ec;
    bool body_complete;
    std::uint64_t body_bytes = 0;
    // Set once the proxy broke the origin connection: it must never go back to the pool, even
    // when the writer finishes cleanly afterwards (its last write can be empty).
    bool origin_reset = false;
    Deadline deadline;  // the response timeout; breaks the origin connection
    void ResetOrigin() {
      origin_reset = true;
      origin.Reset();
    }
  };

  // Head, then the request body as it arrives, concurrently with the response.
  static awaitable<void> WriteRequestWithBody(RequestWrite& w, StreamRef& oref,
                                              http::request<http::buffer_body>& out_req,
                                              BodyReader& reader,
                                              std::chrono::milliseconds response_timeout) {
    http::request_serializer<http::buffer_body> sr(out_req);
    co_await http::async_write_header(oref, sr, redirect_error(use_awaitable, w.ec));
    BodyBuffer chunk;
    while (!w.ec) {
      IoResult r = co_await reader(asio::buffer(chunk.data(), chunk.size()));
      if (r.ec == asio::error::eof) {
        w.body_complete = true;
        out_req.body().data = nullptr;
        out_req.body().size = 0;
        out_req.body().more = false;
        co_await http::async_write(oref, sr, redirect_error(use_awaitable, w.ec));
        break;
      }
      if (r.ec) {
        w.ec = r.ec;
        w.ResetOrigin();
        break;
      }
      w.body_bytes += r.bytes;
      out_req.body().data = chunk.data();
      out_req.body().size = r.bytes;
      out_req.body().more = true;
      co_await http::async_write(oref, sr, redirect_error(use_awaitable, w.ec));
      if (w.ec == http::error::need_buffer) w.ec = {};
      // The origin is still being fed: the response clock starts after the body.
      w.deadline.Extend(response_timeout);
    }
    w.done.Set();
  }

  // Sends the request head (and starts the body writer when there is a body).
  static awaitable<void> StartRequest(OriginProxy& p, RequestWrite& w, StreamRef& oref,
                                      http::request<http::buffer_body>& out_req, bool has_body,
                                      BodyReader& reader, std::chrono::milliseconds timeout) {
    out_req.body().data = nullptr;
    out_req.body().size = 0;
    out_req.body().more = has_body;
    if (has_body) {
      asio::co_spawn(p.executor_, WriteRequestWithBody(w, oref, out_req, reader, timeout),
                     asio::detached);
      co_return;
    }
    // Nothing to stream after the head: written here, before the response is read (a spawned
    // writer costs a coroutine and its frames on every request).
    http::request_serializer<http::buffer_body> sr(out_req);
    co_await http::async_write(oref, sr, redirect_error(use_awaitable, w.ec));
    w.done.Set();
  }

  // The origin's response head into `parser`, skipping 1xx other than 101 (the proxy answered
  // Expect itself).
  static awaitable<error_code> ReadResponseHead(
      StreamRef& oref, beast::flat_buffer& buffer,
      std::optional<http::response_parser<http::buffer_body>>& parser, bool head_request) {
    error_code ec;
    for (;;) {
      parser.emplace();
      parser->body_limit(std::numeric_limits<std::uint64_t>::max());
      parser->header_limit(kHeaderLimit);
      if (head_request) parser->skip(true);
      co_await http::async_read_header(oref, buffer, *parser, redirect_error(use_awaitable, ec));
      if (ec) co_return ec;
      unsigned code = parser->get().result_int();
      if (code / 100 != 1 || code == 101) co_return ec;
    }
  }

  // The proxy's answer when the origin gave no response head: 504 when the response timeout
  // fired, else 502. Counted and logged.
  static std::pair<http::status, std::string> GatewayFailure(OriginProxy& p, const Rule& rule,
                                                             const error_code& ec, bool timed_out) {
    std::pair<http::status, std::string> failure;
    if (timed_out) {
      ++p.stats_.gateway_timeout;
      failure.first = http::status::gateway_timeout;
      failure.second = fmt::format("504 Gateway Timeout: {} did not answer within {} ms\n",
                                   rule.service.text, rule.options.response_timeout.count());
    } else {
      ++p.stats_.bad_gateway;
      failure.first = http::status::bad_gateway;
      failure.second = fmt::format("502 Bad Gateway: {} closed the connection ({})\n",
                                   rule.service.text, ec.message());
    }
    Log(p).warn("origin {}: {}", rule.service.text,
                failure.second.substr(0, failure.second.size() - 1));
    return failure;
  }

  // After a 101: the head to the client, bytes already read on either side, then raw bytes
  // both ways until either side ends.
  static awaitable<void> SpliceUpgraded(Sink& sink, http::response_header<>& head,
                                        OriginConnection& conn) {
    error_code ec = co_await sink.Head(head, std::nullopt, false, false);
    if (ec) co_return;
    Stream& client = sink.RawStream();
    Stream& origin = *conn.stream;
    if (conn.buffer.size() > 0) {
      auto data = conn.buffer.data();
      ec = co_await WriteAll(client, static_cast<const char*>(data.data()), data.size());
      conn.buffer.consume(conn.buffer.size());
    }
    if (auto* left = sink.Leftover(); !ec && left && left->size() > 0) {
      auto data = left->data();
      ec = co_await WriteAll(origin, static_cast<const char*>(data.data()), data.size());
      left->consume(left->size());
    }
    if (!ec) co_await Splice(client, origin);
  }

  // How relaying a response body went.
  struct BodyRelay {
    bool origin_ok = true;  // false when the origin's body was cut short
    bool response_done = false;
    error_code client_ec;  // the sink failed
  };

  // The response body from the origin to the sink, chunk by chunk.
  static awaitable<void> RelayBody(OriginProxy& p, const Rule& rule, OriginConnection& conn,
                                   StreamRef& oref,
                                   http::response_parser<http::buffer_body>& parser,
                                   std::optional<std::uint64_t> length, Sink& sink,
                                   BodyRelay& relay) {
    auto& res = parser.get();
    BodyBuffer chunk;
    // A body of known length: once the bytes already in the connection buffer are through
    // the parser, the rest is read from the origin straight into the chunk (the parser
    // would read into the connection buffer and copy every byte again).
    const bool direct = length && !parser.chunked();
    std::uint64_t left = length.value_or(0);
    relay.response_done = direct ? left == 0 : parser.is_done();
    while (!relay.response_done) {
      std::size_t n = 0;
      error_code ec;
      if (direct && conn.buffer.size() == 0) {
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), left));
        IoResult r = co_await conn.stream->ReadSome(asio::buffer(chunk.data(), want));
        ec = r.ec == asio::error::eof ? http::error::partial_message : r.ec;
        n = r.bytes;
      } else {
        res.body().data = chunk.data();
        res.body().size = chunk.size();
        co_await http::async_read_some(oref, conn.buffer, parser,
                                       redirect_error(use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        n = chunk.size() - res.body().size;
      }
      if (ec) {
        Log(p).warn("origin {}: response body cut short: {}", rule.service.text, ec.message());
        relay.origin_ok = false;
        break;
      }
      if (direct) left -= std::min<std::uint64_t>(n, left);
      relay.response_done = direct ? left == 0 : parser.is_done();
      if (n == 0) continue;
      relay.client_ec = co_await sink.Body(chunk.data(), n);
      if (relay.client_ec) break;
    }
  }

  // One request/response exchange with the rule's origin. `req` is the rewritten head.
  // Returns false when the client connection cannot be reused.
  // long-function: the exchange's steps in order, each a call; what is left is the retry loop
  // and the decisions between the steps, which share the frame the body writer refers to.
  static awaitable<bool> Exchange(OriginProxy& p, const Rule& rule, http::request_header<>& req,
                                  bool has_body, BodyReader& reader, Sink& sink) {
    ++p.stats_.requests;
    if (rule.service.kind == Service::Kind::kHttpStatus) {
      std::string empty;
      error_code ec = co_await sink.Error(static_cast<http::status>(rule.service.status), empty);
      co_return !ec;
    }
    const bool upgrade = IsUpgrade(req);
    const bool head_request = req.method() == http::verb::head;
    std::string made_key;
    const std::string& key = PoolKeyOf(p, rule, made_key);
    // The head is moved once into the message the writer serializes (a retry sends it again).
    http::request<http::buffer_body> out_req;
    out_req.base() = std::move(req);
    if (has_body && !out_req.has_content_length()) out_req.chunked(true);
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<OriginConnection> conn;
      if (!upgrade) conn = p.pool_.Acquire(key, rule.options.keep_alive_timeout);
      const bool reused = conn != nullptr;
      if (reused) {
        ++p.stats_.pooled_reuses;
      } else {
        std::string reason;
        conn = co_await NewConnection(p, rule, reason);
        if (!conn) {
          Log(p).warn("origin {}: {}", rule.service.text, reason);
          ++p.stats_.bad_gateway;
          std::string text = "502 Bad Gateway: " + reason + "\n";
          error_code ec = co_await sink.Error(http::status::bad_gateway, text);
          co_return !ec && !has_body;
        }
      }
      ++conn->requests;
      StreamRef oref(*conn->stream);
      RequestWrite w(p.executor_, *conn->stream, has_body);
      w.deadline.Arm(rule.options.response_timeout, [&w] { w.ResetOrigin(); });
      co_await StartRequest(p, w, oref, out_req, has_body, reader, rule.options.response_timeout);

      // Every byte of a declared-length body is written: the writer needs nothing more from the
      // client (the reader answers end-of-body without I/O) and its last write is empty.
      const std::optional<std::uint64_t> declared_length = ContentLengthOf(out_req);
      // Finishes the writer before leaving (it refers to this frame). A writer still waiting
      // for body bytes is stopped by breaking the origin (and the client, when asked to).
      // Called only while the writer runs (a finished one needs nothing, not even a frame).
      auto finish_writer = [&](bool abort_client) -> awaitable<void> {
        if (!w.done.done() && !(declared_length && w.body_bytes >= *declared_length)) {
          w.ResetOrigin();
          if (abort_client) sink.Abort();
        }
        co_await w.done.Wait();
      };

      std::optional<http::response_parser<http::buffer_body>> parser_slot;
      error_code ec = co_await ReadResponseHead(oref, conn->buffer, parser_slot, head_request);
      const bool timed_out = w.deadline.fired();
      w.deadline.Cancel();
      if (ec) {
        if (!timed_out && reused && w.body_bytes == 0 && attempt == 0) {
          // A pooled connection the origin had closed: try once more on a fresh one.
          if (!w.done.done()) co_await finish_writer(false);
          if (w.body_bytes == 0) continue;
        }
        auto [status, text] = GatewayFailure(p, rule, ec, timed_out);
        error_code sink_ec = co_await sink.Error(status, text);
        bool reusable = !sink_ec && w.done.done() && w.body_complete;
        if (!w.done.done()) co_await finish_writer(true);
        co_return reusable&& w.body_complete && !w.ec;
      }

      auto& parser = *parser_slot;
      auto& res = parser.get();
      if (upgrade && res.result() == http::status::switching_protocols) {
        if (!w.done.done()) co_await finish_writer(false);
        co_await SpliceUpgraded(sink, res.base(), *conn);
        co_return false;
      }

      bool body_expected = !head_request && res.result_int() / 100 != 1 &&
                           res.result_int() != 204 && res.result_int() != 304;
      std::optional<std::uint64_t> length;
      if (auto cl = parser.content_length()) length = *cl;
      if (head_request) length = ContentLengthOf(res);
      const bool origin_keep_alive = res.keep_alive();
      // A small response usually arrives whole: its head and body then leave in one write (one
      // frame on a multiplexed client stream instead of two).
      const bool body_at_hand = body_expected && length && !parser.chunked() &&
                                *length <= BodyBuffer::size() && conn->buffer.size() >= *length;
      BodyRelay relay;
      relay.client_ec = co_await sink.Head(res.base(), length, body_expected, body_at_hand);
      relay.response_done = parser.is_done();
      if (!relay.client_ec && body_expected) {
        co_await RelayBody(p, rule, *conn, oref, parser, length, sink, relay);
      }
      if (!relay.client_ec && relay.origin_ok) relay.client_ec = co_await sink.End();
      if (!relay.origin_ok) sink.Abort();
      if (!w.done.done()) co_await finish_writer(!relay.client_ec && !w.body_complete);
      const bool ok = relay.origin_ok && !relay.client_ec && w.body_complete && !w.ec;
      if (ok && relay.response_done && origin_keep_alive && !w.origin_reset &&
          (!head_request || parser.is_header_done())) {
        p.pool_.Release(key, std::move(conn), rule.options.keep_alive_connections);
      }
      co_return ok;
    }
  }
};

OriginProxy::OriginProxy(asio::any_io_executor executor, Router router,
                         std::shared_ptr<spdlog::logger> logger)
    : executor_(std::move(executor)), router_(std::move(router)), logger_(std::move(logger)) {
  for (const Rule& rule : router_.rules()) pool_keys_.push_back(PoolKey(rule));
}

OriginProxy::~OriginProxy() = default;

awaitable<void> OriginProxy::ServeHttpStream(Stream& stream, const ClientInfo& client) {
  auto& log = ProxyInternals::Log(*this);
  StreamRef ref(stream);
  beast::flat_buffer buffer;
  buffer.reserve(kFirstReadBuffer);
  for (;;) {
    http::request_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.header_limit(kHeaderLimit);
    error_code ec;
    co_await http::async_read_header(ref, buffer, parser, redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == http::error::end_of_stream || ec == asio::error::eof) co_return;
      if (ec.category() == http::make_error_code(http::error::end_of_stream).category() ||
          ec == http::error::header_limit) {
        log.info("{}: malformed request: {}", stream.Describe(), ec.message());
        http::response<http::string_body> bad(http::status::bad_request, 11);
        bad.set(http::field::content_type, "text/plain");
        bad.body() = "400 Bad Request: " + ec.message() + "\n";
        bad.keep_alive(false);
        bad.prepare_payload();
        error_code wec;
        co_await http::async_write(ref, bad, redirect_error(use_awaitable, wec));
        co_await stream.ShutdownWrite();
      }
      co_return;
    }
    auto& req = parser.get();
    bool keep_alive = req.keep_alive();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      IoResult r = co_await stream.Write(asio::buffer(kContinue));
      if (r.ec) co_return;
    }
    bool has_body = parser.chunked() || parser.content_length().value_or(0) > 0;
    std::string host(View(req[http::field::host]));
    const Rule* rule = router_.Match(host, PathOf(View(req.target())));

    BodyReader reader = [&](asio::mutable_buffer b) -> awaitable<IoResult> {
      for (;;) {
        if (parser.is_done()) co_return IoResult{asio::error::eof, 0};
        parser.get().body().data = b.data();
        parser.get().body().size = b.size();
        error_code rec;
        co_await http::async_read_some(ref, buffer, parser, redirect_error(use_awaitable, rec));
        if (rec == http::error::need_buffer) rec = {};
        if (rec) co_return IoResult{rec, 0};
        std::size_t n = b.size() - parser.get().body().size;
        if (n > 0) co_return IoResult{{}, n};
      }
    };
    HttpStreamSink sink(stream, buffer, keep_alive);
    bool reusable;
    if (!rule) {
      ++stats_.requests;
      static const std::string kNoRule = "404 Not Found: no ingress rule matches this host/path\n";
      error_code wec = co_await sink.Error(http::status::not_found, kNoRule);
      reusable = !wec;
    } else {
      // Moved, not copied: only the body is read from the parser from here on.
      http::request_header<> out = std::move(req.base());
      RewriteRequest(out, *rule, client);
      if (has_body) {
        if (auto cl = parser.content_length())
          out.set(http::field::content_length, std::to_string(*cl));
      }
      reusable = co_await ProxyInternals::Exchange(*this, *rule, out, has_body, reader, sink);
    }
    if (!reusable || !keep_alive) break;
    // Whatever the origin did not read of the request body is read off here.
    while (!parser.is_done()) {
      BodyBuffer sink_buffer;
      IoResult r = co_await reader(asio::buffer(sink_buffer.data(), sink_buffer.size()));
      if (r.ec) co_return;
    }
  }
  co_await stream.ShutdownWrite();
}

awaitable<error_code> OriginProxy::ForwardRequest(const RequestHead& head, Stream& body_in,
                                                  ResponseWriter& out) {
  http::request_header<> req;
  req.method_string(BView(head.method));
  std::string_view target = PathOf(head.target);
  req.target(BView(target.empty() ? std::string_view("/") : target));
  req.version(11);
  for (const auto& [name, value] : head.headers) req.insert(BView(name), BView(value));
  if (req.find(http::field::host) == req.end() && !head.host.empty()) {
    req.set(http::field::host, head.host);
  }
  std::string host = head.host.empty() ? std::string(View(req[http::field::host])) : head.host;
  std::optional<std::uint64_t> length = ContentLengthOf(req);
  bool chunked = beast::iequals(req[http::field::transfer_encoding], "chunked");
  auto verb = req.method();
  bool bodyless_method = verb == http::verb::get || verb == http::verb::head ||
                         verb == http::verb::delete_ || verb == http::verb::options ||
                         verb == http::verb::trace || verb == http::verb::connect;
  bool has_body = length ? *length > 0 : (chunked || !bodyless_method);
  if (IsUpgrade(req)) has_body = false;

  WriterSink sink(body_in, out);
  const Rule* rule = router_.Match(host, PathOf(head.target));
  if (!rule) {
    ++stats_.requests;
    static const std::string kNoRule = "404 Not Found: no ingress rule matches this host/path\n";
    co_return co_await sink.Error(http::status::not_found, kNoRule);
  }
  std::uint64_t remaining = length.value_or(std::numeric_limits<std::uint64_t>::max());
  BodyReader reader = [&](asio::mutable_buffer b) -> awaitable<IoResult> {
    if (remaining == 0) co_return IoResult{asio::error::eof, 0};
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(b.size(), remaining));
    IoResult r = co_await body_in.ReadSome(asio::buffer(b.data(), want));
    if (r.ec == asio::error::eof && length && remaining > 0) {
      co_return IoResult{http::error::partial_message, 0};
    }
    if (!r.ec && length) remaining -= r.bytes;
    co_return r;
  };
  RewriteRequest(req, *rule, head.client);
  if (length && *length > 0) req.set(http::field::content_length, std::to_string(*length));
  bool ok = co_await ProxyInternals::Exchange(*this, *rule, req, has_body, reader, sink);
  co_return ok ? error_code{} : error_code(asio::error::connection_aborted);
}

awaitable<SpliceResult> OriginProxy::ServeTcp(Stream& stream, const Service& service,
                                              const OriginOptions& options) {
  std::string reason;
  SpliceResult result;
  if (service.kind == Service::Kind::kHttpStatus) {
    stream.Reset();
    result.ec = asio::error::operation_not_supported;
    co_return result;
  }
  auto origin = co_await ProxyInternals::Connect(*this, service, options, reason);
  if (!origin) {
    ProxyInternals::Log(*this).warn("origin {}: {}", service.text, reason);
    stream.Reset();
    result.ec = asio::error::connection_refused;
    co_return result;
  }
  co_return co_await Splice(stream, *origin);
}

awaitable<SpliceResult> OriginProxy::ServeTcp(Stream& stream, const Service& service) {
  static const OriginOptions kDefaults;
  co_return co_await ServeTcp(stream, service, kDefaults);
}

awaitable<void> OriginProxy::ServeHttpStream(Stream& stream) {
  static const ClientInfo kUnknownClient;
  co_await ServeHttpStream(stream, kUnknownClient);
}

awaitable<SpliceResult> OriginProxy::ServeTcp(Stream& stream, std::string_view hostname) {
  const Rule* rule = router_.Match(hostname, "");
  if (!rule) {
    stream.Reset();
    SpliceResult result;
    result.ec = asio::error::host_not_found;
    co_return result;
  }
  co_return co_await ServeTcp(stream, rule->service, rule->options);
}

}  // namespace tunnelkit::origin
