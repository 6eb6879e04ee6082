// tunnelctl hello: run the built-in hello-world origin on a TCP address until SIGINT/SIGTERM.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>

#include "commands.hpp"
#include "tunnelkit/hello/hello_server.hpp"

namespace tunnelctl {

namespace {

// "HOST:PORT", "[V6]:PORT" or ":PORT" (127.0.0.1); false if malformed.
bool ParseListen(const std::string& text, boost::asio::ip::tcp::endpoint& out) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = text.substr(0, colon);
  std::string port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "127.0.0.1";
  if (host == "localhost") host = "127.0.0.1";
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(port_text, &used);
    if (used != port_text.size() || port > 65535) return false;
  } catch (const std::exception&) {
    return false;
  }
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host, ec);
  if (ec) return false;
  out = {address, static_cast<unsigned short>(port)};
  return true;
}

}  // namespace

int RunHello(const Args& args) {
  CLI::App app{"run the built-in hello-world origin", "tunnelctl hello"};
  std::string listen = "127.0.0.1:8080";
  app.add_option("--listen", listen, "HOST:PORT to listen on (port 0 picks a free port)");
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "tunnelctl hello: %s\n", e.what());
    return 2;
  }
  boost::asio::ip::tcp::endpoint endpoint;
  if (!ParseListen(listen, endpoint)) {
    std::fprintf(stderr, "tunnelctl hello: --listen: '%s' is not HOST:PORT\n", listen.c_str());
    return 2;
  }
  boost::asio::io_context io{1};  // one thread runs it (see Runtime::io_)
  std::unique_ptr<tunnelkit::hello::HelloServer> server;
  try {
    server = std::make_unique<tunnelkit::hello::HelloServer>(io, endpoint);
  } catch (const boost::system::system_error& e) {
    std::fprintf(stderr, "tunnelctl hello: cannot listen on %s: %s\n", listen.c_str(),
                 e.code().message().c_str());
    return 1;
  }
  auto bound = server->local_endpoint();
  std::string host = bound.address().to_string();
  if (bound.address().is_v6()) host = "[" + host + "]";
  std::printf("hello-world origin listening on http://%s:%u\n", host.c_str(), bound.port());
  std::fflush(stdout);
  server->Start();
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    server->Stop();
    io.stop();
  });
  io.run();
  return 0;
}

}  // namespace tunnelctl
