#include "client/edge_stream_server.hpp"

#include <spdlog/spdlog.h>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/rpc/cloudflared_server.hpp"
#include "tunnelkit/cloudflare/wire/stream/connect_stream.hpp"
#include "tunnelkit/memory_trim.hpp"
#include "tunnelkit/stream/counting_stream.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/prefixed_stream.hpp"

namespace tunnelkit::cloudflare {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

constexpr std::size_t kTrimAfterStreams = 128;

const char* TypeName(ConnectionType type) {
  switch (type) {
    case ConnectionType::kHttp:
      return "http";
    case ConnectionType::kWebsocket:
      return "websocket";
    case ConnectionType::kTcp:
      return "tcp";
  }
  return "unknown";
}

// Swallows what the proxy writes as the body of its own error responses: over QUIC the error
// travels in ConnectResponse.error and the edge renders the page. The FIN still goes out.
class DiscardBody final : public Stream {
 public:
  explicit DiscardBody(Stream& inner) : inner_(inner) {}
  asio::any_io_executor get_executor() override { return inner_.get_executor(); }
  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer) override {
    co_return IoResult{asio::error::operation_not_supported, 0};
  }
  asio::awaitable<IoResult> Write(asio::const_buffer buffer) override {
    co_return IoResult{{}, buffer.size()};
  }
  asio::awaitable<error_code> ShutdownWrite() override {
    co_return co_await inner_.ShutdownWrite();
  }
  void Reset() override { inner_.Reset(); }
  std::string Describe() const override { return inner_.Describe(); }

 private:
  Stream& inner_;
};

// The response side of one data stream: the head becomes a ConnectResponse.
class ConnectResponseWriter final : public origin::ResponseWriter {
 public:
  ConnectResponseWriter(Stream& stream, std::function<void(int)> on_head)
      : stream_(stream), discard_(stream), on_head_(std::move(on_head)) {}

  asio::awaitable<error_code> WriteHead(const origin::ResponseHead& head) override {
    head_written_ = true;
    on_head_(head.status);
    ConnectResponse response;
    if (!head.proxy_error.empty()) {
      response.error = kOriginUnreachable + head.proxy_error;
      proxy_error_ = true;
    } else {
      HttpResponseMeta meta;
      meta.status = head.status;
      meta.headers = head.headers;
      if (head.status == 101) {
        // The proxy drops hop-by-hop fields; a switch needs them back for the visitor.
        std::erase_if(meta.headers, [](const auto& h) {
          return boost::iequals(h.first, "Connection") || boost::iequals(h.first, "Upgrade");
        });
        meta.headers.emplace_back("Connection", "Upgrade");
        meta.headers.emplace_back("Upgrade", "websocket");
      }
      response.metadata = EncodeResponseMetadata(meta);
    }
    co_return co_await WriteConnectResponse(stream_, response);
  }
  Stream& Body() override { return proxy_error_ ? static_cast<Stream&>(discard_) : stream_; }
  bool head_written() const { return head_written_; }

 private:
  Stream& stream_;
  DiscardBody discard_;
  std::function<void(int)> on_head_;
  bool head_written_ = false;
  bool proxy_error_ = false;
};

