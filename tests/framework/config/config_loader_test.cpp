// The configuration loader: YAML and JSON files, flags over files, every refusal class with
// its exact field path, and --check through the real tunnelctl.
#include "tunnelkit/config/config_loader.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "process.hpp"
#include "tunnelkit/config/duration.hpp"

namespace tunnelkit::config {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tunnelkit-config-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    auto file = dir_ / name;
    std::ofstream(file) << text;
    return file.string();
  }
  fs::path dir_;
};

BuildResult Build(std::vector<std::string> args, std::string mode = "run") {
  BuildOptions options;
  options.mode = std::move(mode);
  options.args = std::move(args);
  return BuildConfig(options);
}

std::string AllIssues(const BuildResult& r) {
  std::string out;
  for (const auto& issue : r.issues) out += issue.Describe() + "\n";
  return out;
}

// The one issue with this path (fails the test when there is not exactly one).
Issue OnlyIssue(const BuildResult& r, const std::string& path) {
  std::vector<Issue> found;
  for (const auto& issue : r.issues) {
    if (issue.path == path) found.push_back(issue);
  }
  EXPECT_EQ(found.size(), 1u) << "path " << path << " in:\n" << AllIssues(r);
  return found.empty() ? Issue{} : found.front();
}

TEST_F(ConfigFiles, ReadsYamlWithNestedMessagesListsAndDurations) {
  auto file = Write("tunnel.yaml", R"(backend: ferro
id: app
log:
  level: debug
  format: json
metrics: 127.0.0.1:9100
ingress:
  - hostname: app.example.com
    service: http://127.0.0.1:3000
    origin_request:
      connect_timeout: 5s
  - service: http_status:404
reconnect: {base: 500ms, cap: 1h30m, max_attempts: 7, jitter: 0.1}
grace_period: 2.5
plugin_dir: [/a, /b]
ferro:
  server: tunnel.example.com:7835
  token: s3cret
  tls: true
)");
  auto r = Build({"--config", file});
  ASSERT_TRUE(r.ok()) << AllIssues(r);
  const auto& c = r.config;
  EXPECT_EQ(c.backend(), "ferro");
  EXPECT_EQ(c.id(), "app");
  EXPECT_EQ(c.log().level(), "debug");
  EXPECT_EQ(c.log().format(), "json");
  EXPECT_EQ(c.metrics(), "127.0.0.1:9100");
  ASSERT_EQ(c.ingress_size(), 2);
  EXPECT_EQ(c.ingress(0).hostname(), "app.example.com");
  EXPECT_EQ(FromProto(c.ingress(0).origin_request().connect_timeout()), 5s);
  EXPECT_EQ(c.ingress(1).service(), "http_status:404");
  EXPECT_EQ(FromProto(c.reconnect().base()), 500ms);
  EXPECT_EQ(FromProto(c.reconnect().cap()), 90min);
  EXPECT_EQ(c.reconnect().max_attempts(), 7u);
  EXPECT_DOUBLE_EQ(c.reconnect().jitter(), 0.1);
  EXPECT_EQ(FromProto(c.grace_period()), 2500ms);  // a plain number is seconds
  EXPECT_EQ(c.plugin_dir_size(), 2);
  EXPECT_EQ(c.ferro().server(), "tunnel.example.com:7835");
  EXPECT_EQ(c.ferro().token(), "s3cret");
  EXPECT_TRUE(c.ferro().tls());
  EXPECT_EQ(c.mode(), "run");
  EXPECT_EQ(r.config_file, file);
}

TEST_F(ConfigFiles, ReadsJsonIncludingCamelCaseNamesAndNumericDurations) {
  auto file = Write("tunnel.json", R"({
  "backend": "cloudflare",
  "url": "http://localhost:8080",
  "gracePeriod": 10,
  "reconnect": {"base": "2s", "maxAttempts": 3},
  "cloudflare": {"haConnections": 2, "edge": ["198.41.192.7:7844", "[2606:4700::1]:7844"]}
})");
  auto r = Build({"--config", file});
  ASSERT_TRUE(r.ok()) << AllIssues(r);
  EXPECT_EQ(r.config.backend(), "cloudflare");
  EXPECT_EQ(r.config.url(), "http://localhost:8080");
  EXPECT_EQ(FromProto(r.config.grace_period()), 10s);
  EXPECT_EQ(FromProto(r.config.reconnect().base()), 2s);
  EXPECT_EQ(r.config.reconnect().max_attempts(), 3u);
  EXPECT_EQ(r.config.cloudflare().ha_connections(), 2u);
  ASSERT_EQ(r.config.cloudflare().edge_size(), 2);
  EXPECT_EQ(r.config.cloudflare().edge(1), "[2606:4700::1]:7844");
}

