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

#include "tunnelkit/buffer_pool.hpp"
#include "tunnelkit/hello/hello_server.hpp"
#include "tunnelkit/stream/asio_adapter.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

// Note: g++ 12 double-destroys non-trivial temporaries created inside a co_await expression,
// so arguments of awaited calls are named locals or trivially destructible values.

namespace tunnelkit::origin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;

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

std::string_view View(beast::string_view s) {
  return {s.data(), s.size()};
}
beast::string_view BView(std::string_view s) {
  return {s.data(), s.size()};
}

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

// Fields that describe one hop, never forwarded as they are.
void RemoveHopByHop(http::fields& fields, bool keep_upgrade) {
  // Names listed in Connection are hop-by-hop too.
  std::vector<std::string> listed;
  for (auto it = fields.find(http::field::connection);
       it != fields.end() && it->name() == http::field::connection; ++it) {
    std::string value(View(it->value()));
    std::size_t start = 0;
    while (start < value.size()) {
      auto comma = value.find(',', start);
      std::string token =
          value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? value.size() : comma + 1;
      auto b = token.find_first_not_of(" \t");
      auto e = token.find_last_not_of(" \t");
      if (b != std::string::npos) listed.push_back(token.substr(b, e - b + 1));
    }
  }
  for (const auto& name : listed) {
    if (keep_upgrade && beast::iequals(name, "upgrade")) continue;
    fields.erase(BView(name));
  }
  for (auto f : {http::field::connection, http::field::keep_alive, http::field::proxy_connection,
                 http::field::te, http::field::trailer, http::field::transfer_encoding,
                 http::field::proxy_authorization}) {
    fields.erase(f);
  }
  if (!keep_upgrade) fields.erase(http::field::upgrade);
}

bool IsUpgrade(const http::fields& fields) {
  if (fields.find(http::field::upgrade) == fields.end()) return false;
  std::string connection(View(fields[http::field::connection]));
  for (auto& c : connection) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return connection.find("upgrade") != std::string::npos;
}

void Append(http::fields& fields, beast::string_view name, const std::string& value) {
  if (value.empty()) return;
  auto existing = fields[name];
  if (existing.empty()) {
    fields.set(name, value);
  } else {
    fields.set(name, std::string(View(existing)) + ", " + value);
  }
}

// The Content-Length field as a number; nullopt when absent or not a plain decimal.
std::optional<std::uint64_t> ContentLengthOf(const http::fields& fields) {
  auto it = fields.find(http::field::content_length);
  if (it == fields.end()) return std::nullopt;
  auto v = View(it->value());
  std::uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || ptr != v.data() + v.size()) return std::nullopt;
  return n;
}

// Prepares the request head sent to the origin.
void RewriteRequest(http::request_header<>& req, const Rule& rule, const ClientInfo& client) {
  bool upgrade = IsUpgrade(req);
  RemoveHopByHop(req, upgrade);
  req.erase(http::field::content_length);
  req.erase(http::field::expect);  // answered by the proxy itself
  if (upgrade) req.set(http::field::connection, "Upgrade");
  Append(req, "X-Forwarded-For", client.address);
  Append(req, "X-Forwarded-Proto", client.scheme);
  if (!rule.options.http_host_header.empty()) {
    req.set(http::field::host, rule.options.http_host_header);
  }
  req.version(11);
}

std::string PoolKey(const Rule& rule) {
  const Service& s = rule.service;
  switch (s.kind) {
    case Service::Kind::kHttps:
      return fmt::format("https://{}:{}|{}|{}|{}", s.host, s.port, rule.options.ca_pool,
                         rule.options.no_tls_verify, rule.options.http_host_header);
    case Service::Kind::kUnix:
      return "unix:" + s.path;
    case Service::Kind::kHelloWorld:
      return "hello_world";
    default:
      return fmt::format("tcp://{}:{}", s.host, s.port);
  }
}

