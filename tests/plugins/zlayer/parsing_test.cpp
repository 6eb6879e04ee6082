// Token store, port pool, --service and URL parsing.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "agent/service_spec.hpp"
#include "server/port_pool.hpp"
#include "server/token_store.hpp"
#include "transport/ws_url.hpp"

namespace tunnelkit::zlayer {
namespace {

TEST(ZlayerTokenStore, HashMatchesVectorFile) {
  std::ifstream in(std::string(TUNNELKIT_TEST_DATA_DIR) + "/vectors/zlayer.json");
  const auto vectors = nlohmann::json::parse(in);
  EXPECT_EQ(HashToken(vectors["token_hash"]["token"].get<std::string>()),
            vectors["token_hash"]["sha256_hex"].get<std::string>());
  EXPECT_EQ(HashToken("").size(), 64u);
}

TEST(ZlayerTokenStore, ChecksHashesAndExpiry) {
  TokenStore store;
  std::string error;
  const std::string text = "# comment\n" + HashToken("alpha") + "\n\n" + HashToken("beta") +
                           " 1000   # expired long ago\n" + HashToken("gamma") +
                           " 2999-01-01T00:00:00Z\n";
  ASSERT_TRUE(store.LoadText(text, "tokens.txt", error)) << error;
  EXPECT_EQ(store.size(), 3u);
  const auto now = 1700000000;
  EXPECT_TRUE(store.Check("alpha", now).ok);
  EXPECT_EQ(store.Check("alpha", now).hash, HashToken("alpha"));
  EXPECT_TRUE(store.Check("gamma", now).ok);
  EXPECT_EQ(store.Check("beta", now).reason, "Authentication error: tunnel token expired");
  EXPECT_EQ(store.Check("delta", now).reason, "Authentication error: invalid tunnel token");
  EXPECT_EQ(store.Check("", now).reason, "Authentication error: Token cannot be empty");
  // Upper-case hex in the file is accepted.
  TokenStore upper;
  std::string hash = HashToken("x");
  for (auto& c : hash) c = static_cast<char>(std::toupper(c));
  ASSERT_TRUE(upper.LoadText(hash, "t", error));
  EXPECT_TRUE(upper.Check("x", now).ok);
}

TEST(ZlayerTokenStore, RejectsBadLinesNamingThem) {
  TokenStore store;
  std::string error;
  EXPECT_FALSE(store.LoadText("\nnot-a-hash\n", "tokens.txt", error));
  EXPECT_EQ(error, "tokens.txt:2: expected a SHA-256 hash as 64 hex digits");
  EXPECT_FALSE(store.LoadText(HashToken("a") + " tomorrow", "t", error));
  EXPECT_NE(error.find("expiry"), std::string::npos);
  EXPECT_FALSE(store.LoadText(HashToken("a") + " 5 extra", "t", error));
  EXPECT_FALSE(store.LoadFile("/nonexistent/tokens", error));
}

TEST(ZlayerPortPool, AssignsLowestFreeAndSpecificPorts) {
  std::string error;
  auto pool = PortPool::Parse("30000-30002", error);
  ASSERT_TRUE(pool) << error;
  EXPECT_EQ(pool->Acquire(0, error), 30000);
  EXPECT_EQ(pool->Acquire(30002, error), 30002);
  EXPECT_FALSE(pool->Acquire(30002, error));
  EXPECT_EQ(error, "Registry error: port 30002 is not available");
  EXPECT_FALSE(pool->Acquire(40000, error));
  EXPECT_EQ(pool->Acquire(0, error), 30001);
  EXPECT_FALSE(pool->Acquire(0, error));
  EXPECT_EQ(error, "Registry error: no ports available");
  pool->Release(30000);
  EXPECT_EQ(pool->Acquire(0, error), 30000);
  EXPECT_FALSE(PortPool::Parse("31000-30000", error));
  EXPECT_FALSE(PortPool::Parse("abc", error));
  EXPECT_FALSE(PortPool::Parse("0-10", error));
  EXPECT_TRUE(PortPool::Parse("5000", error));
}

TEST(ZlayerServiceSpec, ParsesTheFlagForms) {
  std::string error;
  auto ssh = ServiceSpec::Parse("ssh:22", error);
  ASSERT_TRUE(ssh) << error;
  EXPECT_EQ(ssh->name, "ssh");
  EXPECT_EQ(ssh->local_port, 22);
  EXPECT_EQ(ssh->remote_port, 0);
  EXPECT_EQ(ssh->protocol, codec::ServiceProtocol::kTcp);
  auto dns = ServiceSpec::Parse("dns_1:53:30053/udp", error);
  ASSERT_TRUE(dns) << error;
  EXPECT_EQ(dns->remote_port, 30053);
  EXPECT_EQ(dns->protocol, codec::ServiceProtocol::kUdp);
  EXPECT_EQ(dns->ToString(), "dns_1:53:30053/udp");
  EXPECT_FALSE(ServiceSpec::Parse("ssh", error));
  EXPECT_FALSE(ServiceSpec::Parse("s sh:22", error));
  EXPECT_FALSE(ServiceSpec::Parse(":22", error));
  EXPECT_FALSE(ServiceSpec::Parse("ssh:0", error));
  EXPECT_FALSE(ServiceSpec::Parse("ssh:70000", error));
  EXPECT_FALSE(ServiceSpec::Parse("ssh:22/sctp", error));
  EXPECT_FALSE(ServiceSpec::Parse(std::string(256, 'a') + ":22", error));
}

TEST(ZlayerWsUrl, ParsesServerUrls) {
  std::string error;
  auto url = transport::WsUrl::Parse("wss://node-b:3679/tunnel/v1", error);
  ASSERT_TRUE(url) << error;
  EXPECT_TRUE(url->tls);
  EXPECT_EQ(url->host, "node-b");
  EXPECT_EQ(url->port, 3679);
  EXPECT_EQ(url->path, "/tunnel/v1");
  auto v6 = transport::WsUrl::Parse("ws://[::1]:80", error);
  ASSERT_TRUE(v6) << error;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->path, "/");
  EXPECT_EQ(v6->ToString(), "ws://[::1]:80/");
  EXPECT_EQ(transport::WsUrl::Parse("wss://h/x", error)->port, 443);
  EXPECT_FALSE(transport::WsUrl::Parse("http://h:1/", error));
  EXPECT_FALSE(transport::WsUrl::Parse("ws://:1/", error));
  EXPECT_FALSE(transport::WsUrl::Parse("ws://h:99999/", error));
  EXPECT_TRUE(transport::HostPort::Parse("127.0.0.1:0", error));
  EXPECT_FALSE(transport::HostPort::Parse("127.0.0.1", error));
}

}  // namespace
}  // namespace tunnelkit::zlayer
