// The client side of an origin exchange: where the origin's response goes. Two kinds: an
// HTTP/1.1 stream (the client's own connection), or a ResponseWriter (a structured request from
// a backend that carries heads itself). Private to the origin proxy (origin_proxy.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "../http_names.hpp"
#include "tunnelkit/origin/http_fields.hpp"
#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/stream.hpp"
#include "tunnelkit/stream/asio_adapter.hpp"

namespace tunnelkit::origin {

using namespace http_names;  // NOLINT: private header, included by origin_proxy.cpp only

// The client side of an exchange: where the response goes.
class Sink {
 public:
  virtual ~Sink() = default;
  // The origin's response head; `content_length` when the origin gave one, `body` false when
  // the response has no body (HEAD, 1xx, 204, 304). The sink may take the head's fields (the
  // caller reads nothing of them afterwards): a copy would allocate every field again.
  // `body_at_hand`: the whole body is already read and follows at once, so the head may wait
  // to leave with it.
  virtual awaitable<error_code> Head(http::response_header<>& head,
                                     std::optional<std::uint64_t> content_length, bool body,
                                     bool body_at_hand) = 0;
  virtual awaitable<error_code> Body(const char* data, std::size_t size) = 0;
  virtual awaitable<error_code> End() = 0;
  // A response made by the proxy (502, 504, 404, http_status).
  virtual awaitable<error_code> Error(http::status status, const std::string& text) = 0;
  // The raw client stream after a 101, plus bytes already read from it.
  virtual Stream& RawStream() = 0;
  virtual beast::flat_buffer* Leftover() = 0;
  // Breaks the client side (a response cannot be completed).
  virtual void Abort() = 0;
  bool head_sent = false;
};

// Reads the request body for the origin: eof at its end.
using BodyReader = std::function<awaitable<IoResult>(boost::asio::mutable_buffer)>;

// Responses written as HTTP/1.1 to the client stream.
class HttpStreamSink final : public Sink {
 public:
  HttpStreamSink(Stream& client, beast::flat_buffer& buffer, bool keep_alive)
      : client_(client), ref_(client), buffer_(buffer), keep_alive_(keep_alive) {}

  awaitable<error_code> Head(http::response_header<>& head,
                             std::optional<std::uint64_t> content_length, bool body,
                             bool body_at_hand) override {
    head_sent = true;
    res_.base() = std::move(head);
    bool upgrade = res_.result() == http::status::switching_protocols;
    RemoveHopByHop(res_, upgrade);
    res_.version(11);
    error_code ec;
    if (upgrade) {
      res_.set(http::field::connection, "Upgrade");
      http::response<http::empty_body> r;
      r.base() = res_.base();
      co_await http::async_write(ref_, r, redirect_error(use_awaitable, ec));
      co_return ec;
    }
    res_.keep_alive(keep_alive_);
    body_ = body;
    if (content_length) {
      res_.content_length(*content_length);
    } else if (body) {
      res_.chunked(true);
    }
    res_.body().data = nullptr;
    res_.body().size = 0;
    res_.body().more = body;
    sr_.emplace(res_);
    // Deferred: the serializer writes the head with the first body bytes (Body or End).
    if (body_at_hand) co_return ec;
    co_await http::async_write_header(ref_, *sr_, redirect_error(use_awaitable, ec));
    co_return ec;
  }

