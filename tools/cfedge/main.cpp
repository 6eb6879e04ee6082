// cfedge: a local emulator of Cloudflare's side of a quick tunnel, for offline tests and demos.
//   - the quick-tunnel API: POST /tunnel issues a tunnel (id, <words>.trycloudflare.com,
//     account tag, 32-byte secret), or answers 429 with --rate-limit;
//   - the edge: QUIC with ALPN argotunnel and a certificate for quic.cftunnel.com from its own
//     CA (--write-ca FILE writes it out; --ca-cert/--ca-key supply one), and --tcp-listen for the
//     plain-TCP test transport; the first stream carries RegistrationServer;
//   - the public HTTP ingress: routes by Host to a registered tunnel and forwards each request
//     over a data stream (--tcp-ingress: raw TCP as type=tcp streams);
//   - POST /cfedge/drop?conn_index=N on the API listener closes that connection of every tunnel
//     (HA tests); --state FILE keeps issued tunnels across restarts.
// Events go to stdout, one line each ("registered ...", "unregistered ...", "refused ...").
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "edge_server.hpp"

int main(int argc, char** argv) {
  tunnelkit::cloudflare::cfedge::EdgeServerOptions options;
  CLI::App app{"cfedge: Cloudflare quick-tunnel edge emulator", "cfedge"};
  app.add_option("--api-listen", options.api_listen, "quick-tunnel API HOST:PORT (port 0: any)")
      ->capture_default_str();
  app.add_flag("--api-tls", options.api_tls, "serve the API over HTTPS (certificate from the CA)");
  app.add_flag("--rate-limit", options.rate_limit, "answer POST /tunnel with HTTP 429");
  app.add_flag("--reuse-tunnel", options.reuse_tunnel,
               "every POST /tunnel returns the same tunnel (to provoke EDUPCONN)");
  app.add_flag("--issue-bad-secret", options.issue_bad_secret,
               "the API hands out a wrong secret (registration is then refused)");
  app.add_option("--quic-listen", options.quic_listen,
                 "QUIC edge HOST:PORT (UDP); repeat for several edge addresses");
  app.add_option("--tcp-listen", options.tcp_listen,
                 "plain-TCP test transport for the control stream HOST:PORT");
  app.add_option("--http-listen", options.http_listen, "public HTTP ingress HOST:PORT");
  app.add_option("--tcp-ingress", options.tcp_ingress,
                 "raw TCP ingress HOST:PORT: each connection becomes a type=tcp data stream to "
                 "the most recently registered tunnel");
  double response_timeout = 100;
  app.add_option("--response-timeout", response_timeout,
                 "seconds to wait for a response head before answering 524")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  app.add_option("--state", options.state_file,
                 "keep issued tunnels in this JSON file (loaded at start)");
  app.add_option("--write-ca", options.write_ca, "write the generated CA certificate (PEM) here");
  app.add_option("--ca-cert", options.ca_cert,
                 "use this CA certificate (PEM) instead of generating one");
  app.add_option("--ca-key", options.ca_key, "the CA's private key (PEM), with --ca-cert");
  app.add_option("--location", options.locations, "colo name(s) answered in registrations")
      ->capture_default_str();
  app.add_option("--domain", options.domain, "domain of issued host names")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  options.response_timeout =
      std::chrono::milliseconds(static_cast<long long>(response_timeout * 1000));
  if (options.ca_cert.empty() != options.ca_key.empty()) {
    std::fprintf(stderr, "cfedge: --ca-cert and --ca-key go together\n");
    return 2;
  }
  boost::asio::io_context io{1};  // one thread runs it (see Runtime::io_)
  std::unique_ptr<tunnelkit::cloudflare::cfedge::EdgeServer> server;
  try {
    server = std::make_unique<tunnelkit::cloudflare::cfedge::EdgeServer>(io, options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cfedge: %s\n", e.what());
    return 1;
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    std::printf("stopping\n");
    std::fflush(stdout);
    server->Close();
    io.stop();
  });
  server->Start();
  io.run();
  server.reset();
  return 0;
}