// For type tcp: acknowledges the stream with an empty ConnectResponse when the splice starts
// (that is, once the origin is connected: the splice's first read of the edge side). A Reset
// before that (connect failure) is held back so that the error can still be written as a
// ConnectResponse. Writes wait until the ack is out (one Write at a time is the Stream rule).
class TcpAckStream final : public Stream {
 public:
  explicit TcpAckStream(Stream& inner)
      : inner_(inner), ack_wait_(inner.get_executor(), asio::steady_timer::time_point::max()) {}
  asio::any_io_executor get_executor() override { return inner_.get_executor(); }
  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer buffer) override {
    if (auto ec = co_await Ack(); ec) co_return IoResult{ec, 0};
    co_return co_await inner_.ReadSome(buffer);
  }
  asio::awaitable<IoResult> Write(asio::const_buffer buffer) override {
    if (auto ec = co_await Ack(); ec) co_return IoResult{ec, 0};
    co_return co_await inner_.Write(buffer);
  }
  asio::awaitable<error_code> ShutdownWrite() override {
    if (auto ec = co_await Ack(); ec) co_return ec;
    co_return co_await inner_.ShutdownWrite();
  }
  void Reset() override {
    if (started_) inner_.Reset();
  }
  std::string Describe() const override { return inner_.Describe(); }
  bool acked() const { return started_; }

 private:
  asio::awaitable<error_code> Ack() {
    if (!started_) {
      started_ = true;
      ConnectResponse ack;
      ack_error_ = co_await WriteConnectResponse(inner_, ack);
      done_ = true;
      ack_wait_.cancel();
    }
    while (!done_) {
      error_code ignored;
      co_await ack_wait_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
    co_return ack_error_;
  }
  Stream& inner_;
  asio::steady_timer ack_wait_;
  bool started_ = false;
  bool done_ = false;
  error_code ack_error_;
};

}  // namespace

EdgeStreamServer::EdgeStreamServer(origin::OriginProxy& proxy, AsioKjLoop& loop,
                                   session::DrainTracker& drain, EdgeStreamMetrics metrics,
                                   std::shared_ptr<spdlog::logger> logger, Options options)
    : proxy_(proxy),
      loop_(loop),
      drain_(drain),
      metrics_(std::move(metrics)),
      log_(std::move(logger)),
      options_(options) {}

asio::awaitable<void> EdgeStreamServer::Serve(std::shared_ptr<Stream> stream, int conn_index) {
  auto start = std::chrono::steady_clock::now();
  std::weak_ptr<Stream> weak = stream;
  auto guard = drain_.TryBegin([weak] {
    if (auto s = weak.lock()) s->Reset();
  });
  if (!guard) {
    // Shutting down: the edge retries the request on another connection.
    stream->Reset();
    co_return;
  }
  metrics_.active_streams.Inc();
  peak_ = std::max(peak_, ++active_);
  try {
    StreamOpening opening;
    {
      Deadline deadline(stream->get_executor());
      deadline.Arm(options_.head_timeout, [weak] {
        if (auto s = weak.lock()) s->Reset();
      });
      opening = co_await ReadStreamOpening(*stream, options_.limits);
    }
    if (!opening.error.empty()) {
      metrics_.stream_errors.Inc();
      log_->warn("conn_index={} {}: bad stream from the edge: {}", conn_index, stream->Describe(),
                 opening.error);
      stream->Reset();
    } else if (opening.kind == StreamKind::kRpc) {
      if (metrics_.streams) metrics_.streams->With({metrics_.tunnel, "rpc"}).Inc();
      co_await ServeCloudflaredRpc(loop_, stream, options_.rpc_timeout, log_);
    } else {
      if (metrics_.streams)
        metrics_.streams->With({metrics_.tunnel, TypeName(opening.request.type)}).Inc();
      log_->debug("conn_index={} {} {}", conn_index, TypeName(opening.request.type),
                  opening.request.dest);
      if (opening.request.type == ConnectionType::kTcp) {
        co_await ServeTcp(stream, std::move(opening.request), std::move(opening.leftover));
      } else {
        co_await ServeHttp(stream, std::move(opening.request), std::move(opening.leftover), start);
      }
    }
  } catch (const std::exception& e) {
    metrics_.stream_errors.Inc();
    log_->warn("conn_index={} stream failed: {}", conn_index, e.what());
    stream->Reset();
  }
  metrics_.active_streams.Dec();
  --active_;
  if (active_ == 0 || (peak_ >= kTrimAfterStreams && active_ <= peak_ / 2)) {
    peak_ = active_;
    ScheduleMemoryTrim(stream->get_executor());
  }
}

