// Ingress rule parsing and matching.
#include <gtest/gtest.h>

#include "tunnelkit/origin/router.hpp"

namespace tunnelkit::origin {
namespace {

Service Svc(const std::string& text) {
  auto s = ParseService(text);
  EXPECT_TRUE(s) << text << ": " << (s ? "" : s.message());
  return s.value_or(Service{});
}

TEST(ServiceTest, ParsesEveryKind) {
  auto http = Svc("http://localhost:8080");
  EXPECT_EQ(http.kind, Service::Kind::kHttp);
  EXPECT_EQ(http.host, "localhost");
  EXPECT_EQ(http.port, "8080");
  EXPECT_EQ(Svc("http://example.com").port, "80");
  EXPECT_EQ(Svc("https://example.com").port, "443");
  auto v6 = Svc("tcp://[::1]:22");
  EXPECT_EQ(v6.kind, Service::Kind::kTcp);
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(Svc("unix:/run/app.sock").path, "/run/app.sock");
  EXPECT_EQ(Svc("hello_world").kind, Service::Kind::kHelloWorld);
  EXPECT_EQ(Svc("http_status:418").status, 418);
  for (const char* bad : {"ftp://x:1", "tcp://host", "http://h:99999", "http_status:42",
                          "http://h:80/path", "unix:", ""}) {
    auto service = ParseService(bad);
    ASSERT_FALSE(service) << bad;
    EXPECT_EQ(service.kind(), ErrorKind::kInvalid);
    EXPECT_FALSE(service.message().empty());
  }
}

TEST(RouterTest, FirstMatchWinsWithWildcardsAndPrefixes) {
  Router r;
  r.Add({"api.example.com", "/v2", Svc("http_status:201"), {}});
  r.Add({"api.example.com", "", Svc("http_status:202"), {}});
  r.Add({"*.example.com", "/static", Svc("http_status:203"), {}});
  r.Add({"*.Example.com", "", Svc("http_status:204"), {}});
  r.Add({"", "/health", Svc("http_status:205"), {}});
  r.Add({"", "", Svc("http_status:206"), {}});
  auto status = [&](std::string_view host, std::string_view path) {
    const Rule* rule = r.Match(host, path);
    return rule ? rule->service.status : 0;
  };
  EXPECT_EQ(status("api.example.com", "/v2/users"), 201);
  EXPECT_EQ(status("API.Example.COM:8443", "/v2?x=1"), 201);
  EXPECT_EQ(status("api.example.com", "/v1"), 202);
  EXPECT_EQ(status("cdn.example.com", "/static/a.css"), 203);
  EXPECT_EQ(status("a.b.example.com", "/"), 204);
  EXPECT_EQ(status("example.com", "/"), 206);  // the wildcard needs a subdomain
  EXPECT_EQ(status("notexample.com", "/health"), 205);
  EXPECT_EQ(status("[::1]:80", "/x"), 206);
  Router only;
  only.Add({"a.com", "", Svc("http_status:200"), {}});
  EXPECT_EQ(only.Match("b.com", "/"), nullptr);
}

TEST(RouterTest, CompileFromConfig) {
  config::v1::Tunnel t;
  t.set_url("http://127.0.0.1:3000");
  std::vector<ConfigIssue> issues;
  auto r = Router::Compile(t, issues);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->rules().size(), 1u);
  EXPECT_EQ(r->Match("anything", "/")->service.port, "3000");

  config::v1::Tunnel bad;
  auto* rule = bad.add_ingress();
  rule->set_hostname("*.ok.com");
  rule->set_service("hello_world");
  rule->mutable_origin_request()->mutable_response_timeout()->set_seconds(3);
  auto* broken = bad.add_ingress();
  broken->set_hostname("a.*.com");
  broken->set_service("gopher://x");
  broken->set_path("nope");
  issues.clear();
  EXPECT_FALSE(Router::Compile(bad, issues));
  ASSERT_EQ(issues.size(), 3u);
  EXPECT_EQ(issues[0].path, "ingress[1].service");
  EXPECT_EQ(issues[1].path, "ingress[1].hostname");
  EXPECT_EQ(issues[2].path, "ingress[1].path");

  bad.mutable_ingress()->RemoveLast();
  issues.clear();
  auto good = Router::Compile(bad, issues);
  ASSERT_TRUE(good);
  EXPECT_EQ(good->rules()[0].options.response_timeout, std::chrono::seconds(3));

  bad.set_url("http://x:1");
  issues.clear();
  EXPECT_FALSE(Router::Compile(bad, issues));
  EXPECT_EQ(issues.at(0).path, "url");
}

}  // namespace
}  // namespace tunnelkit::origin
