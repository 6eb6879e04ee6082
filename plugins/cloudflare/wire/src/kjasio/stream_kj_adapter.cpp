#include "tunnelkit/cloudflare/wire/kjasio/stream_kj_adapter.hpp"

#include <cstring>
#include <deque>
#include <optional>
#include <vector>

#include <kj/debug.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

namespace tunnelkit::cloudflare {

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;

struct ReadRequest {
  kj::byte* buffer;
  std::size_t min;
  std::size_t max;
  std::size_t filled = 0;
  kj::Own<kj::PromiseFulfiller<size_t>> fulfiller;
};

struct WriteOp {
  std::vector<std::uint8_t> data;
  bool shutdown = false;  // a ShutdownWrite marker instead of data
  kj::Own<kj::PromiseFulfiller<void>> fulfiller;
};

}  // namespace

struct StreamKjAdapter::State {
  std::shared_ptr<Stream> stream;
  bool detached = false;  // the adapter is gone: no more KJ calls
  // read side
  std::vector<std::uint8_t> pending;  // read from the stream, not yet handed to KJ
  bool eof = false;
  boost::system::error_code read_error;
  bool reading = false;
  std::optional<ReadRequest> request;
  // write side
  std::deque<WriteOp> writes;
  bool writing = false;
  boost::system::error_code write_error;
  kj::Own<kj::PromiseFulfiller<void>> write_disconnected;

  // Hands buffered bytes (and eof or the error) to the waiting read, if any.
  void Deliver() {
    if (!request) return;
    std::size_t n = std::min(pending.size(), request->max - request->filled);
    if (n > 0) {
      std::memcpy(request->buffer + request->filled, pending.data(), n);
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
      request->filled += n;
    }
    if (request->filled >= request->min || eof) {
      auto filled = request->filled;
      auto fulfiller = kj::mv(request->fulfiller);
      request.reset();
      fulfiller->fulfill(kj::cp(filled));
    } else if (read_error) {
      auto fulfiller = kj::mv(request->fulfiller);
      request.reset();
      fulfiller->reject(
          KJ_EXCEPTION(DISCONNECTED, "stream read failed", read_error.message().c_str()));
    }
  }

  void FailWrites(const boost::system::error_code& ec) {
    write_error = ec;
    while (!writes.empty()) {
      auto op = std::move(writes.front());
      writes.pop_front();
      if (op.fulfiller) {
        op.fulfiller->reject(
            KJ_EXCEPTION(DISCONNECTED, "stream write failed", ec.message().c_str()));
      }
    }
    if (write_disconnected) {
      write_disconnected->fulfill();
      write_disconnected = nullptr;
    }
  }
};

namespace {

boost::asio::awaitable<void> ReadLoop(std::shared_ptr<StreamKjAdapter::State> state) {
  std::vector<std::uint8_t> chunk(kReadChunk);
  while (!state->detached && state->request && !state->eof && !state->read_error) {
    IoResult result = co_await state->stream->ReadSome(boost::asio::buffer(chunk));
    if (state->detached) break;
    state->pending.insert(state->pending.end(), chunk.begin(),
                          chunk.begin() + static_cast<std::ptrdiff_t>(result.bytes));
    if (result.ec == boost::asio::error::eof) {
      state->eof = true;
    } else if (result.ec) {
      state->read_error = result.ec;
    }
    state->Deliver();
  }
  state->reading = false;
}

boost::asio::awaitable<void> WriteLoop(std::shared_ptr<StreamKjAdapter::State> state) {
  while (!state->writes.empty() && !state->write_error) {
    WriteOp& op = state->writes.front();
    boost::system::error_code ec;
    if (op.shutdown) {
      ec = co_await state->stream->ShutdownWrite();
    } else {
      IoResult result = co_await state->stream->Write(boost::asio::buffer(op.data));
      ec = result.ec;
    }
    if (state->detached) {
      state->writes.clear();
      break;
    }
    if (ec) {
      state->FailWrites(ec);
      break;
    }
    auto done = std::move(state->writes.front());
    state->writes.pop_front();
    if (done.fulfiller) done.fulfiller->fulfill();
  }
  state->writing = false;
}

}  // namespace

StreamKjAdapter::StreamKjAdapter(std::shared_ptr<Stream> stream)
    : stream_(std::move(stream)), state_(std::make_shared<State>()) {
  state_->stream = stream_;
}

StreamKjAdapter::~StreamKjAdapter() noexcept(false) {
  // Outstanding coroutines keep the state alive; they must not touch KJ objects any more.
  state_->detached = true;
  state_->request.reset();
  for (auto& op : state_->writes) op.fulfiller = nullptr;
  state_->write_disconnected = nullptr;
}

kj::Promise<size_t> StreamKjAdapter::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  auto paf = kj::newPromiseAndFulfiller<size_t>();
  state_->request.emplace(
      ReadRequest{static_cast<kj::byte*>(buffer), minBytes, maxBytes, 0, kj::mv(paf.fulfiller)});
  state_->Deliver();
  if (state_->request && !state_->reading && !state_->eof && !state_->read_error) {
    state_->reading = true;
    boost::asio::co_spawn(stream_->get_executor(), ReadLoop(state_), boost::asio::detached);
  }
  // If KJ drops the promise, forget the buffer; data that still arrives waits in `pending`.
  return paf.promise.attach(kj::defer([state = state_] { state->request.reset(); }));
}

kj::Promise<void> StreamKjAdapter::write(const void* buffer, size_t size) {
  auto bytes = static_cast<const std::uint8_t*>(buffer);
  kj::ArrayPtr<const kj::byte> piece(bytes, size);
  return write(kj::arrayPtr(&piece, 1));
}

kj::Promise<void> StreamKjAdapter::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  if (state_->write_error) {
    return KJ_EXCEPTION(DISCONNECTED, "stream write failed", state_->write_error.message().c_str());
  }
  WriteOp op;
  for (auto piece : pieces) op.data.insert(op.data.end(), piece.begin(), piece.end());
  auto paf = kj::newPromiseAndFulfiller<void>();
  op.fulfiller = kj::mv(paf.fulfiller);
  state_->writes.push_back(std::move(op));
  if (!state_->writing) {
    state_->writing = true;
    boost::asio::co_spawn(stream_->get_executor(), WriteLoop(state_), boost::asio::detached);
  }
  return kj::mv(paf.promise);
}

kj::Promise<void> StreamKjAdapter::whenWriteDisconnected() {
  if (state_->write_error) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  state_->write_disconnected = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

void StreamKjAdapter::shutdownWrite() {
  WriteOp op;
  op.shutdown = true;
  state_->writes.push_back(std::move(op));
  if (!state_->writing) {
    state_->writing = true;
    boost::asio::co_spawn(stream_->get_executor(), WriteLoop(state_), boost::asio::detached);
  }
}

void StreamKjAdapter::abortRead() {
  state_->request.reset();
}

}  // namespace tunnelkit::cloudflare
