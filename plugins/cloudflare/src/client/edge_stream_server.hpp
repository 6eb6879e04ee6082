// Serves the streams the edge opens on a registered connection (specs/cloudflare.md 5-6):
//   data stream, type http/websocket: the ConnectRequest becomes an origin request through the
//     core OriginProxy; the origin's head goes back as ConnectResponse metadata (HttpStatus,
//     HttpHeader:*), its body as raw bytes, then FIN. Each body piece is written as it arrives,
//     so server-sent events reach the edge one by one. If the origin cannot be reached the
//     ConnectResponse carries the error text (the edge renders the error page); a failure after
//     the head resets the stream.
//   data stream, type tcp: the origin of the matching tcp:// rule is dialed, an empty
//     ConnectResponse acknowledges it, then bytes are spliced both ways.
//   RPC stream: CloudflaredServer (rpc/cloudflared_server.hpp).
//   anything else: the stream is reset with a logged one-line reason.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "tunnelkit/cloudflare/wire/codec/connect_metadata.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/metrics/registry.hpp"
#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/session/drain.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::cloudflare {

// Metric handles of one tunnel (default-constructed handles ignore updates).
struct EdgeStreamMetrics {
  std::string tunnel;                           // the "tunnel" label value
  metrics::CounterFamily* streams = nullptr;    // labels: tunnel, type
  metrics::CounterFamily* responses = nullptr;  // labels: tunnel, code
  metrics::Counter stream_errors;
  metrics::Gauge active_streams;
  metrics::Counter bytes_in;   // from the edge towards the origin
  metrics::Counter bytes_out;  // from the origin towards the edge
  metrics::Histogram latency;  // stream opened -> response head, seconds
};

// Cloudflare's wording when the origin cannot be reached.
inline constexpr const char* kOriginUnreachable =
    "Unable to reach the origin service. The service may be down or it may not be responding "
    "to traffic from tunnelkit: ";

class EdgeStreamServer {
 public:
  struct Options {
    MetadataLimits limits;
    std::chrono::milliseconds head_timeout{10000};  // preamble + ConnectRequest must arrive
    std::chrono::milliseconds rpc_timeout{5000};
  };

  // `proxy`, `loop` and `drain` outlive the server.
  EdgeStreamServer(origin::OriginProxy& proxy, AsioKjLoop& loop, session::DrainTracker& drain,
                   EdgeStreamMetrics metrics, std::shared_ptr<spdlog::logger> logger,
                   Options options);

  // Serves one edge-opened stream to its end; never throws.
  boost::asio::awaitable<void> Serve(std::shared_ptr<Stream> stream, int conn_index);

 private:
  boost::asio::awaitable<void> ServeHttp(std::shared_ptr<Stream> stream, ConnectRequest request,
                                         std::vector<std::uint8_t> leftover,
                                         std::chrono::steady_clock::time_point start);
  boost::asio::awaitable<void> ServeTcp(std::shared_ptr<Stream> stream, ConnectRequest request,
                                        std::vector<std::uint8_t> leftover);

  origin::OriginProxy& proxy_;
  AsioKjLoop& loop_;
  session::DrainTracker& drain_;
  EdgeStreamMetrics metrics_;
  // Streams in flight, and the most since the last heap trim: once they are all done (a burst
  // ended) or most of a crowd is gone, freed memory goes back to the system.
  std::size_t active_ = 0;
  std::size_t peak_ = 0;
  std::shared_ptr<spdlog::logger> log_;
  Options options_;
};

}  // namespace tunnelkit::cloudflare