TEST_F(ConfigFiles, FlagsOverrideTheFileAndListsAppendAmongFlags) {
  auto file = Write("tunnel.yaml", R"(backend: zlayer
log: {level: warn}
zlayer:
  server: ws://node-a:3679/tunnel/v1
  service: [web:8080]
  tls_skip_verify: true
)");
  auto r = Build({"--config", file, "--log-level", "debug", "--server=wss://node-b:3679/tunnel/v1",
                  "--service", "ssh:22", "--service", "db:5432", "--tls-skip-verify=false",
                  "--grace-period", "1h30m", "--id=edge-1"},
                 "link");
  ASSERT_TRUE(r.ok()) << AllIssues(r);
  EXPECT_EQ(r.config.log().level(), "debug");
  EXPECT_EQ(r.config.zlayer().server(), "wss://node-b:3679/tunnel/v1");
  ASSERT_EQ(r.config.zlayer().service_size(), 2);
  EXPECT_EQ(r.config.zlayer().service(0), "ssh:22");
  EXPECT_EQ(r.config.zlayer().service(1), "db:5432");
  EXPECT_FALSE(r.config.zlayer().tls_skip_verify());
  EXPECT_EQ(FromProto(r.config.grace_period()), 90min);
  EXPECT_EQ(r.config.id(), "edge-1");
  EXPECT_EQ(r.config.mode(), "link");
}

TEST(ConfigFlags, BackendFlagsCoreConvenienceFlagsAndBareBools) {
  auto r = Build({"--backend", "ferro", "--server", "127.0.0.1:7835", "--token", "t", "--tls",
                  "--tunnel-id", "app", "--url", "http://127.0.0.1:3000", "--log-format", "json",
                  "--metrics", "[::1]:0", "--plugin-dir", "/x", "--reconnect-max-attempts", "5"});
  ASSERT_TRUE(r.ok()) << AllIssues(r);
  EXPECT_EQ(r.config.ferro().server(), "127.0.0.1:7835");
  EXPECT_TRUE(r.config.ferro().tls());
  EXPECT_EQ(r.config.ferro().tunnel_id(), "app");
  EXPECT_EQ(r.config.id(), "app");  // defaults to the backend's tunnel id
  EXPECT_EQ(r.config.log().format(), "json");
  EXPECT_EQ(r.config.metrics(), "[::1]:0");
  EXPECT_EQ(r.config.reconnect().max_attempts(), 5u);
  EXPECT_FALSE(r.check);
}

TEST(ConfigFlags, FillsCoreDefaults) {
  auto r = Build({"--backend", "ferro"});
  ASSERT_TRUE(r.ok()) << AllIssues(r);
  EXPECT_EQ(r.config.log().level(), "info");
  EXPECT_EQ(r.config.log().format(), "text");
  EXPECT_EQ(FromProto(r.config.grace_period()), 30s);
  EXPECT_EQ(FromProto(r.config.reconnect().base()), 1s);
  EXPECT_EQ(FromProto(r.config.reconnect().cap()), 60s);
  EXPECT_DOUBLE_EQ(r.config.reconnect().factor(), 2);
  EXPECT_EQ(r.config.origin_request().keep_alive_connections(), 100u);
  EXPECT_EQ(r.config.id(), "ferro");
}