// The client side of an exchange: where the response goes.
class Sink {
 public:
  virtual ~Sink() = default;
  // The origin's response head; `content_length` when the origin gave one, `body` false when
  // the response has no body (HEAD, 1xx, 204, 304). The sink may take the head's fields (the
  // caller reads nothing of them afterwards): a copy would allocate every field again.
  // `body_at_hand`: the whole body is already read and follows at once, so the head may wait
  // to leave with it.
  virtual awaitable<error_code> Head(http::response_header<>& head,
                                     std::optional<std::uint64_t> content_length, bool body,
                                     bool body_at_hand) = 0;
  virtual awaitable<error_code> Body(const char* data, std::size_t size) = 0;
  virtual awaitable<error_code> End() = 0;
  // A response made by the proxy (502, 504, 404, http_status).
  virtual awaitable<error_code> Error(http::status status, const std::string& text) = 0;
  // The raw client stream after a 101, plus bytes already read from it.
  virtual Stream& RawStream() = 0;
  virtual beast::flat_buffer* Leftover() = 0;
  // Breaks the client side (a response cannot be completed).
  virtual void Abort() = 0;
  bool head_sent = false;
};

using BodyReader = std::function<awaitable<IoResult>(asio::mutable_buffer)>;

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

  // One request/response exchange with the rule's origin. `req` is the rewritten head.
  // Returns false when the client connection cannot be reused.
  static awaitable<bool> Exchange(OriginProxy& p, const Rule& rule, http::request_header<>& req,
                                  bool has_body, BodyReader& reader, Sink& sink) {
    ++p.stats_.requests;
    auto& log = Log(p);
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
      bool reused = conn != nullptr;
      if (reused) {
        ++p.stats_.pooled_reuses;
      } else {
        std::string reason;
        auto stream = co_await Connect(p, rule.service, rule.options, reason);
        if (!stream) {
          log.warn("origin {}: {}", rule.service.text, reason);
          ++p.stats_.bad_gateway;
          std::string text = "502 Bad Gateway: " + reason + "\n";
          error_code ec = co_await sink.Error(http::status::bad_gateway, text);
          co_return !ec && !has_body;
        }
        conn = std::make_unique<OriginConnection>();
        conn->stream = std::move(stream);
        conn->buffer.reserve(kChunk);
      }
      ++conn->requests;
      Stream& origin = *conn->stream;
      StreamRef oref(origin);

      // Request writer: head, then the body as it arrives, concurrently with the response.
      Event writer_done(p.executor_);
      error_code write_ec;
      bool body_complete = !has_body;
      std::uint64_t body_bytes = 0;
      // Set once the proxy broke the origin connection: it must never go back to the pool, even
      // when the writer finishes cleanly afterwards (its last write can be empty).
      bool origin_reset = false;
      auto reset_origin = [&] {
        origin_reset = true;
        origin.Reset();
      };
      Deadline deadline(p.executor_);
      deadline.Arm(rule.options.response_timeout, reset_origin);
      out_req.body().data = nullptr;
      out_req.body().size = 0;
      out_req.body().more = has_body;
      if (!has_body) {
        // Nothing to stream after the head: written here, before the response is read (a
        // spawned writer costs a coroutine and its frames on every request).
        http::request_serializer<http::buffer_body> sr(out_req);
        co_await http::async_write(oref, sr, redirect_error(use_awaitable, write_ec));
        writer_done.Set();
      } else {
        asio::co_spawn(
            p.executor_,
            [&]() -> awaitable<void> {
              http::request_serializer<http::buffer_body> sr(out_req);
              co_await http::async_write_header(oref, sr, redirect_error(use_awaitable, write_ec));
              BodyBuffer chunk;
              while (!write_ec) {
                IoResult r = co_await reader(asio::buffer(chunk.data(), chunk.size()));
                if (r.ec == asio::error::eof) {
                  body_complete = true;
                  out_req.body().data = nullptr;
                  out_req.body().size = 0;
                  out_req.body().more = false;
                  co_await http::async_write(oref, sr, redirect_error(use_awaitable, write_ec));
                  break;
                }
                if (r.ec) {
                  write_ec = r.ec;
                  reset_origin();
                  break;
                }
                body_bytes += r.bytes;
                out_req.body().data = chunk.data();
                out_req.body().size = r.bytes;
                out_req.body().more = true;
                co_await http::async_write(oref, sr, redirect_error(use_awaitable, write_ec));
                if (write_ec == http::error::need_buffer) write_ec = {};
                // The origin is still being fed: the response clock starts after the body.
                deadline.Extend(rule.options.response_timeout);
              }
              writer_done.Set();
            },
            asio::detached);
      }

      // Every byte of a declared-length body is written: the writer needs nothing more from the
      // client (the reader answers end-of-body without I/O) and its last write is empty.
      const std::optional<std::uint64_t> declared_length = ContentLengthOf(out_req);
      auto body_sent = [&] { return declared_length && body_bytes >= *declared_length; };
      // Finishes the writer before leaving (it refers to this frame). A writer still waiting
      // for body bytes is stopped by breaking the origin (and the client, when asked to).
      // Called only while the writer runs (a finished one needs nothing, not even a frame).
      auto finish_writer = [&](bool abort_client) -> awaitable<void> {
        if (!writer_done.done() && !body_sent()) {
          reset_origin();
          if (abort_client) sink.Abort();
        }
        co_await writer_done.Wait();
      };

      std::optional<http::response_parser<http::buffer_body>> parser_slot;
      error_code ec;
      // 1xx other than 101 are skipped (the proxy answered Expect itself).
      for (;;) {
        parser_slot.emplace();
        parser_slot->body_limit(std::numeric_limits<std::uint64_t>::max());
        parser_slot->header_limit(kHeaderLimit);
        if (head_request) parser_slot->skip(true);
        co_await http::async_read_header(oref, conn->buffer, *parser_slot,
                                         redirect_error(use_awaitable, ec));
        if (ec) break;
        unsigned code = parser_slot->get().result_int();
        if (code / 100 != 1 || code == 101) break;
      }
      auto& parser = *parser_slot;
      bool timed_out = deadline.fired();
      deadline.Cancel();
      if (ec) {
        if (!timed_out && reused && body_bytes == 0 && attempt == 0) {
          // A pooled connection the origin had closed: try once more on a fresh one.
          if (!writer_done.done()) co_await finish_writer(false);
          if (body_bytes == 0) continue;
        }
        std::string text;
        http::status status;
        if (timed_out) {
          ++p.stats_.gateway_timeout;
          status = http::status::gateway_timeout;
          text = fmt::format("504 Gateway Timeout: {} did not answer within {} ms\n",
                             rule.service.text, rule.options.response_timeout.count());
        } else {
          ++p.stats_.bad_gateway;
          status = http::status::bad_gateway;
          text = fmt::format("502 Bad Gateway: {} closed the connection ({})\n", rule.service.text,
                             ec.message());
        }
        log.warn("origin {}: {}", rule.service.text, text.substr(0, text.size() - 1));
        error_code sink_ec = co_await sink.Error(status, text);
        bool reusable = !sink_ec && writer_done.done() && body_complete;
        if (!writer_done.done()) co_await finish_writer(true);
        co_return reusable&& body_complete && !write_ec;
      }

      auto& res = parser.get();
      if (upgrade && res.result() == http::status::switching_protocols) {
        if (!writer_done.done()) co_await finish_writer(false);
        error_code hec = co_await sink.Head(res.base(), std::nullopt, false, false);
        if (hec) co_return false;
        // Bytes already read on either side go first, then raw bytes both ways.
        Stream& client = sink.RawStream();
        if (conn->buffer.size() > 0) {
          auto data = conn->buffer.data();
          hec = co_await WriteAll(client, static_cast<const char*>(data.data()), data.size());
          conn->buffer.consume(conn->buffer.size());
        }
        if (auto* left = sink.Leftover(); !hec && left && left->size() > 0) {
          auto data = left->data();
          hec = co_await WriteAll(origin, static_cast<const char*>(data.data()), data.size());
          left->consume(left->size());
        }
        if (!hec) co_await Splice(client, origin);
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
      error_code client_ec = co_await sink.Head(res.base(), length, body_expected, body_at_hand);
      bool origin_ok = true;
      bool response_done = parser.is_done();
      if (!client_ec && body_expected) {
        BodyBuffer chunk;
        // A body of known length: once the bytes already in the connection buffer are through
        // the parser, the rest is read from the origin straight into the chunk (the parser
        // would read into the connection buffer and copy every byte again).
        const bool direct = length && !parser.chunked();
        std::uint64_t left = length.value_or(0);
        response_done = direct ? left == 0 : parser.is_done();
        while (!response_done) {
          std::size_t n = 0;
          if (direct && conn->buffer.size() == 0) {
            const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), left));
            IoResult r = co_await origin.ReadSome(asio::buffer(chunk.data(), want));
            ec = r.ec == asio::error::eof ? http::error::partial_message : r.ec;
            n = r.bytes;
          } else {
            res.body().data = chunk.data();
            res.body().size = chunk.size();
            co_await http::async_read_some(oref, conn->buffer, parser,
                                           redirect_error(use_awaitable, ec));
            if (ec == http::error::need_buffer) ec = {};
            n = chunk.size() - res.body().size;
          }
          if (ec) {
            log.warn("origin {}: response body cut short: {}", rule.service.text, ec.message());
            origin_ok = false;
            break;
          }
          if (direct) left -= std::min<std::uint64_t>(n, left);
          response_done = direct ? left == 0 : parser.is_done();
          if (n == 0) continue;
          client_ec = co_await sink.Body(chunk.data(), n);
          if (client_ec) break;
        }
      }
      if (!client_ec && origin_ok) client_ec = co_await sink.End();
      if (!origin_ok) sink.Abort();
      if (!writer_done.done()) co_await finish_writer(!client_ec && !body_complete);
      bool reusable_origin = origin_ok && !client_ec && response_done && origin_keep_alive &&
                             body_complete && !write_ec && !origin_reset &&
                             (!head_request || parser.is_header_done());
      if (reusable_origin) {
        p.pool_.Release(key, std::move(conn), rule.options.keep_alive_connections);
      }
      co_return origin_ok && !client_ec && body_complete && !write_ec;
    }
  }
};

