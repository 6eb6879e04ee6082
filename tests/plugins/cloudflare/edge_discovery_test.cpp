// Edge discovery against DNS servers run in the test on 127.0.0.1 (UDP and DNS-over-TLS).
#include "discovery/edge_discovery.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "emulator/certificates.hpp"
#include "tunnelkit/cloudflare/wire/dns/dns_codec.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::cloudflare {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using Bytes = std::vector<std::uint8_t>;

const asio::ip::address kLoopback = asio::ip::make_address("127.0.0.1");

// Zone: (name, type) -> answer records' rdata.
struct Zone {
  std::map<std::pair<std::string, std::uint16_t>, std::vector<Bytes>> records;
  int queries = 0;

  void AddSrv(const std::string& name, std::uint16_t priority, std::uint16_t port,
              const std::string& target) {
    Bytes rdata = {
        static_cast<std::uint8_t>(priority >> 8), static_cast<std::uint8_t>(priority), 0, 0,
        static_cast<std::uint8_t>(port >> 8),     static_cast<std::uint8_t>(port)};
    Bytes encoded = dns::EncodeQuery(0, target, dns::RecordType::kA);
    rdata.insert(rdata.end(), encoded.begin() + 12, encoded.end() - 4);
    records[{name, 33}].push_back(rdata);
  }
  void AddA(const std::string& name, std::array<std::uint8_t, 4> address) {
    records[{name, 1}].push_back(Bytes(address.begin(), address.end()));
  }

  // Answers a query: copies the header and question, appends the records (owner name as a
  // pointer to the question).
  std::optional<Bytes> Answer(const Bytes& query) {
    ++queries;
    if (query.size() < 12) return std::nullopt;
    auto question = dns::ReadName(query, 12);
    if (!question || question->next + 4 > query.size()) return std::nullopt;
    const std::string& name = question->text;
    const std::size_t next = question->next;
    std::uint16_t type = static_cast<std::uint16_t>((query[next] << 8) | query[next + 1]);
    Bytes out(query.begin(), query.begin() + static_cast<std::ptrdiff_t>(next + 4));
    out[2] = 0x81;
    out[3] = 0x80;
    auto it = records.find({name, type});
    std::size_t count = it == records.end() ? 0 : it->second.size();
    if (it == records.end()) out[3] = 0x83;  // NXDOMAIN
    out[6] = 0;
    out[7] = static_cast<std::uint8_t>(count);
    for (std::size_t i = 0; i < count; ++i) {
      const Bytes& rdata = it->second[i];
      Bytes rr = {0xc0,
                  12,
                  0,
                  static_cast<std::uint8_t>(type),
                  0,
                  1,
                  0,
                  0,
                  0,
                  60,
                  static_cast<std::uint8_t>(rdata.size() >> 8),
                  static_cast<std::uint8_t>(rdata.size())};
      out.insert(out.end(), rr.begin(), rr.end());
      out.insert(out.end(), rdata.begin(), rdata.end());
    }
    return out;
  }
};

void FillEdgeZone(Zone& zone, int srv_records = 2) {
  const std::string srv = "_v2-origintunneld._tcp.argotunnel.com";
  // Listed in reverse priority order: discovery must sort.
  if (srv_records > 1) zone.AddSrv(srv, 2, 7844, "region2.v2.argotunnel.com");
  zone.AddSrv(srv, 1, 7844, "region1.v2.argotunnel.com");
  zone.AddA("region1.v2.argotunnel.com", {198, 41, 192, 7});
  zone.AddA("region1.v2.argotunnel.com", {198, 41, 192, 27});
  zone.AddA("region2.v2.argotunnel.com", {198, 41, 200, 13});
}

