#include "discovery/edge_discovery.hpp"

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tunnelkit/cloudflare/wire/dns/dns_codec.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::cloudflare {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

std::uint16_t RandomId() {
  static thread_local std::mt19937 rng{std::random_device{}()};
  return static_cast<std::uint16_t>(rng());
}

std::string TypeName(dns::RecordType type) {
  switch (type) {
    case dns::RecordType::kA:
      return "A";
    case dns::RecordType::kAaaa:
      return "AAAA";
    case dns::RecordType::kSrv:
      return "SRV";
  }
  return "?";
}

std::string Endpoint(const udp::endpoint& e) {
  std::ostringstream s;
  s << e;
  return s.str();
}

// One UDP exchange; returns the decoded response or throws with the reason.
asio::awaitable<dns::Response> QueryUdp(asio::any_io_executor executor, udp::endpoint server,
                                        const std::string& name, dns::RecordType type,
                                        std::chrono::milliseconds timeout) {
  std::uint16_t id = RandomId();
  auto query = dns::EncodeQuery(id, name, type);
  udp::socket socket(executor);
  Deadline deadline(executor);
  deadline.Arm(timeout, [&socket] {
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  boost::system::error_code ec;
  socket.open(server.protocol(), ec);
  // Connected, so ICMP port-unreachable surfaces as connection_refused and only this server's
  // datagrams are received.
  if (!ec) socket.connect(server, ec);
  if (!ec)
    co_await socket.async_send(asio::buffer(query), asio::redirect_error(asio::use_awaitable, ec));
  std::vector<std::uint8_t> buffer(dns::kMaxMessageSize);
  while (!ec) {
    std::size_t n = co_await socket.async_receive(asio::buffer(buffer),
                                                  asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    auto decoded = dns::DecodeResponse(std::span(buffer.data(), n), id);
    // A datagram with another id is not ours (late or spoofed): keep waiting.
    if (!decoded && n >= 2 && ((buffer[0] << 8) | buffer[1]) != id) continue;
    if (!decoded) throw std::runtime_error(decoded.message());
    if (decoded->truncated) throw std::runtime_error("response truncated (TC)");
    co_return std::move(decoded).value();
  }
  if (deadline.fired())
    throw std::runtime_error("no answer within " + std::to_string(timeout.count()) + " ms");
  throw std::runtime_error(ec.message());
}

// One DNS-over-TLS exchange (a fresh connection per query; discovery makes only a few).
asio::awaitable<dns::Response> QueryDot(asio::any_io_executor executor,
                                        const EdgeDiscoveryOptions& options,
                                        const std::string& name, dns::RecordType type) {
  std::uint16_t id = RandomId();
  auto query = dns::EncodeQuery(id, name, type);
  TlsClientOptions tls_options;
  tls_options.ca_file = options.dot_ca_file;
  auto context = MakeTlsClientContext(tls_options);
  tcp::socket socket(executor);
  std::unique_ptr<TlsStream> tls;
  Deadline deadline(executor);
  deadline.Arm(options.dot_timeout, [&] {
    boost::system::error_code ignored;
    if (tls) {
      tls->Reset();
    } else {
      socket.close(ignored);
    }
  });
  auto timed_out = [&](const std::string& what) {
    if (deadline.fired())
      return std::runtime_error("no answer within " + std::to_string(options.dot_timeout.count()) +
                                " ms");
    return std::runtime_error(what);
  };
  boost::system::error_code ec;
  co_await socket.async_connect(options.dot_server, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) throw timed_out("connect: " + ec.message());
  tls = std::make_unique<TlsStream>(std::move(socket), *context, TlsStream::Role::kClient,
                                    options.dot_server_name);
  ec = co_await tls->Handshake();
  if (ec) {
    std::string reason = tls->LastError().empty() ? ec.message() : tls->LastError();
    throw timed_out("TLS handshake: " + reason);
  }
  // DNS over TCP: a 2-byte length, then the message.
  std::vector<std::uint8_t> framed(2 + query.size());
  framed[0] = static_cast<std::uint8_t>(query.size() >> 8);
  framed[1] = static_cast<std::uint8_t>(query.size() & 0xff);
  std::copy(query.begin(), query.end(), framed.begin() + 2);
  auto written = co_await tls->Write(asio::buffer(framed));
  if (written.ec) throw timed_out("write: " + written.ec.message());
  // Read exactly `want` bytes into `out`.
  std::vector<std::uint8_t> in;
  auto read_exact = [&](std::size_t want) -> asio::awaitable<void> {
    std::uint8_t chunk[4096];
    while (in.size() < want) {
      auto r =
          co_await tls->ReadSome(asio::buffer(chunk, std::min(sizeof chunk, want - in.size())));
      if (r.ec) throw timed_out("read: " + r.ec.message());
      in.insert(in.end(), chunk, chunk + r.bytes);
    }
  };
  co_await read_exact(2);
  std::size_t length = (static_cast<std::size_t>(in[0]) << 8) | in[1];
  in.clear();
  co_await read_exact(length);
  auto decoded = dns::DecodeResponse(in, id);
  if (!decoded) throw std::runtime_error(decoded.message());
  tls->Reset();
  co_return std::move(decoded).value();
}

class Resolver {
 public:
  Resolver(asio::any_io_executor executor, const EdgeDiscoveryOptions& options)
      : executor_(executor), options_(options), servers_(options.resolvers) {
    if (servers_.empty()) {
      std::ifstream in(options.resolv_conf);
      std::stringstream text;
      text << in.rdbuf();
      servers_ = ParseResolvConf(text.str());
    }
  }

  asio::awaitable<dns::Response> Query(const std::string& name, dns::RecordType type) {
    std::string failures;
    if (servers_.empty()) failures = "no nameserver in " + options_.resolv_conf;
    for (const auto& server : servers_) {
      try {
        co_return co_await QueryUdp(executor_, server, name, type, options_.udp_timeout);
      } catch (const std::exception& e) {
        if (!failures.empty()) failures += "; ";
        failures += Endpoint(server) + ": " + e.what();
      }
    }
    std::string what = TypeName(type) + " " + name;
    if (!options_.dot_enabled)
      throw std::runtime_error("DNS lookup of " + what + " failed (" + failures + ")");
    std::string dot_failure;
    try {
      co_return co_await QueryDot(executor_, options_, name, type);
    } catch (const std::exception& e) {
      dot_failure = e.what();
    }
    std::ostringstream dot;
    dot << options_.dot_server;
    throw std::runtime_error("DNS lookup of " + what + " failed (" + failures +
                             "); DNS-over-TLS fallback " + dot.str() + " (" +
                             options_.dot_server_name + "): " + dot_failure);
  }

 private:
  asio::any_io_executor executor_;
  const EdgeDiscoveryOptions& options_;
  std::vector<udp::endpoint> servers_;
};

}  // namespace

std::vector<udp::endpoint> ParseResolvConf(const std::string& text) {
  std::vector<udp::endpoint> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string keyword, address;
    if (!(words >> keyword >> address) || keyword != "nameserver") continue;
    if (auto percent = address.find('%'); percent != std::string::npos) address.resize(percent);
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(address, ec);
    if (!ec) out.emplace_back(ip, 53);
  }
  return out;
}

asio::awaitable<EdgeRegions> DiscoverEdges(asio::any_io_executor executor,
                                           EdgeDiscoveryOptions options) {
  Resolver resolver(executor, options);
  auto srv = co_await resolver.Query(options.srv_name, dns::RecordType::kSrv);
  std::vector<dns::SrvRecord> records = std::move(srv.srv);
  if (records.size() < 2)
    throw std::runtime_error("expected at least 2 Cloudflare regions, got " +
                             std::to_string(records.size()) + " SRV record(s) for " +
                             options.srv_name);
  std::stable_sort(records.begin(), records.end(),
                   [](const auto& a, const auto& b) { return a.priority < b.priority; });
  EdgeRegions regions;
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& record = records[i];
    auto answer = co_await resolver.Query(record.target, dns::RecordType::kA);
    auto& region = i == 0 ? regions.region1 : regions.region2;
    for (const auto& a : answer.a) region.emplace_back(asio::ip::address_v4(a), record.port);
    if (region.empty())
      throw std::runtime_error("SRV target " + record.target + " has no A records");
  }
  co_return regions;
}

}  // namespace tunnelkit::cloudflare
