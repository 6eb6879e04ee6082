#include "tunnelkit/hello/hello_server.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/system/system_error.hpp>

#include "../http_names.hpp"
#include "tunnelkit/net/listener.hpp"
#include "tunnelkit/stream/asio_adapter.hpp"
#include "tunnelkit/stream/pipe.hpp"
#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit::hello {

using namespace http_names;

namespace {

constexpr std::size_t kChunk = 64 * 1024;
constexpr std::uint64_t kMaxBytes = std::uint64_t{1} << 40;

std::uint64_t SplitMix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr std::string_view kIndexPage =
    "<!doctype html>\n<html><head><title>tunnelkit hello</title></head>\n"
    "<body><h1>Hello from tunnelkit</h1>\n"
    "<p>This is tunnelkit's built-in hello-world origin. Try /echo, /bytes/1024, /sse, /ws, "
    "/status/418, /headers.</p></body></html>\n";

using Request = http::request<http::buffer_body>;
using Parser = http::request_parser<http::buffer_body>;

struct Target {
  std::string_view path;
  std::string_view query;
};

std::string_view View(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

Target SplitTarget(std::string_view target) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {target, {}};
  return {target.substr(0, q), target.substr(q + 1)};
}

// Value of `name` in an a=b&c=d query, or empty.
std::string_view QueryValue(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    auto eq = part.find('=');
    if (part.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

bool ParseNumber(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

class Connection {
 public:
  explicit Connection(Stream& stream) : stream_(stream), ref_(stream) {
    // Beast reads into the buffer's spare capacity: reserve it, or reads are 512 bytes.
    buffer_.reserve(kChunk);
  }

  awaitable<void> Run() {
    for (;;) {
      Parser parser;
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      parser.header_limit(64 * 1024);
      error_code ec;
      co_await http::async_read_header(ref_, buffer_, parser,
                                       asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::eof) {
          spdlog::debug("hello: closing {}: {}", stream_.Describe(), ec.message());
        }
        co_return;
      }
      bool keep_alive = parser.get().keep_alive();
      bool upgraded = false;
      ec = co_await Route(parser, upgraded);
      if (ec) {
        spdlog::debug("hello: closing {}: {}", stream_.Describe(), ec.message());
        stream_.Reset();
        co_return;
      }
      if (upgraded) co_return;
      if (!keep_alive) {
        co_await stream_.ShutdownWrite();
        co_return;
      }
    }
  }

 private:
  awaitable<error_code> Route(Parser& parser, bool& upgraded) {
    Request& req = parser.get();
    if (req[http::field::expect] == "100-continue") {
      http::response<http::empty_body> cont(http::status::continue_, 11);
      error_code ec;
      co_await http::async_write(ref_, cont, asio::redirect_error(use_awaitable, ec));
      if (ec) co_return ec;
    }
    auto [path, query] = SplitTarget(View(req.target()));
    if (path == "/echo") co_return co_await Echo(parser);
    if (path == "/ws" && beast::websocket::is_upgrade(req)) {
      upgraded = true;
      co_return co_await WebSocketEcho(req);
    }
    // Every other route ignores the request body: read it off first.
    if (error_code ec = co_await DiscardBody(parser)) co_return ec;
    bool head = req.method() == http::verb::head;
    if (path == "/") {
      co_return co_await SendText(req, http::status::ok, "text/html; charset=utf-8", kIndexPage,
                                  head);
    }
    if (path.starts_with("/bytes/")) {
      std::uint64_t n = 0;
      if (!ParseNumber(path.substr(7), n) || n > kMaxBytes) {
        co_return co_await SendText(req, http::status::bad_request, "text/plain",
                                    "bad byte count\n", head);
      }
      co_return co_await SendBytes(req, n, head);
    }
    if (path == "/sse") co_return co_await SendEvents(req, query);
    if (path.starts_with("/status/")) {
      std::uint64_t code = 0;
      if (!ParseNumber(path.substr(8), code) || code < 200 || code > 599) {
        co_return co_await SendText(req, http::status::bad_request, "text/plain",
                                    "bad status code\n", head);
      }
      bool no_body = code == 204 || code == 304;
      std::string text = no_body ? std::string() : fmt::format("status {}\n", code);
      co_return co_await SendText(req, static_cast<http::status>(code), "text/plain", text,
                                  head || no_body);
    }
    if (path == "/headers") {
      std::string text =
          fmt::format("{} {} HTTP/{}.{}\n", std::string(req.method_string()),
                      std::string(req.target()), req.version() / 10, req.version() % 10);
      for (const auto& field : req) {
        text +=
            fmt::format("{}: {}\n", std::string(field.name_string()), std::string(field.value()));
      }
      co_return co_await SendText(req, http::status::ok, "text/plain", text, head);
    }
    co_return co_await SendText(req, http::status::not_found, "text/plain", "not found\n", head);
  }

  awaitable<error_code> DiscardBody(Parser& parser) {
    std::vector<char> sink(kChunk);
    error_code ec;
    while (!parser.is_done()) {
      parser.get().body().data = sink.data();
      parser.get().body().size = sink.size();
      co_await http::async_read_some(ref_, buffer_, parser,
                                     asio::redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return ec;
    }
    co_return ec;
  }

  // Callers pass named strings: g++ 12 double-destroys non-trivial temporaries that appear in
  // a co_await expression.
  awaitable<error_code> SendText(const Request& req, http::status status, std::string_view type,
                                 std::string_view body, bool head) {
    http::response<http::string_body> res(status, req.version());
    res.set(http::field::server, "tunnelkit-hello");
    res.set(http::field::content_type, std::string(type));
    if (res.reason() == "<unknown-status>") res.reason("Status");
    res.keep_alive(req.keep_alive());
    std::size_t length = body.size();
    if (!head) res.body().assign(body.data(), body.size());
    res.prepare_payload();
    if (head) res.content_length(length);
    error_code ec;
    if (head) {
      http::response_serializer<http::string_body> sr(res);
      co_await http::async_write_header(ref_, sr, asio::redirect_error(use_awaitable, ec));
    } else {
      co_await http::async_write(ref_, res, asio::redirect_error(use_awaitable, ec));
    }
    co_return ec;
  }

  // A 200 whose body follows piece by piece (WritePiece): the hello server's fields, the
  // request's keep-alive.
  static void StreamHead(http::response<http::buffer_body>& res, const Request& req,
                         const char* content_type) {
    res.set(http::field::server, "tunnelkit-hello");
    res.set(http::field::content_type, content_type);
    res.keep_alive(req.keep_alive());
    res.body().data = nullptr;
    res.body().more = true;
  }

  awaitable<error_code> WriteHead(http::response_serializer<http::buffer_body>& sr) {
    error_code ec;
    co_await http::async_write_header(ref_, sr, asio::redirect_error(use_awaitable, ec));
    co_return ec;
  }

  // Writes one piece of a buffer_body response (more = false ends it).
  awaitable<error_code> WritePiece(http::response_serializer<http::buffer_body>& sr,
                                   http::response<http::buffer_body>& res, const void* data,
                                   std::size_t size, bool more) {
    res.body().data = const_cast<void*>(data);
    res.body().size = size;
    res.body().more = more;
    error_code ec;
    co_await http::async_write(ref_, sr, asio::redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    co_return ec;
  }

  awaitable<error_code> SendBytes(const Request& req, std::uint64_t n, bool head) {
    http::response<http::buffer_body> res(http::status::ok, req.version());
    StreamHead(res, req, "application/octet-stream");
    res.content_length(n);
    res.body().more = !head && n > 0;
    http::response_serializer<http::buffer_body> sr(res);
    error_code ec = co_await WriteHead(sr);
    if (ec || head || n == 0) co_return ec;
    std::vector<unsigned char> chunk(kChunk);
    std::uint64_t offset = 0;
    while (offset < n) {
      std::size_t size =
          static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), n - offset));
      PatternBytes(offset, chunk.data(), size);
      offset += size;
      if ((ec = co_await WritePiece(sr, res, chunk.data(), size, offset < n))) co_return ec;
    }
    co_return ec;
  }

  awaitable<error_code> SendEvents(const Request& req, std::string_view query) {
    std::uint64_t count = 10, interval_ms = 100;
    ParseNumber(QueryValue(query, "n"), count);
    ParseNumber(QueryValue(query, "interval_ms"), interval_ms);
    count = std::min<std::uint64_t>(count, 100000);
    interval_ms = std::min<std::uint64_t>(interval_ms, 60000);
    http::response<http::buffer_body> res(http::status::ok, req.version());
    StreamHead(res, req, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.chunked(true);
    http::response_serializer<http::buffer_body> sr(res);
    error_code ec = co_await WriteHead(sr);
    if (ec) co_return ec;
    asio::steady_timer timer(stream_.get_executor());
    for (std::uint64_t i = 1; i <= count; ++i) {
      if (i > 1) {
        timer.expires_after(std::chrono::milliseconds(interval_ms));
        co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
      }
      std::string event = fmt::format("data: tick {}\n\n", i);
      if ((ec = co_await WritePiece(sr, res, event.data(), event.size(), true))) co_return ec;
    }
    co_return co_await WritePiece(sr, res, nullptr, 0, false);
  }

  awaitable<error_code> Echo(Parser& parser) {
    Request& req = parser.get();
    http::response<http::buffer_body> res(http::status::ok, req.version());
    StreamHead(res, req, "application/octet-stream");
    if (auto length = parser.content_length()) {
      res.content_length(*length);
    } else {
      res.chunked(true);
    }
    http::response_serializer<http::buffer_body> sr(res);
    error_code ec = co_await WriteHead(sr);
    if (ec) co_return ec;
    std::vector<char> chunk(kChunk);
    while (!parser.is_done()) {
      req.body().data = chunk.data();
      req.body().size = chunk.size();
      co_await http::async_read_some(ref_, buffer_, parser,
                                     asio::redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return ec;
      std::size_t got = chunk.size() - req.body().size;
      if (got > 0 && (ec = co_await WritePiece(sr, res, chunk.data(), got, true))) co_return ec;
    }
    co_return co_await WritePiece(sr, res, nullptr, 0, false);
  }

  awaitable<error_code> WebSocketEcho(const Request& req) {
    beast::websocket::stream<StreamRef> ws(ref_);
    ws.set_option(beast::websocket::stream_base::decorator(
        [](beast::websocket::response_type& r) { r.set(http::field::server, "tunnelkit-hello"); }));
    ws.read_message_max(16 * 1024 * 1024);
    error_code ec;
    co_await ws.async_accept(req, asio::redirect_error(use_awaitable, ec));
    if (ec) co_return ec;
    beast::flat_buffer message;
    for (;;) {
      co_await ws.async_read(message, asio::redirect_error(use_awaitable, ec));
      if (ec == beast::websocket::error::closed) co_return error_code{};
      if (ec) co_return ec;
      ws.text(ws.got_text());
      co_await ws.async_write(message.data(), asio::redirect_error(use_awaitable, ec));
      if (ec) co_return ec;
      message.consume(message.size());
    }
  }

  Stream& stream_;
  StreamRef ref_;
  beast::flat_buffer buffer_{64 * 1024};
};

}  // namespace

void PatternBytes(std::uint64_t offset, unsigned char* out, std::size_t size) {
  std::size_t i = 0;
  while (i < size) {
    std::uint64_t pos = offset + i;
    std::uint64_t word = SplitMix64(pos / 8);
    unsigned shift = static_cast<unsigned>(pos % 8);
    for (; shift < 8 && i < size; ++shift, ++i) {
      out[i] = static_cast<unsigned char>(word >> (8 * shift));
    }
  }
}

awaitable<void> ServeConnection(Stream& stream) {
  Connection connection(stream);
  co_await connection.Run();
}

std::unique_ptr<Stream> ConnectInProcess(asio::any_io_executor executor) {
  auto [client, server] = MakeStreamPair(executor, 256 * 1024, "hello_world");
  asio::co_spawn(
      executor,
      [server = std::shared_ptr<Stream>(std::move(server))]() -> awaitable<void> {
        co_await ServeConnection(*server);
      },
      asio::detached);
  return std::move(client);
}

struct HelloServer::Impl {
  Impl(asio::io_context& io, const asio::ip::tcp::endpoint& listen) : listener(io.get_executor()) {
    if (const auto ec = listener.Open(listen)) throw boost::system::system_error(ec);
  }

  net::Listener listener;
};

HelloServer::HelloServer(asio::io_context& io, const asio::ip::tcp::endpoint& listen)
    : impl_(std::make_shared<Impl>(io, listen)) {}

HelloServer::~HelloServer() {
  Stop();
}

asio::ip::tcp::endpoint HelloServer::local_endpoint() const {
  return impl_->listener.local_endpoint();
}

void HelloServer::Start() {
  net::ListenerOptions options;
  options.name = "hello";
  impl_->listener.Start(
      [](asio::ip::tcp::socket socket) {
        const auto executor = socket.get_executor();
        asio::co_spawn(
            executor,
            [stream = std::make_shared<TcpStream>(std::move(socket))]() -> awaitable<void> {
              co_await ServeConnection(*stream);
            },
            asio::detached);
      },
      options);
}

void HelloServer::Stop() {
  impl_->listener.Close();
}

}  // namespace tunnelkit::hello
