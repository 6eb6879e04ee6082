#include "emulator/public_ingress.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <limits>
#include <optional>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/stream/connect_stream.hpp"
#include "tunnelkit/hex.hpp"
#include "tunnelkit/stream/asio_adapter.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/prefixed_stream.hpp"
#include "tunnelkit/stream/splice.hpp"

namespace tunnelkit::cloudflare::emulator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

using RequestParser = http::request_parser<http::buffer_body>;

constexpr std::size_t kBodyChunk = 64 * 1024;
// After the response, how long a visitor may take to finish an upload nobody reads any more.
constexpr std::chrono::milliseconds kUploadDrain = 5s;

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsHopByHop(const std::string& lower) {
  static const std::set<std::string> kHop = {
      "connection", "keep-alive", "proxy-connection",   "transfer-encoding",  "te",
      "trailer",    "upgrade",    "proxy-authenticate", "proxy-authorization"};
  return kHop.count(lower) != 0;
}

// Tokens named by Connection header values: those fields are hop-by-hop too.
std::set<std::string> ConnectionTokens(const std::vector<std::string>& values) {
  std::set<std::string> out;
  for (const auto& raw : values) {
    std::string value = Lower(raw);
    std::size_t start = 0;
    while (start <= value.size()) {
      std::size_t comma = value.find(',', start);
      if (comma == std::string::npos) comma = value.size();
      std::string token = value.substr(start, comma - start);
      token.erase(0, token.find_first_not_of(" \t"));
      token.erase(token.find_last_not_of(" \t") + 1);
      if (!token.empty()) out.insert(token);
      start = comma + 1;
    }
  }
  return out;
}

std::string RandomHex(std::size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return hex::Encode(raw);
}