TEST(ConfigFlags, RefusesEachProblemWithItsFieldPath) {
  auto r = Build({"--backend",
                  "ferro",
                  "--listen",
                  "1.2.3.4:99999",
                  "--http",
                  "0.0.0.0",
                  "--tcp",
                  "::1:80",
                  "--server",
                  "host:0",
                  "--tls=maybe",
                  "--no-such-thing",
                  "7",
                  "--log-level",
                  "loud",
                  "--log-format",
                  "xml",
                  "--grace-period",
                  "30",
                  "--reconnect-max-attempts",
                  "-1",
                  "--url",
                  "ftp://x",
                  "--metrics",
                  "localhost:http"});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(OnlyIssue(r, "ferro.listen").reason, "\"1.2.3.4:99999\": port out of range 1..65535");
  EXPECT_EQ(OnlyIssue(r, "ferro.listen").Describe(),
            "ferro.listen: \"1.2.3.4:99999\": port out of range 1..65535");
  EXPECT_NE(OnlyIssue(r, "ferro.http").reason.find("missing port"), std::string::npos);
  EXPECT_NE(OnlyIssue(r, "ferro.tcp").reason.find("brackets"), std::string::npos);
  EXPECT_NE(OnlyIssue(r, "ferro.server").reason.find("port out of range 1..65535"),
            std::string::npos);
  EXPECT_NE(OnlyIssue(r, "ferro.tls").reason.find("expected true or false"), std::string::npos);
  EXPECT_NE(OnlyIssue(r, "--no-such-thing").reason.find("unknown flag"), std::string::npos);
  EXPECT_EQ(OnlyIssue(r, "log.level").reason, "\"loud\": expected debug|error|info|off|trace|warn");
  EXPECT_EQ(OnlyIssue(r, "log.format").reason, "\"xml\": expected json|text");
  EXPECT_NE(OnlyIssue(r, "grace_period").reason.find("missing unit"), std::string::npos);
  EXPECT_NE(OnlyIssue(r, "reconnect.max_attempts").reason.find("must not be negative"),
            std::string::npos);
  EXPECT_NE(OnlyIssue(r, "url").reason.find("unsupported scheme"), std::string::npos);
  EXPECT_NE(OnlyIssue(r, "metrics").reason.find("invalid port"), std::string::npos);
  // "7" was the unknown flag's value, not a stray argument.
  EXPECT_EQ(r.issues.size(), 12u) << AllIssues(r);
}

TEST(ConfigFlags, ChecksModesUrlsAndMissingValues) {
  auto r = Build({"--backend", "ferro", "--mode", "fly", "--cloudflare-quick-service",
                  "api.example.com", "--zlayer-server", "wss://:443/x", "--token"},
                 "");  // no subcommand: --mode counts
  EXPECT_EQ(OnlyIssue(r, "mode").reason, "\"fly\": expected access|link|run|serve");
  EXPECT_NE(OnlyIssue(r, "cloudflare.quick_service").reason.find("not a URL"), std::string::npos);
  EXPECT_NE(OnlyIssue(r, "zlayer.server").reason.find("missing host"), std::string::npos);
  EXPECT_NE(OnlyIssue(r, "ferro.token").reason.find("needs a value"), std::string::npos);
  auto followed = Build({"--backend", "ferro", "--token", "--tls", "--server=--odd"});
  EXPECT_NE(OnlyIssue(followed, "ferro.token").reason.find("needs a value"), std::string::npos);
  EXPECT_TRUE(followed.config.ferro().tls());
  EXPECT_NE(OnlyIssue(followed, "ferro.server").reason.find("\"--odd\": missing port"),
            std::string::npos);
  auto no_backend = Build({"--url", "http://localhost:1"});
  EXPECT_NE(OnlyIssue(no_backend, "backend").reason.find("required"), std::string::npos);
}

TEST_F(ConfigFiles, RefusesFileProblemsNamingFileAndLine) {
  auto file = Write("bad.yaml", R"(backend: ferro
ferro:
  listen: 1.2.3.4:99999
  colour: blue
  tls: [1, 2]
ingress:
  - service: http_status:700
  - service: gopher://x
reconnect:
  base: soon
  jitter: 2
grace_period: {seconds: 3}
)");
  auto r = Build({"--config", file});
  EXPECT_FALSE(r.ok());
  auto listen = OnlyIssue(r, "ferro.listen");
  EXPECT_EQ(listen.Describe(),
            file + ":3: ferro.listen: \"1.2.3.4:99999\": port out of range 1..65535");
  EXPECT_EQ(OnlyIssue(r, "ferro.colour").Describe(), file + ":4: ferro.colour: unknown field");
  EXPECT_EQ(OnlyIssue(r, "ferro.tls").line, 5);
  EXPECT_NE(OnlyIssue(r, "ferro.tls").reason.find("got a list"), std::string::npos);
  auto status = OnlyIssue(r, "ingress[0].service");
  EXPECT_EQ(status.line, 7);
  EXPECT_NE(status.reason.find("100..599"), std::string::npos);
  EXPECT_EQ(OnlyIssue(r, "ingress[1].service").line, 8);
  EXPECT_NE(OnlyIssue(r, "reconnect.base").reason.find("invalid duration"), std::string::npos);
  EXPECT_EQ(OnlyIssue(r, "reconnect.base").line, 10);
  EXPECT_EQ(OnlyIssue(r, "reconnect.jitter").line, 11);
  EXPECT_NE(OnlyIssue(r, "grace_period").reason.find("got a map"), std::string::npos);
  EXPECT_EQ(r.issues.size(), 8u) << AllIssues(r);
}