namespace {

// Sink for (a): responses written as HTTP/1.1 to the client stream.
class HttpStreamSink final : public Sink {
 public:
  HttpStreamSink(Stream& client, beast::flat_buffer& buffer, bool keep_alive)
      : client_(client), ref_(client), buffer_(buffer), keep_alive_(keep_alive) {}

  awaitable<error_code> Head(http::response_header<>& head,
                             std::optional<std::uint64_t> content_length, bool body,
                             bool body_at_hand) override {
    head_sent = true;
    res_.base() = std::move(head);
    bool upgrade = res_.result() == http::status::switching_protocols;
    RemoveHopByHop(res_, upgrade);
    res_.version(11);
    error_code ec;
    if (upgrade) {
      res_.set(http::field::connection, "Upgrade");
      http::response<http::empty_body> r;
      r.base() = res_.base();
      co_await http::async_write(ref_, r, redirect_error(use_awaitable, ec));
      co_return ec;
    }
    res_.keep_alive(keep_alive_);
    body_ = body;
    if (content_length) {
      res_.content_length(*content_length);
    } else if (body) {
      res_.chunked(true);
    }
    res_.body().data = nullptr;
    res_.body().size = 0;
    res_.body().more = body;
    sr_.emplace(res_);
    // Deferred: the serializer writes the head with the first body bytes (Body or End).
    if (body_at_hand) co_return ec;
    co_await http::async_write_header(ref_, *sr_, redirect_error(use_awaitable, ec));
    co_return ec;
  }