// "8f3a...-LHR": random hex and the colo's letters, as Cloudflare's Cf-Ray.
std::string MakeRay(const std::string& location) {
  std::string colo;
  for (char c : location) {
    if (!std::isalpha(static_cast<unsigned char>(c))) break;
    colo += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return RandomHex(8) + "-" + (colo.empty() ? std::string("LHR") : colo);
}

// Beast writes "<unknown-status>" as the reason of codes it does not know (520-530, ...).
template <typename Message>
void SetReason(Message& message, unsigned status) {
  if (http::obsolete_reason(static_cast<http::status>(status)) != "<unknown-status>") return;
  message.reason(status == 524 ? "A Timeout Occurred" : "Unknown");
}

asio::awaitable<error_code> WriteSimple(Stream& visitor, unsigned version, unsigned status,
                                        std::string text, bool keep_alive, std::string ray,
                                        bool head_only) {
  http::response<http::string_body> response;
  response.version(version);
  response.result(status);
  SetReason(response, status);
  response.set(http::field::server, "cloudflare");
  response.set(http::field::content_type, "text/plain; charset=UTF-8");
  if (!ray.empty()) response.set("Cf-Ray", ray);
  response.keep_alive(keep_alive);
  response.body() = std::move(text);
  response.prepare_payload();
  StreamRef ref(visitor);
  error_code ec;
  if (head_only) {
    http::response_serializer<http::string_body> serializer(response);
    co_await http::async_write_header(ref, serializer,
                                      asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await http::async_write(ref, response, asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return ec;
}

// The request body's way from the visitor to the data stream, running beside the response.
struct Upload {
  explicit Upload(const asio::any_io_executor& ex)
      : done(ex, asio::steady_timer::time_point::max()) {}
  asio::steady_timer done;
  bool finished = false;
  bool visitor_failed = false;  // the visitor's body broke off: the stream was reset
  bool stream_failed = false;   // the stream stopped taking the body: the rest stays unread
  std::uint64_t bytes = 0;

  bool clean() const { return finished && !visitor_failed && !stream_failed; }

  asio::awaitable<void> Join() {
    while (!finished) {
      error_code ec;
      co_await done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  // Waits at most `limit`; false if the upload is still running.
  asio::awaitable<bool> JoinFor(std::chrono::milliseconds limit) {
    auto until = std::chrono::steady_clock::now() + limit;
    asio::steady_timer timer(done.get_executor());
    while (!finished && std::chrono::steady_clock::now() < until) {
      timer.expires_after(10ms);
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return finished;
  }
};

asio::awaitable<void> PumpBody(Stream& visitor, beast::flat_buffer& buffer, RequestParser& parser,
                               Stream& data_stream, std::shared_ptr<Upload> upload) {
  std::vector<char> chunk(kBodyChunk);
  StreamRef ref(visitor);
  // Beast reads at most the buffer's free capacity at a time: without room, a body would move
  // in pieces of a few hundred bytes, one QUIC write each.
  buffer.reserve(kBodyChunk);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    error_code ec;
    // read_some: what arrived goes on at once (a slow chunked upload is not held back).
    co_await http::async_read_some(ref, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      upload->visitor_failed = true;
      break;
    }
    std::size_t n = chunk.size() - parser.get().body().size;
    if (n == 0) continue;
    auto written = co_await data_stream.Write(asio::buffer(chunk.data(), n));
    if (written.ec) {
      upload->stream_failed = true;
      break;
    }
    upload->bytes += n;
  }
  if (upload->visitor_failed) {
    // A cut body must not reach the origin as a complete one.
    data_stream.Reset();
  } else if (!upload->stream_failed) {
    if (co_await data_stream.ShutdownWrite()) upload->stream_failed = true;
  }
}

}  // namespace

// One request/response on a visitor connection.
class PublicIngress::Exchange {
 public:
  Exchange(PublicIngress& ingress, Stream& visitor, beast::flat_buffer& buffer,
           RequestParser& parser, const std::string& visitor_ip)
      : ingress_(ingress),
        visitor_(visitor),
        buffer_(buffer),
        parser_(parser),
        visitor_ip_(visitor_ip),
        request_(parser.get()) {
    method_ = std::string(request_.method_string());
    host_ = std::string(request_[http::field::host]);
    target_ = std::string(request_.target());
    version_ = request_.version();
    head_method_ = request_.method() == http::verb::head;
    websocket_ = beast::websocket::is_upgrade(request_);
    keep_alive_ = request_.keep_alive();
    has_body_ = !parser.is_done();
    expect_continue_ =
        version_ >= 11 && beast::iequals(request_[http::field::expect], "100-continue");
  }

  // Returns true when the visitor connection can carry another request.
  asio::awaitable<bool> Run() {
    if (host_.empty()) {
      Fail(400, "error code: 400\nthe request has no Host header\n", "no host");
      co_return co_await SendFailure();
    }
    auto routes = ingress_.registry_.Route(host_);
    Picked picked = co_await ingress_.OpenDataStream(routes);
    if (!picked.stream) {
      // Cloudflare's answer for a tunnel host without a live connector.
      Fail(530, "error code: 1033", "no live connection");
      co_return co_await SendFailure();
    }
    stream_ = picked.stream;
    conn_index_ = std::to_string(picked.registration.conn_index);
    ray_ = MakeRay(picked.registration.location);
    bool keep = false;
    std::exception_ptr failed;
    try {
      keep = co_await Forward();
    } catch (...) {
      failed = std::current_exception();
    }
    if (failed && upload_ && !upload_->finished) {
      // The pump must not outlive the visitor, buffer and parser it refers to (all owned by
      // the caller's frame, which the exception is about to unwind): stop it and wait.
      stream_->Reset();
      visitor_.Reset();
    }
    if (failed) {
      if (upload_) co_await upload_->Join();
      std::rethrow_exception(failed);
    }
    if (upload_) {
      // The body pump refers to the stream and the parser: it must end before they do.
      if (!keep && !upload_->finished) {
        co_await visitor_.ShutdownWrite();
        if (!co_await upload_->JoinFor(kUploadDrain)) visitor_.Reset();
      }
      co_await upload_->Join();
      if (!upload_->clean()) keep = false;
    }
    co_return keep;
  }

 private:
  std::string Where() const { return method_ + " " + host_ + target_; }

  void Log(int status, const std::string& detail) {
    ++ingress_.requests_;
    std::string line = "proxied " + Where() + " status=" + std::to_string(status);
    if (!conn_index_.empty()) line += " conn_index=" + conn_index_;
    line += " " + detail;
    ingress_.Emit(line);
  }

  // An edge-made response (no origin involved). The request body, if any, is left unread, so
  // the connection closes after it.
  // Fail() records it (no temporaries inside co_await expressions: g++ 12 destroys those
  // twice), SendFailure() writes it.
  void Fail(unsigned status, std::string text, std::string why) {
    failure_status_ = status;
    failure_text_ = std::move(text);
    failure_why_ = std::move(why);
  }
  asio::awaitable<bool> SendFailure() {
    bool keep = keep_alive_ && !has_body_ && (!upload_ || upload_->clean());
    auto ec = co_await WriteSimple(visitor_, version_, failure_status_, failure_text_, keep, ray_,
                                   head_method_);
    Log(static_cast<int>(failure_status_), "error=\"" + failure_why_ + "\"");
    co_return keep && !ec;
  }

  ConnectRequest BuildRequest() const {
    HttpRequestMeta meta;
    meta.method = method_;
    meta.host = host_;
    std::vector<std::string> connection_values;
    for (const auto& field : request_) {
      if (field.name() == http::field::connection) connection_values.emplace_back(field.value());
    }
    auto tokens = ConnectionTokens(connection_values);
    std::string forwarded_for;
    for (const auto& field : request_) {
      std::string name(field.name_string());
      std::string lower = Lower(name);
      if (lower == "host") continue;
      bool upgrade_field = lower == "upgrade" || lower == "connection";
      if ((IsHopByHop(lower) || tokens.count(lower) != 0) && !(websocket_ && upgrade_field))
        continue;
      // Set by the edge, whatever the visitor sent. Expect: 100-continue is answered here.
      if (lower == "cf-connecting-ip" || lower == "cf-ray" || lower == "x-forwarded-proto" ||
          lower == "cf-visitor" || (lower == "expect" && expect_continue_))
        continue;
      if (lower == "x-forwarded-for") {
        forwarded_for += std::string(field.value()) + ", ";
        continue;
      }
      meta.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    meta.headers.emplace_back("Cf-Connecting-Ip", visitor_ip_);
    meta.headers.emplace_back("X-Forwarded-For", forwarded_for + visitor_ip_);
    meta.headers.emplace_back("X-Forwarded-Proto", "https");
    meta.headers.emplace_back("Cf-Visitor", R"({"scheme":"https"})");
    meta.headers.emplace_back("Cf-Ray", ray_);
    ConnectRequest request;
    request.dest = "https://" + host_ + target_;
    request.type = websocket_ ? ConnectionType::kWebsocket : ConnectionType::kHttp;
    request.metadata = EncodeRequestMetadata(meta);
    return request;
  }

  asio::awaitable<bool> Forward() {
    auto ex = visitor_.get_executor();
    auto request = BuildRequest();
    if (auto ec = co_await WriteConnectRequest(*stream_, request)) {
      stream_->Reset();
      Fail(502, "error code: 502\nthe tunnel's connection failed: " + ec.message() + "\n",
           "writing the request failed: " + ec.message());
      co_return co_await SendFailure();
    }
    if (has_body_) {
      if (expect_continue_) {
        // The data stream has no interim responses: the edge lets the body come at once.
        const std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        auto written = co_await visitor_.Write(asio::buffer(go_on.data(), go_on.size()));
        if (written.ec) {
          stream_->Reset();
          Log(0, "error=\"writing 100 Continue failed\"");
          co_return false;
        }
      }
      upload_ = std::make_shared<Upload>(ex);
      auto upload = upload_;
      auto stream = stream_;  // kept alive by the completion handler until the pump is done
      asio::co_spawn(ex, PumpBody(visitor_, buffer_, parser_, *stream_, upload),
                     [upload, stream](std::exception_ptr e) {
                       if (e) upload->visitor_failed = true;
                       upload->finished = true;
                       upload->done.cancel();
                     });
    } else if (!websocket_) {
      // No body: FIN right away. A WebSocket stream stays open for the frames after the 101.
      if (auto ec = co_await stream_->ShutdownWrite()) {
        stream_->Reset();
        Fail(502, "error code: 502\n", "ending the request failed");
        co_return co_await SendFailure();
      }
    }

    Deadline head_deadline(ex);
    auto stream = stream_;
    head_deadline.Arm(ingress_.options_.response_timeout, [stream] { stream->Reset(); });
    MetadataLimits limits;
    ResponseOpening opening = co_await ReadResponseOpening(*stream_, limits);
    head_deadline.Cancel();
    if (head_deadline.fired()) {
      Fail(524, "error code: 524\nthe origin did not answer in time\n", "response head timed out");
      co_return co_await SendFailure();
    }
    if (!opening.error.empty()) {
      stream_->Reset();
      Fail(502,
           "error code: 502\nBad gateway: the tunnel sent a bad response: " + opening.error + "\n",
           "bad response head: " + opening.error);
      co_return co_await SendFailure();
    }
    if (!opening.response.error.empty()) {
      stream_->Reset();
      Fail(502, "error code: 502\nBad gateway: the origin failed: " + opening.response.error + "\n",
           "origin error: " + opening.response.error);
      co_return co_await SendFailure();
    }
    HttpResponseMeta meta;
    if (auto error = DecodeResponseMetadata(opening.response.metadata, meta); !error.empty()) {
      stream_->Reset();
      Fail(502, "error code: 502\nBad gateway: the tunnel sent a bad response: " + error + "\n",
           "bad response metadata: " + error);
      co_return co_await SendFailure();
    }
    co_return co_await Respond(meta, std::move(opening.leftover));
  }

  // The origin's fields that go to the visitor (hop-by-hop ones and those Connection names
  // out, kept for a 101; Server and Cf-Ray are the edge's), and its Content-Length. False when
  // the lengths disagree or one is not a number.
  static bool CopyResponseFields(const HttpResponseMeta& meta, bool switching,
                                 http::response<http::buffer_body>& response,
                                 std::optional<std::uint64_t>& content_length) {
    std::vector<std::string> connection_values;
    for (const auto& [name, value] : meta.headers) {
      if (Lower(name) == "connection") connection_values.push_back(value);
    }
    auto tokens = ConnectionTokens(connection_values);
    bool bad_length = false;
    for (const auto& [name, value] : meta.headers) {
      std::string lower = Lower(name);
      bool upgrade_field = lower == "upgrade" || lower == "connection";
      if ((IsHopByHop(lower) || tokens.count(lower) != 0) && !(switching && upgrade_field))
        continue;
      if (lower == "content-length") {
        std::uint64_t n = 0;
        bool ok = !value.empty() && value.size() <= 19 &&
                  value.find_first_not_of("0123456789") == std::string::npos;
        if (ok) n = std::stoull(value);
        if (!ok || (content_length && *content_length != n)) bad_length = true;
        content_length = n;
        continue;
      }
      if (lower == "server" || lower == "cf-ray") continue;
      response.insert(name, value);
    }
    return !bad_length;
  }

  // A 101: its head to the visitor, then bytes both ways (each side's early bytes first).
  asio::awaitable<void> SpliceUpgraded(http::response<http::buffer_body>& response,
                                       std::vector<std::uint8_t> leftover) {
    StreamRef ref(visitor_);
    error_code ec;
    http::response<http::empty_body> head;
    head.base() = response.base();
    http::response_serializer<http::empty_body> serializer(head);
    co_await http::async_write_header(ref, serializer,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      stream_->Reset();
      Log(101, "error=\"writing the 101 failed\"");
      co_return;
    }
    // Bytes the visitor sent after its request head are already in Beast's buffer.
    auto pending = buffer_.data();
    std::vector<std::uint8_t> early(
        static_cast<const std::uint8_t*>(pending.data()),
        static_cast<const std::uint8_t*>(pending.data()) + pending.size());
    buffer_.consume(buffer_.size());
    PrefixedStream visitor_side(visitor_, std::move(early));
    PrefixedStream tunnel_side(*stream_, std::move(leftover));
    auto result = co_await Splice(visitor_side, tunnel_side);
    Log(101,
        "websocket up=" + std::to_string(result.a_to_b) + " down=" + std::to_string(result.b_to_a));
  }

  // The response body from the tunnel stream to the visitor; `bytes` relayed. Why it was cut
  // short, or empty when it was whole.
  asio::awaitable<std::string> RelayBody(http::response<http::buffer_body>& response,
                                         http::response_serializer<http::buffer_body>& serializer,
                                         std::vector<std::uint8_t> leftover,
                                         std::optional<std::uint64_t> content_length,
                                         std::uint64_t& bytes) {
    StreamRef ref(visitor_);
    error_code ec;
    PrefixedStream body(*stream_, std::move(leftover));
    std::vector<char> chunk(kBodyChunk);
    for (;;) {
      auto r = co_await body.ReadSome(asio::buffer(chunk));
      if (r.ec == asio::error::eof) {
        if (content_length && bytes != *content_length) {
          co_return "body ended after " + std::to_string(bytes) + " of " +
              std::to_string(*content_length) + " bytes";
        }
        response.body().data = nullptr;
        response.body().size = 0;
        response.body().more = false;
        co_await http::async_write(ref, serializer, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return "writing to the visitor failed: " + ec.message();
        co_return std::string();
      }
      if (r.ec) co_return "the tunnel reset the stream: " + r.ec.message();
      if (content_length && bytes + r.bytes > *content_length) {
        stream_->Reset();
        co_return "body longer than its Content-Length";
      }
      response.body().data = chunk.data();
      response.body().size = r.bytes;
      response.body().more = true;
      co_await http::async_write(ref, serializer, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        stream_->Reset();
        co_return "writing to the visitor failed: " + ec.message();
      }
      bytes += r.bytes;
    }
  }

  asio::awaitable<bool> Respond(const HttpResponseMeta& meta, std::vector<std::uint8_t> leftover) {
    const bool switching = websocket_ && meta.status == 101;
    if (websocket_ && !switching) {
      // The origin refused the upgrade: an ordinary response; end the request side.
      co_await stream_->ShutdownWrite();
    }
    http::response<http::buffer_body> response;
    response.version(version_);
    response.result(static_cast<unsigned>(meta.status));
    SetReason(response, static_cast<unsigned>(meta.status));
    std::optional<std::uint64_t> content_length;
    if (!CopyResponseFields(meta, switching, response, content_length)) {
      stream_->Reset();
      Fail(502, "error code: 502\nBad gateway: bad Content-Length\n",
           "bad response Content-Length");
      co_return co_await SendFailure();
    }
    response.set(http::field::server, "cloudflare");
    response.set("Cf-Ray", ray_);
    if (switching) {
      co_await SpliceUpgraded(response, std::move(leftover));
      co_return false;
    }

    const int status = meta.status;
    const bool no_body =
        head_method_ || (status >= 100 && status < 200) || status == 204 || status == 304;
    bool keep = keep_alive_ && (!upload_ || upload_->clean());
    if (no_body) {
      if (content_length && head_method_) response.content_length(*content_length);
    } else if (content_length) {
      response.content_length(*content_length);
    } else if (version_ >= 11) {
      response.chunked(true);
    } else {
      keep = false;  // HTTP/1.0 without a length: the body ends with the connection
    }
    response.keep_alive(keep);
    response.body().data = nullptr;
    response.body().size = 0;
    response.body().more = !no_body;
    http::response_serializer<http::buffer_body> serializer(response);
    StreamRef ref(visitor_);
    error_code ec;
    co_await http::async_write_header(ref, serializer,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      stream_->Reset();
      Log(status, "error=\"writing the response head failed\"");
      co_return false;
    }
    std::uint64_t bytes = 0;
    std::string cut;
    if (!no_body) {
      cut = co_await RelayBody(response, serializer, std::move(leftover), content_length, bytes);
    }
    std::string detail = "bytes=" + std::to_string(bytes);
    if (upload_) detail += " up=" + std::to_string(upload_->bytes);
    if (!cut.empty()) detail += " cut=\"" + cut + "\"";
    Log(status, detail);
    // A cut response must look cut to the visitor: no final chunk, and the connection ends.
    co_return keep&& cut.empty();
  }

  PublicIngress& ingress_;
  Stream& visitor_;
  beast::flat_buffer& buffer_;
  RequestParser& parser_;
  const std::string& visitor_ip_;
  http::request<http::buffer_body>& request_;
  std::string method_, host_, target_;
  unsigned version_ = 11;
  bool head_method_ = false;
  bool websocket_ = false;
  bool keep_alive_ = true;
  bool has_body_ = false;
  bool expect_continue_ = false;
  std::shared_ptr<Stream> stream_;
  std::string conn_index_;
  std::string ray_;
  std::shared_ptr<Upload> upload_;
  unsigned failure_status_ = 502;
  std::string failure_text_;
  std::string failure_why_;
};

PublicIngress::PublicIngress(TunnelRegistry& registry, PublicIngressOptions options)
    : registry_(registry), options_(std::move(options)) {}

void PublicIngress::Emit(const std::string& line) const {
  if (options_.on_event) options_.on_event(line);
}

asio::awaitable<PublicIngress::Picked> PublicIngress::OpenDataStream(
    const std::vector<Registration>& routes) {
  Picked picked;
  if (routes.empty()) co_return picked;
  std::size_t start = next_[routes.front().tunnel_id]++;
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const Registration& registration = routes[(start + i) % routes.size()];
    auto connection = registration.connection.lock();
    if (!connection) continue;
    std::string failure;
    try {
      picked.stream = co_await connection->OpenDataStream();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (picked.stream) {
      picked.registration = registration;
      co_return picked;
    }
    Emit("open data stream failed conn_index=" + std::to_string(registration.conn_index) + " " +
         failure);
  }
  co_return picked;
}

asio::awaitable<void> PublicIngress::ServeHttp(std::unique_ptr<Stream> visitor,
                                               std::string visitor_ip) {
  Stream* raw = visitor.get();
  Deadline idle(visitor->get_executor());
  beast::flat_buffer buffer;
  StreamRef ref(*visitor);
  for (;;) {
    RequestParser parser;
    parser.header_limit(options_.max_header_bytes);
    // No limit (bodies are streamed). Not boost::none: Beast 1.74 compares a Content-Length
    // against the optional itself, and any length is "greater" than none.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    idle.Arm(options_.idle_timeout, [raw] { raw->Reset(); });
    error_code ec;
    co_await http::async_read_header(ref, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    idle.Cancel();
    if (ec) {
      if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message) {
        Emit("refused visitor request: " + ec.message());
        std::string text = "error code: 400\n";
        co_await WriteSimple(*visitor, 11, 400, text, false, {}, false);
      }
      break;
    }
    Exchange exchange(*this, *visitor, buffer, parser, visitor_ip);
    if (!co_await exchange.Run()) break;
  }
  co_await visitor->ShutdownWrite();
}

asio::awaitable<void> PublicIngress::ServeTcp(std::unique_ptr<Stream> visitor,
                                              unsigned listen_port) {
  auto routes = registry_.MostRecentTunnel();
  Picked picked = co_await OpenDataStream(routes);
  if (!picked.stream) {
    Emit("tcp ingress: no live connection");
    visitor->Reset();
    co_return;
  }
  const std::string where = "conn_index=" + std::to_string(picked.registration.conn_index);
  ConnectRequest request;
  request.dest = picked.registration.hostname + ":" + std::to_string(listen_port);
  request.type = ConnectionType::kTcp;
  auto stream = picked.stream;
  std::string error;
  if (auto ec = co_await WriteConnectRequest(*stream, request)) error = ec.message();
  ResponseOpening opening;
  if (error.empty()) {
    Deadline head_deadline(visitor->get_executor());
    head_deadline.Arm(options_.response_timeout, [stream] { stream->Reset(); });
    MetadataLimits limits;
    opening = co_await ReadResponseOpening(*stream, limits);
    head_deadline.Cancel();
    error = head_deadline.fired() ? std::string("no answer in time") : opening.error;
    if (error.empty()) error = opening.response.error;
  }
  if (!error.empty()) {
    Emit("tcp ingress " + request.dest + " " + where + " error=\"" + error + "\"");
    stream->Reset();
    co_await visitor->ShutdownWrite();
    co_return;
  }
  PrefixedStream tunnel_side(*stream, std::move(opening.leftover));
  auto result = co_await Splice(*visitor, tunnel_side);
  Emit("tcp ingress " + request.dest + " " + where + " up=" + std::to_string(result.a_to_b) +
       " down=" + std::to_string(result.b_to_a));
}

}  // namespace tunnelkit::cloudflare::emulator
