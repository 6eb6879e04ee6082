// Shared pieces of the QUIC tests: a CA and a server certificate for quic.cftunnel.com made
// with the openssl CLI, a second unrelated CA, and helpers to run coroutines with a deadline.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "process.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_client.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_server.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"

namespace tunnelkit::cloudflare::quic::test {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using namespace std::chrono_literals;

struct TestPki {
  std::filesystem::path dir;
  std::string ca_pem;        // path of the CA that signed the server certificate
  std::string other_ca_pem;  // an unrelated CA
  std::string cert_pem;      // quic.cftunnel.com, signed by ca_pem
  std::string key_pem;
};

inline void Openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = tunnelkit::test::RunProcess(argv, 30s);
  if (r.exit_status != 0) {
    throw std::runtime_error("openssl failed: " + r.err);
  }
}

// Made once per test binary; removed at exit.
inline const TestPki& Pki() {
  static const TestPki pki = [] {
    TestPki p;
    std::string tmpl = (std::filesystem::temp_directory_path() / "tk-quic-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    p.dir = tmpl;
    auto f = [&](const char* name) { return (p.dir / name).string(); };
    const std::vector<std::string> ec{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                      "-nodes"};
    auto req = [&](std::vector<std::string> extra) {
      std::vector<std::string> a{"req"};
      a.insert(a.end(), ec.begin(), ec.end());
      a.insert(a.end(), extra.begin(), extra.end());
      Openssl(a);
    };
    req({"-x509", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj",
         "/CN=tunnelkit test CA"});
    req({"-x509", "-keyout", f("other.key"), "-out", f("other.pem"), "-days", "2", "-subj",
         "/CN=unrelated test CA"});
    req({"-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=quic.cftunnel.com"});
    std::ofstream(f("ext.cnf")) << "subjectAltName=DNS:quic.cftunnel.com\n";
    Openssl({"x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"),
             "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("ext.cnf")});
    p.ca_pem = f("ca.pem");
    p.other_ca_pem = f("other.pem");
    p.cert_pem = f("server.pem");
    p.key_pem = f("server.key");
    std::atexit([] { std::filesystem::remove_all(Pki().dir); });
    return p;
  }();
  return pki;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline QuicServerOptions ServerOptions() {
  QuicServerOptions o;
  o.cert_file = Pki().cert_pem;
  o.key_file = Pki().key_pem;
  return o;
}

inline QuicClientOptions ClientOptions() {
  QuicClientOptions o;
  o.ca_file = Pki().ca_pem;
  return o;
}

inline udp::endpoint Loopback() {
  return udp::endpoint(asio::ip::make_address("127.0.0.1"), 0);
}

// Runs `body` on `io` until it finishes; fails the test if it takes longer than `limit`.
// Exceptions from the body are rethrown.
inline void RunWithDeadline(asio::io_context& io, std::function<asio::awaitable<void>()> body,
                            std::chrono::milliseconds limit = 20s) {
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(io, body(), [&](std::exception_ptr e) {
    error = e;
    done = true;
    io.stop();
  });
  io.run_for(limit);
  ASSERT_TRUE(done) << "test body did not finish within " << limit.count() << " ms";
  if (error) std::rethrow_exception(error);
}

inline asio::awaitable<void> Sleep(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::use_awaitable);
}

// Reads until EOF; returns the data, or throws on an error.
inline asio::awaitable<std::string> ReadAll(tunnelkit::Stream& s) {
  std::string out;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto r = co_await s.ReadSome(asio::buffer(buf));
    if (r.ec == asio::error::eof) co_return out;
    if (r.ec) throw boost::system::system_error(r.ec, "read");
    out.append(buf.data(), r.bytes);
  }
}

// Writes `data` in `chunk`-sized writes, then FIN.
// `data` is taken by value: detached writers must not refer to the caller's temporaries.
inline asio::awaitable<void> WriteAll(tunnelkit::Stream& s, std::string data,
                                      std::size_t chunk = 64 * 1024, bool fin = true) {
  for (std::size_t off = 0; off < data.size(); off += chunk) {
    std::size_t n = std::min(chunk, data.size() - off);
    auto r = co_await s.Write(asio::buffer(data.data() + off, n));
    if (r.ec) throw boost::system::system_error(r.ec, "write");
  }
  if (fin) {
    auto ec = co_await s.ShutdownWrite();
    if (ec) throw boost::system::system_error(ec, "shutdown");
  }
}

// Echoes every stream the peer opens: reads to EOF while writing back, then FIN.
inline asio::awaitable<void> EchoStream(std::shared_ptr<QuicStream> s) {
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto r = co_await s->ReadSome(asio::buffer(buf));
    if (r.ec) break;
    auto w = co_await s->Write(asio::buffer(buf.data(), r.bytes));
    if (w.ec) co_return;
  }
  co_await s->ShutdownWrite();
}

inline void ServeEcho(const std::shared_ptr<QuicConnection>& conn) {
  auto ex = conn->get_executor();
  conn->SetStreamHandler([ex](std::shared_ptr<QuicStream> s) {
    asio::co_spawn(ex, EchoStream(std::move(s)), asio::detached);
  });
}

inline std::string Pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

}  // namespace tunnelkit::cloudflare::quic::test