  awaitable<error_code> Body(const char* data, std::size_t size) override {
    res_.body().data = const_cast<char*>(data);
    res_.body().size = size;
    res_.body().more = true;
    error_code ec;
    co_await http::async_write(ref_, *sr_, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    co_return ec;
  }

  awaitable<error_code> End() override {
    if (!body_ || !sr_) co_return error_code{};
    res_.body().data = nullptr;
    res_.body().size = 0;
    res_.body().more = false;
    error_code ec;
    co_await http::async_write(ref_, *sr_, redirect_error(use_awaitable, ec));
    co_return ec;
  }

  awaitable<error_code> Error(http::status status, const std::string& text) override {
    if (head_sent) {
      Abort();
      co_return asio::error::connection_aborted;
    }
    head_sent = true;
    http::response<http::string_body> r(status, 11);
    r.set(http::field::content_type, "text/plain; charset=utf-8");
    r.set(http::field::server, "tunnelkit");
    r.keep_alive(keep_alive_);
    r.body() = text;
    r.prepare_payload();
    error_code ec;
    co_await http::async_write(ref_, r, redirect_error(use_awaitable, ec));
    co_return ec;
  }

  Stream& RawStream() override { return client_; }
  beast::flat_buffer* Leftover() override { return &buffer_; }
  void Abort() override { client_.Reset(); }

 private:
  Stream& client_;
  StreamRef ref_;
  beast::flat_buffer& buffer_;
  bool keep_alive_;
  bool body_ = false;
  http::response<http::buffer_body> res_;
  std::optional<http::response_serializer<http::buffer_body>> sr_;
};

// Reads from one stream, writes to another: the two halves of a structured request's body.
class JoinedStream final : public Stream {
 public:
  JoinedStream(Stream& in, Stream& out) : in_(in), out_(out) {}
  asio::any_io_executor get_executor() override { return in_.get_executor(); }
  awaitable<IoResult> ReadSome(asio::mutable_buffer b) override { return in_.ReadSome(b); }
  awaitable<IoResult> Write(asio::const_buffer b) override { return out_.Write(b); }
  awaitable<error_code> ShutdownWrite() override { return out_.ShutdownWrite(); }
  void Reset() override {
    in_.Reset();
    if (&out_ != &in_) out_.Reset();
  }
  std::string Describe() const override { return in_.Describe(); }