  awaitable<error_code> Body(const char* data, std::size_t size) override {
    res_.body().data = const_cast<char*>(data);
    res_.body().size = size;
    res_.body().more = true;
    error_code ec;
    co_await http::async_write(ref_, *sr_, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    co_return ec;
  }

  awaitable<error_code> End() override {
    if (!body_ || !sr_) co_return error_code{};
    res_.body().data = nullptr;
    res_.body().size = 0;
    res_.body().more = false;
    error_code ec;
    co_await http::async_write(ref_, *sr_, redirect_error(use_awaitable, ec));
    co_return ec;
  }

  awaitable<error_code> Error(http::status status, const std::string& text) override {
    if (head_sent) {
      Abort();
      co_return asio::error::connection_aborted;
    }
    head_sent = true;
    http::response<http::string_body> r(status, 11);
    r.set(http::field::content_type, "text/plain; charset=utf-8");
    r.set(http::field::server, "tunnelkit");
    r.keep_alive(keep_alive_);
    r.body() = text;
    r.prepare_payload();
    error_code ec;
    co_await http::async_write(ref_, r, redirect_error(use_awaitable, ec));
    co_return ec;
  }

  Stream& RawStream() override { return client_; }
  beast::flat_buffer* Leftover() override { return &buffer_; }
  void Abort() override { client_.Reset(); }

 private:
  Stream& client_;
  StreamRef ref_;
  beast::flat_buffer& buffer_;
  bool keep_alive_;
  bool body_ = false;
  http::response<http::buffer_body> res_;
  std::optional<http::response_serializer<http::buffer_body>> sr_;
};

// Reads from one stream, writes to another: the two halves of a structured request's body.
class JoinedStream final : public Stream {
 public:
  JoinedStream(Stream& in, Stream& out) : in_(in), out_(out) {}
  boost::asio::any_io_executor get_executor() override { return in_.get_executor(); }
  awaitable<IoResult> ReadSome(boost::asio::mutable_buffer b) override { return in_.ReadSome(b); }
  awaitable<IoResult> Write(boost::asio::const_buffer b) override { return out_.Write(b); }
  awaitable<error_code> ShutdownWrite() override { return out_.ShutdownWrite(); }
  void Reset() override {
    in_.Reset();
    if (&out_ != &in_) out_.Reset();
  }
  std::string Describe() const override { return in_.Describe(); }

 private:
  Stream& in_;
  Stream& out_;
};

// For a ResponseWriter: the head goes to it, the body to its stream; `body_in` is the request
// body's stream (the raw stream after a 101 reads from it).
class WriterSink final : public Sink {
 public:
  WriterSink(Stream& body_in, ResponseWriter& out) : out_(out), joined_(body_in, out.Body()) {}

  awaitable<error_code> Head(http::response_header<>& head,
                             std::optional<std::uint64_t> content_length, bool body,
                             bool /*body_at_hand*/) override {
    head_sent = true;
    body_ = body;
    http::fields& fields = head;
    RemoveHopByHop(fields, head.result() == http::status::switching_protocols);
    ResponseHead rh;
    rh.status = static_cast<int>(head.result_int());
    rh.reason = std::string(View(head.reason()));
    for (const auto& f : fields) {
      if (f.name() == http::field::content_length) continue;
      rh.headers.emplace_back(std::string(View(f.name_string())), std::string(View(f.value())));
    }
    if (content_length) rh.headers.emplace_back("Content-Length", std::to_string(*content_length));
    co_return co_await out_.WriteHead(rh);
  }

  awaitable<error_code> Body(const char* data, std::size_t size) override {
    IoResult r = co_await out_.Body().Write(asio::buffer(data, size));
    co_return r.ec;
  }

  awaitable<error_code> End() override { co_return co_await out_.Body().ShutdownWrite(); }

  awaitable<error_code> Error(http::status status, const std::string& text) override {
    if (head_sent) {
      Abort();
      co_return asio::error::connection_aborted;
    }
    head_sent = true;
    ResponseHead rh;
    rh.status = static_cast<int>(status);
    rh.reason = std::string(View(http::obsolete_reason(status)));
    rh.headers = {{"Content-Type", "text/plain; charset=utf-8"},
                  {"Content-Length", std::to_string(text.size())}};
    if (status == http::status::bad_gateway || status == http::status::gateway_timeout) {
      rh.proxy_error = text;
      while (!rh.proxy_error.empty() && rh.proxy_error.back() == '\n') rh.proxy_error.pop_back();
    }
    error_code ec = co_await out_.WriteHead(rh);
    if (ec) co_return ec;
    if (!text.empty()) {
      IoResult r = co_await out_.Body().Write(asio::buffer(text));
      if (r.ec) co_return r.ec;
    }
    co_return co_await out_.Body().ShutdownWrite();
  }

  Stream& RawStream() override { return joined_; }
  beast::flat_buffer* Leftover() override { return nullptr; }
  void Abort() override { joined_.Reset(); }

 private:
  ResponseWriter& out_;
  JoinedStream joined_;
  bool body_ = false;
};

}  // namespace tunnelkit::origin