TEST_F(ConfigFiles, AFlagFixesWhatTheFileGotWrongAndLosesTheFileLine) {
  auto file = Write("t.yaml", "backend: ferro\nferro: {listen: 1.2.3.4:99999}\n");
  EXPECT_FALSE(Build({"--config", file}).ok());
  auto fixed = Build({"--config", file, "--listen", "127.0.0.1:7835"});
  EXPECT_TRUE(fixed.ok()) << AllIssues(fixed);
  auto still_bad = Build({"--config", file, "--listen", "127.0.0.1:70000"});
  auto issue = OnlyIssue(still_bad, "ferro.listen");
  EXPECT_TRUE(issue.file.empty()) << issue.Describe();
}

TEST_F(ConfigFiles, ReportsSyntaxErrorsAndMissingFiles) {
  auto file = Write("broken.json", "{\"backend\": \"ferro\",\n  \"ferro\": {\"listen\": [}\n");
  auto r = Build({"--config", file});
  ASSERT_EQ(r.issues.size(), 1u) << AllIssues(r);
  EXPECT_EQ(r.issues[0].file, file);
  EXPECT_EQ(r.issues[0].line, 2);
  EXPECT_NE(r.issues[0].reason.find("not valid YAML or JSON"), std::string::npos);
  auto missing = Build({"--config", (dir_ / "nope.yaml").string(), "--backend", "ferro"});
  EXPECT_NE(OnlyIssue(missing, "--config").reason.find("cannot open"), std::string::npos);
  auto top_list = Build({"--config", Write("list.yaml", "- a\n- b\n")});
  EXPECT_NE(AllIssues(top_list).find("expected a map of fields"), std::string::npos);
}

TEST_F(ConfigFiles, ModeComesFromTheFileWithoutASubcommand) {
  auto file = Write("serve.yaml", "backend: ferro\nmode: serve\n");
  EXPECT_EQ(Build({"--config", file}, "").config.mode(), "serve");
  EXPECT_EQ(Build({"--config", file}, "link").config.mode(), "link");
  EXPECT_EQ(Build({"--backend", "ferro"}, "").config.mode(), "run");
}

TEST(ConfigChecks, HostPortAndUrlShapes) {
  EXPECT_EQ(CheckHostPort("127.0.0.1:80"), "");
  EXPECT_EQ(CheckHostPort("[::1]:443"), "");
  EXPECT_EQ(CheckHostPort("example.com:65535"), "");
  EXPECT_EQ(CheckHostPort("127.0.0.1:0"), "port out of range 1..65535");
  EXPECT_EQ(CheckHostPort("127.0.0.1:0", 0), "");
  EXPECT_EQ(CheckHostPort("127.0.0.1:65536"), "port out of range 1..65535");
  EXPECT_EQ(CheckHostPort("127.0.0.1:99999999999999"), "port out of range 1..65535");
  EXPECT_EQ(CheckHostPort("[::1:443"), "missing ']' after the IPv6 address");
  EXPECT_EQ(CheckHostPort("[zz]:443"), "invalid IPv6 address \"zz\"");
  EXPECT_EQ(CheckHostPort(":80"), "missing host (use 0.0.0.0 or 127.0.0.1 for a listener)");
  EXPECT_EQ(CheckHostPort("bad host:80"), "invalid host \"bad host\"");
  EXPECT_EQ(CheckUrl("wss://node:3679/tunnel/v1", {"ws", "wss"}), "");
  EXPECT_EQ(CheckUrl("http://node:3679", {"ws", "wss"}),
            "unsupported scheme \"http\" (expected ws, wss)");
  EXPECT_EQ(CheckUrl("ws://u:p@node/x", {"ws"}), "credentials in URLs are not supported");
  EXPECT_EQ(CheckUrl("ws://node:0/x", {"ws"}), "port out of range 1..65535");
  EXPECT_EQ(CheckService("hello_world"), "");
  EXPECT_EQ(CheckService("http_status:503"), "");
  EXPECT_EQ(CheckService("http_status:99"), "status out of range 100..599");
  EXPECT_EQ(CheckService("http_status:abc"), "invalid status in http_status:N");
  EXPECT_EQ(CheckService("unix:/run/app.sock"), "");
  EXPECT_EQ(CheckService("unix:"), "missing socket path after unix:");
  EXPECT_EQ(CheckService("tcp://127.0.0.1:22"), "");
  EXPECT_EQ(CheckService("https://[::1]:8443/base"), "");
  EXPECT_NE(CheckService("localhost:8080").find("unsupported service"), std::string::npos);
}