asio::awaitable<void> EdgeStreamServer::ServeHttp(std::shared_ptr<Stream> stream,
                                                  ConnectRequest request,
                                                  std::vector<std::uint8_t> leftover,
                                                  std::chrono::steady_clock::time_point start) {
  HttpRequestMeta meta;
  if (auto error = DecodeRequestMetadata(request.metadata, meta); !error.empty()) {
    metrics_.stream_errors.Inc();
    log_->warn("refused a request from the edge: {}", error);
    ConnectResponse refusal;
    refusal.error = error;
    co_await WriteConnectResponse(*stream, refusal);
    co_await stream->ShutdownWrite();
    co_return;
  }
  origin::RequestHead head;
  head.method = meta.method;
  head.target = TargetFromDest(request.dest);
  head.host = meta.host.empty() ? HostFromDest(request.dest) : meta.host;
  head.client.scheme = "https";
  for (auto& [name, value] : meta.headers) {
    // The edge's tracing header is for cloudflared, not for the origin (spec 5.3).
    if (boost::iequals(name, "Cf-Trace-Id")) continue;
    if (boost::iequals(name, "Cf-Connecting-Ip") && head.client.address.empty())
      head.client.address = value;
    head.headers.emplace_back(std::move(name), std::move(value));
  }
  if (request.type == ConnectionType::kWebsocket) {
    // As cloudflared: the origin request is a WebSocket upgrade whatever the edge sent.
    std::erase_if(head.headers, [](const auto& h) {
      return boost::iequals(h.first, "Connection") || boost::iequals(h.first, "Upgrade") ||
             boost::iequals(h.first, "Sec-WebSocket-Version");
    });
    head.headers.emplace_back("Connection", "Upgrade");
    head.headers.emplace_back("Upgrade", "websocket");
    head.headers.emplace_back("Sec-WebSocket-Version", "13");
  }
  CountingStream counted(stream, metrics_.bytes_in, metrics_.bytes_out);
  metrics_.bytes_in.Inc(leftover.size());  // body bytes that came with the head
  PrefixedStream body_in(counted, std::move(leftover));
  ConnectResponseWriter writer(counted, [&](int status) {
    metrics_.latency.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (metrics_.responses)
      metrics_.responses->With({metrics_.tunnel, std::to_string(status)}).Inc();
  });
  error_code ec = co_await proxy_.ForwardRequest(head, body_in, writer);
  if (ec) {
    metrics_.stream_errors.Inc();
    log_->debug("{} {}: response cut short: {}", head.method, head.target, ec.message());
    // After the head, the only way to tell the edge the body is incomplete is a reset.
    stream->Reset();
  }
}

asio::awaitable<void> EdgeStreamServer::ServeTcp(std::shared_ptr<Stream> stream,
                                                 ConnectRequest request,
                                                 std::vector<std::uint8_t> leftover) {
  std::string host = HostFromDest(request.dest);
  const origin::Rule* rule = proxy_.router().Match(host, "");
  std::string error;
  if (!rule) {
    error = "no ingress rule for " + host;
  } else if (rule->service.is_http()) {
    error = "the origin service " + rule->service.text + " is not a TCP service";
  }
  if (error.empty()) {
    CountingStream counted(stream, metrics_.bytes_in, metrics_.bytes_out);
    metrics_.bytes_in.Inc(leftover.size());
    PrefixedStream prefixed(counted, std::move(leftover));
    TcpAckStream acked(prefixed);
    auto result = co_await proxy_.ServeTcp(acked, rule->service, rule->options);
    if (acked.acked()) co_return;
    error = kOriginUnreachable + (result.ec ? result.ec.message() : std::string("closed"));
  }
  metrics_.stream_errors.Inc();
  log_->warn("tcp stream to {} refused: {}", request.dest, error);
  ConnectResponse refusal;
  refusal.error = error;
  co_await WriteConnectResponse(*stream, refusal);
  co_await stream->ShutdownWrite();
}

}  // namespace tunnelkit::cloudflare
