#include "api/quick_tunnel_client.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <optional>

#include "tunnelkit/stream/asio_adapter.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::cloudflare {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using Kind = QuickTunnelApiError::Kind;

namespace {

constexpr std::size_t kMaxReplyBytes = 64 * 1024;

std::string Snippet(const std::string& body) {
  std::string out = body.substr(0, 100);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// One attempt. Returns the tunnel, or throws QuickTunnelApiError; `retryable` says whether the
// failure is one the policy retries.
asio::awaitable<QuickTunnel> Attempt(asio::any_io_executor executor,
                                     const QuickTunnelApiOptions& options, const ServiceUrl& url,
                                     bool& retryable) {
  retryable = false;
  const std::string& where = options.service_url;
  boost::system::error_code ec;
  asio::ip::tcp::socket socket(executor);
  ec = co_await ConnectTcp(socket, url.host, url.port, options.timeout);
  if (ec) {
    retryable = true;
    throw QuickTunnelApiError(
        Kind::kUnreachable, "cannot reach the quick-tunnel API at " + where + ": " + ec.message());
  }
  std::unique_ptr<Stream> stream;
  std::shared_ptr<asio::ssl::context> tls_context;
  Deadline deadline(executor);
  if (url.tls) {
    TlsClientOptions tls;
    tls.ca_file = options.ca_file;
    try {
      tls_context = MakeTlsClientContext(tls);
    } catch (const std::exception& e) {
      throw QuickTunnelApiError(Kind::kTls, std::string("quick-tunnel API TLS setup: ") + e.what());
    }
    auto tls_stream = std::make_unique<TlsStream>(std::move(socket), *tls_context,
                                                  TlsStream::Role::kClient, url.host);
    TlsStream* raw = tls_stream.get();
    deadline.Arm(options.timeout, [raw] { raw->Reset(); });
    ec = co_await tls_stream->Handshake();
    if (ec) {
      std::string reason = tls_stream->LastError().empty() ? ec.message() : tls_stream->LastError();
      if (deadline.fired()) {
        retryable = true;
        throw QuickTunnelApiError(Kind::kUnreachable,
                                  "the quick-tunnel API at " + where + " timed out during TLS");
      }
      throw QuickTunnelApiError(Kind::kTls, "TLS verification of the quick-tunnel API at " + where +
                                                " failed: " + reason);
    }
    stream = std::move(tls_stream);
  } else {
    stream = std::make_unique<TcpStream>(std::move(socket));
  }
  Stream* raw_stream = stream.get();
  deadline.Arm(options.timeout, [raw_stream] { raw_stream->Reset(); });

  http::request<http::empty_body> request{http::verb::post, url.path_prefix + "/tunnel", 11};
  request.set(http::field::host, url.host);
  request.set(http::field::user_agent, options.user_agent);
  request.set(http::field::content_type, "application/json");
  request.set(http::field::content_length, "0");
  StreamRef ref(*stream);
  co_await http::async_write(ref, request, asio::redirect_error(asio::use_awaitable, ec));
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxReplyBytes);
  parser.header_limit(16 * 1024);
  if (!ec)
    co_await http::async_read(ref, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    retryable = true;
    std::string why = deadline.fired() ? "timed out" : ec.message();
    throw QuickTunnelApiError(Kind::kUnreachable,
                              "the quick-tunnel API at " + where + " did not answer: " + why);
  }
  deadline.Cancel();
  auto& response = parser.get();
  unsigned status = response.result_int();
  const std::string& body = response.body();
  if (status == 429) {
    std::string wait = "wait a few minutes before trying again";
    auto retry_after = response.find(http::field::retry_after);
    if (retry_after != response.end()) {
      wait = "wait " + std::string(retry_after->value()) + " s before trying again";
    }
    throw QuickTunnelApiError(Kind::kRateLimited, "the quick-tunnel API at " + where +
                                                      " is rate limiting new tunnels (HTTP 429 \"" +
                                                      Snippet(body) + "\"); " + wait);
  }
  if (status >= 500) {
    retryable = true;
    throw QuickTunnelApiError(Kind::kHttpStatus, "the quick-tunnel API at " + where +
                                                     " answered HTTP " + std::to_string(status) +
                                                     " \"" + Snippet(body) + "\"");
  }
  if (status != 200 && status != 201) {
    throw QuickTunnelApiError(Kind::kHttpStatus, "the quick-tunnel API at " + where +
                                                     " answered HTTP " + std::to_string(status) +
                                                     " \"" + Snippet(body) + "\"");
  }
  auto tunnel = ParseQuickTunnelReply(body);
  if (!tunnel) {
    retryable = tunnel.message().rfind("reply is not JSON", 0) == 0;
    throw QuickTunnelApiError(Kind::kBadReply, "the quick-tunnel API at " + where +
                                                   " sent an unusable reply: " + tunnel.message());
  }
  co_return *tunnel;
}

}  // namespace

ServiceUrl ParseServiceUrl(const std::string& url) {
  ServiceUrl out;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    out.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    out.tls = false;
    rest = url.substr(7);
  } else {
    throw QuickTunnelApiError(Kind::kBadUrl,
                              "quick-service URL must start with https:// or http://: " + url);
  }
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) out.path_prefix = rest.substr(slash);
  while (!out.path_prefix.empty() && out.path_prefix.back() == '/') out.path_prefix.pop_back();
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string::npos)
      throw QuickTunnelApiError(Kind::kBadUrl, "bad IPv6 host in " + url);
    out.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      out.port = authority.substr(close + 2);
  } else {
    auto colon = authority.rfind(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos) out.port = authority.substr(colon + 1);
  }
  if (out.host.empty())
    throw QuickTunnelApiError(Kind::kBadUrl, "no host in quick-service URL " + url);
  if (out.port.empty()) out.port = out.tls ? "443" : "80";
  for (char c : out.port) {
    if (c < '0' || c > '9')
      throw QuickTunnelApiError(Kind::kBadUrl, "bad port in quick-service URL " + url);
  }
  return out;
}

asio::awaitable<QuickTunnel> RequestQuickTunnel(asio::any_io_executor executor,
                                                QuickTunnelApiOptions options) {
  ServiceUrl url = ParseServiceUrl(options.service_url);
  auto delay = options.first_retry_delay;
  for (int attempt = 0;; ++attempt) {
    bool retryable = false;
    std::optional<QuickTunnelApiError> failure;
    try {
      co_return co_await Attempt(executor, options, url, retryable);
    } catch (const QuickTunnelApiError& e) {
      failure = e;
    }
    if (!retryable || attempt >= options.retries) throw *failure;
    asio::steady_timer timer(executor, delay);
    co_await timer.async_wait(asio::use_awaitable);
    delay *= 2;
  }
}

}  // namespace tunnelkit::cloudflare