TEST(ConfigDurations, ParsesTheUsualForms) {
  EXPECT_EQ(ParseDuration("500ms"), 500ms);
  EXPECT_EQ(ParseDuration("30s"), 30s);
  EXPECT_EQ(ParseDuration("5m"), 5min);
  EXPECT_EQ(ParseDuration("1h"), 1h);
  EXPECT_EQ(ParseDuration("1h30m"), 90min);
  EXPECT_EQ(ParseDuration("1.5s"), 1500ms);
  EXPECT_EQ(ParseDuration("250us"), 250us);
  EXPECT_EQ(ParseDuration("100ns"), 100ns);
  EXPECT_EQ(ParseDuration("1m0.5s"), 60500ms);
  EXPECT_EQ(ParseDuration("0"), 0ns);
  auto missing_unit = ParseDuration("30");
  ASSERT_FALSE(missing_unit);
  EXPECT_EQ(missing_unit.message(), "missing unit in duration \"30\" (ns, us, ms, s, m, h)");
  auto message = [](std::string_view text) {
    auto parsed = ParseDuration(text);
    EXPECT_FALSE(parsed) << text;
    return parsed ? std::string() : parsed.message();
  };
  EXPECT_NE(message("-1s").find("signed"), std::string::npos);
  EXPECT_NE(message("3d").find("unknown unit \"d\""), std::string::npos);
  EXPECT_NE(message("s").find("invalid duration"), std::string::npos);
  EXPECT_EQ(message(""), "empty duration");
  EXPECT_FALSE(message("1.s2").empty());
  EXPECT_NE(message("99999999999h").find("too large"), std::string::npos);
  EXPECT_EQ(SecondsToDuration(1.5), 1500ms);
  EXPECT_FALSE(SecondsToDuration(-1));
}

TEST(ConfigDurations, FormatsAndReadsBack) {
  for (std::chrono::nanoseconds value : std::initializer_list<std::chrono::nanoseconds>{
           0ns, 1ns, 250us, 500ms, 1s, 1500ms, 90s, 60min, 5400s, 3601s, 30s}) {
    const auto text = FormatDuration(value);
    EXPECT_EQ(ParseDuration(text), value) << text;
  }
  EXPECT_EQ(FormatDuration(90min), "1h30m");
  EXPECT_EQ(FormatDuration(3601s), "1h0m1s");
  EXPECT_EQ(FormatDuration(500ms), "500ms");
  EXPECT_EQ(FormatDuration(1500ms), "1.5s");
  EXPECT_EQ(FormatDuration(60s), "1m");
}

// A string field takes UTF-8 only (found by config_loader_fuzz: raw bytes made a message that
// rendered as a different string); the issue names the field.
TEST(ConfigLoaderText, RefusesStringsThatAreNotUtf8) {
  ConfigLoader loader;
  loader.MergeText("backend: ferro\nferro:\n  tls_server_name: tu\xc4\xc4mple.com\n", "bad.yaml");
  ASSERT_EQ(loader.issues().size(), 1u);
  EXPECT_EQ(loader.issues()[0].path, "ferro.tls_server_name");
  EXPECT_NE(loader.issues()[0].Describe().find("UTF-8"), std::string::npos)
      << loader.issues()[0].Describe();
  ConfigLoader fine;
  fine.MergeText("id: caf\xc3\xa9\n", "fine.yaml");
  EXPECT_TRUE(fine.issues().empty());
  EXPECT_EQ(fine.config().id(), "caf\xc3\xa9");
}