 private:
  Stream& in_;
  Stream& out_;
};

// Sink for (b): the head goes to the ResponseWriter, the body to its stream.
class WriterSink final : public Sink {
 public:
  WriterSink(Stream& body_in, ResponseWriter& out) : out_(out), joined_(body_in, out.Body()) {}

  awaitable<error_code> Head(http::response_header<>& head,
                             std::optional<std::uint64_t> content_length, bool body,
                             bool /*body_at_hand*/) override {
    head_sent = true;
    body_ = body;
    http::fields& fields = head;
    RemoveHopByHop(fields, head.result() == http::status::switching_protocols);
    ResponseHead rh;
    rh.status = static_cast<int>(head.result_int());
    rh.reason = std::string(View(head.reason()));
    for (const auto& f : fields) {
      if (f.name() == http::field::content_length) continue;
      rh.headers.emplace_back(std::string(View(f.name_string())), std::string(View(f.value())));
    }
    if (content_length) rh.headers.emplace_back("Content-Length", std::to_string(*content_length));
    co_return co_await out_.WriteHead(rh);
  }

  awaitable<error_code> Body(const char* data, std::size_t size) override {
    IoResult r = co_await out_.Body().Write(asio::buffer(data, size));
    co_return r.ec;
  }

  awaitable<error_code> End() override { co_return co_await out_.Body().ShutdownWrite(); }

  awaitable<error_code> Error(http::status status, const std::string& text) override {
    if (head_sent) {
      Abort();
      co_return asio::error::connection_aborted;
    }
    head_sent = true;
    ResponseHead rh;
    rh.status = static_cast<int>(status);
    rh.reason = std::string(View(http::obsolete_reason(status)));
    rh.headers = {{"Content-Type", "text/plain; charset=utf-8"},
                  {"Content-Length", std::to_string(text.size())}};
    if (status == http::status::bad_gateway || status == http::status::gateway_timeout) {
      rh.proxy_error = text;
      while (!rh.proxy_error.empty() && rh.proxy_error.back() == '\n') rh.proxy_error.pop_back();
    }
    error_code ec = co_await out_.WriteHead(rh);
    if (ec) co_return ec;
    if (!text.empty()) {
      IoResult r = co_await out_.Body().Write(asio::buffer(text));
      if (r.ec) co_return r.ec;
    }
    co_return co_await out_.Body().ShutdownWrite();
  }

  Stream& RawStream() override { return joined_; }
  beast::flat_buffer* Leftover() override { return nullptr; }
  void Abort() override { joined_.Reset(); }

 private:
  ResponseWriter& out_;
  JoinedStream joined_;
  bool body_ = false;
};

std::string_view PathOf(std::string_view target) {
  // Absolute-form targets ("http://host/path") are reduced to the path.
  if (!target.empty() && target.front() != '/') {
    auto scheme = target.find("://");
    if (scheme != std::string_view::npos) {
      auto slash = target.find('/', scheme + 3);
      return slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  return target;
}

}  // namespace

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
