// The origin proxy's header work: hop-by-hop fields, upgrades, Content-Length, the request head
// sent to an origin, pool keys and request targets.
#include <gtest/gtest.h>

#include <boost/beast/http.hpp>

#include "tunnelkit/origin/http_fields.hpp"

namespace tunnelkit::origin {
namespace {

namespace http = boost::beast::http;

TEST(HttpFieldsTest, RemovesHopByHopFieldsAndThoseConnectionNames) {
  http::fields fields;
  fields.set(http::field::connection, "keep-alive, X-Private ,Upgrade");
  fields.set("X-Private", "1");
  fields.set(http::field::keep_alive, "timeout=5");
  fields.set(http::field::transfer_encoding, "chunked");
  fields.set(http::field::upgrade, "websocket");
  fields.set(http::field::host, "example.com");
  RemoveHopByHop(fields, /*keep_upgrade=*/false);
  EXPECT_EQ(fields.count("X-Private"), 0u);
  EXPECT_EQ(fields.count(http::field::connection), 0u);
  EXPECT_EQ(fields.count(http::field::keep_alive), 0u);
  EXPECT_EQ(fields.count(http::field::transfer_encoding), 0u);
  EXPECT_EQ(fields.count(http::field::upgrade), 0u);
  EXPECT_EQ(fields[http::field::host], "example.com");
}

TEST(HttpFieldsTest, KeepsUpgradeWhenAsked) {
  http::fields fields;
  fields.set(http::field::connection, "Upgrade");
  fields.set(http::field::upgrade, "websocket");
  EXPECT_TRUE(IsUpgrade(fields));
  RemoveHopByHop(fields, /*keep_upgrade=*/true);
  EXPECT_EQ(fields[http::field::upgrade], "websocket");
  EXPECT_FALSE(IsUpgrade(fields));  // Connection is gone: the proxy sets its own
}

TEST(HttpFieldsTest, UpgradeNeedsBothFields) {
  http::fields fields;
  fields.set(http::field::upgrade, "websocket");
  EXPECT_FALSE(IsUpgrade(fields));
  fields.set(http::field::connection, "keep-alive, UPGRADE");
  EXPECT_TRUE(IsUpgrade(fields));
}

TEST(HttpFieldsTest, ContentLengthOnlyAsAPlainDecimal) {
  http::fields fields;
  EXPECT_FALSE(ContentLengthOf(fields));
  fields.set(http::field::content_length, "1234");
  EXPECT_EQ(ContentLengthOf(fields), 1234u);
  for (const char* bad : {"12x", "-1", "+5", "5 5", "", "99999999999999999999999"}) {
    fields.set(http::field::content_length, bad);
    EXPECT_FALSE(ContentLengthOf(fields)) << bad;
  }
}

TEST(HttpFieldsTest, RewritesTheRequestHeadForTheOrigin) {
  http::request_header<> req;
  req.version(10);
  req.set(http::field::host, "public.example");
  req.set(http::field::content_length, "5");
  req.set(http::field::expect, "100-continue");
  req.set("X-Forwarded-For", "10.0.0.1");
  Rule rule;
  rule.options.http_host_header = "internal:8080";
  ClientInfo client;
  client.address = "192.0.2.7";
  client.scheme = "https";
  RewriteRequest(req, rule, client);
  EXPECT_EQ(req.version(), 11u);
  EXPECT_EQ(req[http::field::host], "internal:8080");
  EXPECT_EQ(req.count(http::field::content_length), 0u);
  EXPECT_EQ(req.count(http::field::expect), 0u);
  EXPECT_EQ(req["X-Forwarded-For"], "10.0.0.1, 192.0.2.7");
  EXPECT_EQ(req["X-Forwarded-Proto"], "https");
}

TEST(HttpFieldsTest, PoolKeysSeparateWhatMakesConnectionsDiffer) {
  Rule a;
  a.service.kind = Service::Kind::kHttps;
  a.service.host = "h";
  a.service.port = "443";
  Rule b = a;
  b.options.no_tls_verify = true;
  EXPECT_NE(PoolKey(a), PoolKey(b));
  Rule plain;
  plain.service.kind = Service::Kind::kHttp;
  plain.service.host = "h";
  plain.service.port = "80";
  EXPECT_EQ(PoolKey(plain), "tcp://h:80");
  Rule unix_rule;
  unix_rule.service.kind = Service::Kind::kUnix;
  unix_rule.service.path = "/run/s";
  EXPECT_EQ(PoolKey(unix_rule), "unix:/run/s");
}

TEST(HttpFieldsTest, AbsoluteTargetsAreReducedToTheirPath) {
  EXPECT_EQ(PathOf("/a/b?c"), "/a/b?c");
  EXPECT_EQ(PathOf("http://host:8080/a?b"), "/a?b");
  EXPECT_EQ(PathOf("https://host"), "/");
  EXPECT_EQ(PathOf("*"), "*");
}

}  // namespace
}  // namespace tunnelkit::origin