asio::awaitable<void> ServeUdp(udp::socket& socket, Zone& zone) {
  Bytes buffer(65535);
  while (socket.is_open()) {
    udp::endpoint from;
    boost::system::error_code ec;
    std::size_t n = co_await socket.async_receive_from(
        asio::buffer(buffer), from, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    auto answer =
        zone.Answer(Bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n)));
    if (answer)
      co_await socket.async_send_to(asio::buffer(*answer), from,
                                    asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> ServeDot(tcp::acceptor& acceptor, asio::ssl::context& context, Zone& zone) {
  while (acceptor.is_open()) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    TlsStream tls(std::move(socket), context, TlsStream::Role::kServer);
    if (co_await tls.Handshake()) continue;
    Bytes in;
    std::uint8_t chunk[4096];
    bool answered = false;
    while (!answered) {
      auto r = co_await tls.ReadSome(asio::buffer(chunk));
      if (r.ec) break;
      in.insert(in.end(), chunk, chunk + r.bytes);
      if (in.size() >= 2 && in.size() >= 2u + ((in[0] << 8) | in[1])) {
        auto answer = zone.Answer(Bytes(in.begin() + 2, in.end()));
        if (!answer) break;
        Bytes framed = {static_cast<std::uint8_t>(answer->size() >> 8),
                        static_cast<std::uint8_t>(answer->size())};
        framed.insert(framed.end(), answer->begin(), answer->end());
        co_await tls.Write(asio::buffer(framed));
        co_await tls.ShutdownWrite();
        answered = true;
      }
    }
    // Let the client finish reading before the socket goes away.
    for (int i = 0; i < 100; ++i) {
      auto r = co_await tls.ReadSome(asio::buffer(chunk));
      if (r.ec) break;
    }
  }
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cfdisc-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

struct Outcome {
  std::optional<EdgeRegions> regions;
  std::string error;
};

Outcome RunDiscovery(asio::io_context& io, EdgeDiscoveryOptions options,
                     std::function<void()> on_done) {
  Outcome outcome;
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        try {
          outcome.regions = co_await DiscoverEdges(io.get_executor(), options);
        } catch (const std::exception& e) {
          outcome.error = e.what();
        }
        done = true;
        on_done();
      },
      asio::detached);
  io.run_for(std::chrono::seconds(20));
  EXPECT_TRUE(done) << "discovery did not finish in 20 s";
  return outcome;
}

std::vector<std::string> Strings(const std::vector<udp::endpoint>& endpoints) {
  std::vector<std::string> out;
  for (const auto& e : endpoints)
    out.push_back(e.address().to_string() + ":" + std::to_string(e.port()));
  return out;
}

class UdpDnsServer {
 public:
  UdpDnsServer(asio::io_context& io, Zone& zone) : socket_(io, udp::endpoint(kLoopback, 0)) {
    asio::co_spawn(io, ServeUdp(socket_, zone), asio::detached);
  }
  udp::endpoint endpoint() const { return socket_.local_endpoint(); }
  void Close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

 private:
  udp::socket socket_;
};