TEST(ConfigRender, MasksSecretsAndReadsBackToTheSameMessage) {
  auto r = Build({"--backend", "ferro", "--server", "127.0.0.1:7835", "--token", "hunter2",
                  "--tls-ca", "/etc/ca.pem", "--grace-period", "45s"});
  ASSERT_TRUE(r.ok()) << AllIssues(r);
  const auto masked = RenderYaml(r.config);
  EXPECT_EQ(masked.find("hunter2"), std::string::npos) << masked;
  EXPECT_NE(masked.find("token: \"***\""), std::string::npos) << masked;
  EXPECT_NE(masked.find("grace_period: 45s"), std::string::npos) << masked;
  ConfigLoader loader;
  loader.MergeText(RenderYaml(r.config, false), "rendered");
  ASSERT_TRUE(loader.issues().empty()) << loader.issues()[0].Describe();
  EXPECT_EQ(loader.config().SerializeAsString(), r.config.SerializeAsString());
  loader.Set("ferro.tls", "true");
  loader.Set("log.level", "warn");
  EXPECT_TRUE(loader.config().ferro().tls());
  EXPECT_EQ(loader.config().log().level(), "warn");
  EXPECT_TRUE(loader.issues().empty());
  EXPECT_TRUE(IsSecretField("token"));
  EXPECT_TRUE(IsSecretField("api_secret"));
  EXPECT_FALSE(IsSecretField("tokens"));
}

// --- the real CLI ---------------------------------------------------------------------------

int CountLines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(TunnelctlConfig, CheckPrintsTheEffectiveConfigurationWithSecretsMasked) {
  auto r = test::RunProcess({TUNNELCTL_PATH, "--backend", "ferro", "--server", "127.0.0.1:7835",
                             "--token", "t0ps3cret", "--url", "http://127.0.0.1:3000", "--check"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("backend: \"ferro\"\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mode: \"run\"\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ferro:\n  server: \"127.0.0.1:7835\"\n  token: \"***\"\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("grace_period: 30s\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  level: \"info\"\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("t0ps3cret"), std::string::npos) << r.out;
  // The output is a configuration file that reads back.
  ConfigLoader loader;
  loader.MergeText(r.out, "check output");
  EXPECT_TRUE(loader.issues().empty());
  EXPECT_EQ(loader.config().ferro().server(), "127.0.0.1:7835");
}

TEST(TunnelctlConfig, RefusesBadConfigurationOneLineEachWithStatus2) {
  auto r = test::RunProcess({TUNNELCTL_PATH, "serve", "--backend", "ferro", "--listen",
                             "1.2.3.4:99999", "--log-level", "chatty", "--bogus"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(CountLines(r.err), 3) << r.err;
  EXPECT_NE(r.err.find("tunnelctl: config: ferro.listen: \"1.2.3.4:99999\": port out of range "
                       "1..65535\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("tunnelctl: config: log.level: \"chatty\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tunnelctl: config: --bogus: unknown flag"), std::string::npos) << r.err;
}

TEST(TunnelctlConfig, FileProblemsNameTheFileAndLine) {
  auto file = fs::temp_directory_path() / ("tunnelkit-cli-" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(file) << "backend: ferro\nmetrics: 127.0.0.1:123456\n";
  auto r = test::RunProcess({TUNNELCTL_PATH, "--config", file.string(), "--check"});
  fs::remove(file);
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(r.err, "tunnelctl: config: " + file.string() +
                       ":2: metrics: \"127.0.0.1:123456\": port out of range 0..65535\n");
}

TEST(TunnelctlConfig, AdminBindFailureIsOneLineAndStatus2) {
  // A port held by a listener of ours on 127.0.0.1.
  int held = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(held, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(held, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(held, 1), 0);
  socklen_t len = sizeof addr;
  ::getsockname(held, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  // The fixture backend has no checks of its own, so the run gets as far as the bind.
  auto r = test::RunProcess({TUNNELCTL_PATH, "--backend", "adminfixture", "--plugin-dir",
                             TUNNELKIT_TEST_PLUGIN_DIR, "--metrics", address});
  ::close(held);
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_NE(
      r.err.find("tunnelctl: admin: cannot listen on " + address + ": Address already in use\n"),
      std::string::npos)
      << r.err;
}

TEST(TunnelctlConfig, UnknownBackendStaysOneLine) {
  auto r = test::RunProcess({TUNNELCTL_PATH, "--backend", "nope", "--check"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("unknown backend 'nope'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tunnelkit::config