class DotServer {
 public:
  // Serves with a certificate for cloudflare-dns.com signed by a fresh CA; its PEM is in
  // ca_file().
  DotServer(asio::io_context& io, Zone& zone, const TempDir& dir)
      : acceptor_(io, tcp::endpoint(kLoopback, 0)) {
    auto ca = emulator::GenerateCa("dot test CA");
    auto leaf = emulator::IssueServerCertificate(ca, {"cloudflare-dns.com"}, {});
    ca_file_ = (dir.path / "ca.pem").string();
    emulator::WriteFile(ca_file_, ca.certificate);
    emulator::WriteFile((dir.path / "cert.pem").string(), leaf.certificate);
    emulator::WriteFile((dir.path / "key.pem").string(), leaf.private_key, true);
    TlsServerOptions options;
    options.cert_file = (dir.path / "cert.pem").string();
    options.key_file = (dir.path / "key.pem").string();
    context_ = MakeTlsServerContext(options);
    asio::co_spawn(io, ServeDot(acceptor_, *context_, zone), asio::detached);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  const std::string& ca_file() const { return ca_file_; }
  void Close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

 private:
  tcp::acceptor acceptor_;
  std::shared_ptr<asio::ssl::context> context_;
  std::string ca_file_;
};

// A UDP port with nothing listening: bind, note the port, close.
udp::endpoint ClosedUdpPort(asio::io_context& io) {
  udp::socket probe(io, udp::endpoint(kLoopback, 0));
  return probe.local_endpoint();
}

TEST(EdgeDiscovery, ParsesResolvConf) {
  auto servers = ParseResolvConf(
      "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n"
      "nameserver bogus\noptions ndots:1\n");
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(servers[0], udp::endpoint(asio::ip::make_address("10.0.0.2"), 53));
  EXPECT_EQ(servers[1].address().to_string(), "fe80::1");
}

TEST(EdgeDiscovery, FindsBothRegionsOverUdp) {
  asio::io_context io;
  Zone zone;
  FillEdgeZone(zone);
  UdpDnsServer server(io, zone);
  EdgeDiscoveryOptions options;
  options.resolvers = {server.endpoint()};
  options.dot_enabled = false;
  auto outcome = RunDiscovery(io, options, [&] { server.Close(); });
  ASSERT_TRUE(outcome.regions) << outcome.error;
  EXPECT_EQ(Strings(outcome.regions->region1),
            (std::vector<std::string>{"198.41.192.7:7844", "198.41.192.27:7844"}));
  EXPECT_EQ(Strings(outcome.regions->region2), (std::vector<std::string>{"198.41.200.13:7844"}));
  EXPECT_EQ(zone.queries, 3);
}

TEST(EdgeDiscovery, ReportsAResolvConfWithoutNameserver) {
  asio::io_context io;
  // resolv.conf entries always mean port 53, which a test cannot bind; this checks the file is
  // read and an empty one is reported.
  TempDir dir;
  emulator::WriteFile((dir.path / "resolv.conf").string(), "search local\n");
  EdgeDiscoveryOptions options;
  options.resolv_conf = (dir.path / "resolv.conf").string();
  options.dot_enabled = false;
  auto outcome = RunDiscovery(io, options, [] {});
  EXPECT_FALSE(outcome.regions);
  EXPECT_NE(outcome.error.find("no nameserver in " + options.resolv_conf), std::string::npos)
      << outcome.error;
}

TEST(EdgeDiscovery, RefusesASingleRegion) {
  asio::io_context io;
  Zone zone;
  FillEdgeZone(zone, 1);
  UdpDnsServer server(io, zone);
  EdgeDiscoveryOptions options;
  options.resolvers = {server.endpoint()};
  options.dot_enabled = false;
  auto outcome = RunDiscovery(io, options, [&] { server.Close(); });
  EXPECT_FALSE(outcome.regions);
  EXPECT_NE(outcome.error.find("expected at least 2 Cloudflare regions"), std::string::npos)
      << outcome.error;
}

TEST(EdgeDiscovery, FallsBackToDnsOverTls) {
  asio::io_context io;
  Zone udp_zone;  // unused: the UDP resolvers are dead
  Zone dot_zone;
  FillEdgeZone(dot_zone);
  TempDir dir;
  DotServer dot(io, dot_zone, dir);
  udp::socket silent(io, udp::endpoint(kLoopback, 0));  // bound, never answers
  EdgeDiscoveryOptions options;
  options.resolvers = {ClosedUdpPort(io), silent.local_endpoint()};
  options.udp_timeout = std::chrono::milliseconds(200);
  options.dot_server = dot.endpoint();
  options.dot_ca_file = dot.ca_file();
  options.dot_timeout = std::chrono::milliseconds(5000);
  auto started = std::chrono::steady_clock::now();
  auto outcome = RunDiscovery(io, options, [&] { dot.Close(); });
  ASSERT_TRUE(outcome.regions) << outcome.error;
  EXPECT_EQ(Strings(outcome.regions->region1),
            (std::vector<std::string>{"198.41.192.7:7844", "198.41.192.27:7844"}));
  EXPECT_EQ(Strings(outcome.regions->region2), (std::vector<std::string>{"198.41.200.13:7844"}));
  EXPECT_EQ(dot_zone.queries, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST(EdgeDiscovery, RejectsAnUntrustedDnsOverTlsServer) {
  asio::io_context io;
  Zone dot_zone;
  FillEdgeZone(dot_zone);
  TempDir dir;
  DotServer dot(io, dot_zone, dir);
  TempDir other_dir;
  auto other_ca = emulator::GenerateCa("some other CA");
  std::string other_ca_file = (other_dir.path / "ca.pem").string();
  emulator::WriteFile(other_ca_file, other_ca.certificate);
  EdgeDiscoveryOptions options;
  options.resolvers = {ClosedUdpPort(io)};
  options.udp_timeout = std::chrono::milliseconds(200);
  options.dot_server = dot.endpoint();
  options.dot_ca_file = other_ca_file;
  options.dot_timeout = std::chrono::milliseconds(5000);
  auto outcome = RunDiscovery(io, options, [&] { dot.Close(); });
  EXPECT_FALSE(outcome.regions);
  EXPECT_NE(outcome.error.find("DNS-over-TLS fallback"), std::string::npos) << outcome.error;
  EXPECT_NE(outcome.error.find("certificate verify failed"), std::string::npos) << outcome.error;
  EXPECT_EQ(outcome.error.find('\n'), std::string::npos);
  EXPECT_EQ(dot_zone.queries, 0);
}

}  // namespace
}  // namespace tunnelkit::cloudflare
