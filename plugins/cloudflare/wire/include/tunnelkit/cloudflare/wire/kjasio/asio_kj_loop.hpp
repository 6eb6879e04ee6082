// Cap'n Proto's KJ event loop driven by Boost.Asio (notes/debian-dependencies.md section 2,
// pattern A): the loop has no thread or poller of its own; whenever KJ has work, the port posts
// loop.run() onto the io_context. Everything runs on the io_context's one thread.
//
// AwaitKj turns a kj::Promise into an asio awaitable, so coroutines on the io_context can call
// Cap'n Proto RPC methods.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <kj/async.h>
#include <kj/debug.h>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::cloudflare {

// A KJ exception seen from asio code: its description, and whether the peer went away.
class KjError : public std::runtime_error {
 public:
  KjError(std::string what, bool disconnected)
      : std::runtime_error(std::move(what)), disconnected_(disconnected) {}
  explicit KjError(const kj::Exception& e);
  bool disconnected() const { return disconnected_; }

 private:
  bool disconnected_;
};

class AsioEventPort final : public kj::EventPort {
 public:
  explicit AsioEventPort(boost::asio::io_context& io);
  ~AsioEventPort() noexcept(false);
  void SetLoop(kj::EventLoop* loop) { loop_ = loop; }

  // Only reached through promise.wait(), which asio-driven code never calls.
  bool wait() override;
  bool poll() override;
  void setRunnable(bool runnable) override;
  void wake() const override;

 private:
  void Schedule() const;
  boost::asio::io_context& io_;
  kj::EventLoop* loop_ = nullptr;
  std::shared_ptr<bool> alive_;  // posted runs check it: the loop may be gone by then
  mutable bool scheduled_ = false;
};

// One per thread (KJ allows one event loop per thread). Create it on the io_context's thread
// before any KJ or Cap'n Proto object, destroy it after them.
class AsioKjLoop {
 public:
  explicit AsioKjLoop(boost::asio::io_context& io);
  ~AsioKjLoop() noexcept;
  AsioKjLoop(const AsioKjLoop&) = delete;
  AsioKjLoop& operator=(const AsioKjLoop&) = delete;

  boost::asio::io_context& io() { return io_; }
  // Background KJ work whose errors are only logged (through the error handler).
  void AddTask(kj::Promise<void> task);
  // Calls `on_settled` once `promise` resolves or is rejected, as a background task. The
  // callback is taken by value and owned by the task: kj's then()/catch_() take functors by
  // forwarding reference, so a named functor passed to them as an lvalue is kept as a
  // reference to wherever it lives (a coroutine frame that may be gone when the promise
  // settles). Use this, or pass temporaries / std::move, never a named lvalue.
  template <typename F>
  void WhenSettled(kj::Promise<void> promise, F on_settled) {
    auto callback = std::make_shared<F>(std::move(on_settled));
    AddTask(promise.then([callback] { (*callback)(); },
                         [callback](kj::Exception&&) { (*callback)(); }));
  }
  void SetTaskErrorHandler(std::function<void(const kj::Exception&)> handler);
  // A KJ promise resolved by an asio timer (KJ has no timer of its own in this setup).
  kj::Promise<void> Delay(std::chrono::milliseconds delay);
  // Expires when the loop is destroyed (first thing in its destructor).
  std::weak_ptr<const void> lifetime() const { return lifetime_; }

  // An object holding KJ state (an RPC session over a stream) whose user is a coroutine frame.
  // A frame can outlive the loop (the io_context destroys suspended frames after the loop is
  // gone), and KJ objects must not be destroyed without their loop. So the loop owns the
  // object and destroys it first when it goes away; the frame holds an Adopted handle that
  // destroys the object when the frame ends normally. Nothing is leaked either way.
  template <typename T>
  class Adopted {
   public:
    Adopted() = default;
    Adopted(Adopted&& other) noexcept { *this = std::move(other); }
    Adopted& operator=(Adopted&& other) noexcept {
      Reset();
      loop_ = other.loop_;
      object_ = other.object_;
      entry_ = other.entry_;
      lifetime_ = std::move(other.lifetime_);
      other.object_ = nullptr;
      return *this;
    }
    ~Adopted() { Reset(); }
    // Null once the loop destroyed the object.
    T* get() const { return lifetime_.expired() ? nullptr : object_; }
    T* operator->() const { return get(); }
    // Destroys the object now (if the loop has not already).
    void Reset() {
      if (object_ != nullptr && !lifetime_.expired()) loop_->owned_.erase(entry_);
      object_ = nullptr;
    }

   private:
    friend class AsioKjLoop;
    AsioKjLoop* loop_ = nullptr;
    T* object_ = nullptr;
    std::list<std::shared_ptr<void>>::iterator entry_;
    std::weak_ptr<const void> lifetime_;
  };
  template <typename T>
  Adopted<T> Adopt(std::unique_ptr<T> object) {
    Adopted<T> handle;
    handle.loop_ = this;
    handle.object_ = object.get();
    handle.entry_ = owned_.insert(owned_.end(), std::shared_ptr<T>(std::move(object)));
    handle.lifetime_ = lifetime_;
    return handle;
  }
  // Objects adopted and not yet released (for tests).
  std::size_t adopted() const { return owned_.size(); }
  // `promise`, or an OVERLOADED exception "<what> timed out" after `timeout`.
  template <typename T>
  kj::Promise<T> WithTimeout(kj::Promise<T> promise, std::chrono::milliseconds timeout,
                             const char* what) {
    return promise.exclusiveJoin(Delay(timeout).then([what]() -> kj::Promise<T> {
      return kj::Exception(kj::Exception::Type::OVERLOADED, __FILE__, __LINE__,
                           kj::str(what, " timed out"));
    }));
  }

 private:
  class ErrorHandler;
  boost::asio::io_context& io_;
  AsioEventPort port_;
  kj::EventLoop loop_;
  kj::WaitScope wait_scope_;
  std::unique_ptr<ErrorHandler> error_handler_;
  kj::Own<kj::TaskSet> tasks_;
  std::list<std::shared_ptr<void>> owned_;  // see Adopt
  std::shared_ptr<const void> lifetime_ = std::make_shared<int>(0);
};

// Awaits a KJ promise from an asio coroutine on the same io_context. The value is moved out
// inside the KJ continuation, so T must be a plain C++ type (not a capnp Reader). A rejected
// promise throws KjError.
template <typename T>
boost::asio::awaitable<T> AwaitKj(AsioKjLoop& loop, kj::Promise<T> promise) {
  auto io = &loop.io();
  co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable),
                                                 void(std::exception_ptr, T)>(
      [&loop, io, &promise](auto handler) {
        using Handler = decltype(handler);
        auto shared = std::make_shared<Handler>(std::move(handler));
        loop.AddTask(promise.then(
            [shared, io](T value) mutable {
              boost::asio::post(*io, [shared, value = std::move(value)]() mutable {
                (*shared)(nullptr, std::move(value));
              });
            },
            [shared, io](kj::Exception&& e) {
              boost::asio::post(*io, [shared, error = std::make_exception_ptr(KjError(e))]() {
                (*shared)(error, T{});
              });
            }));
      },
      boost::asio::use_awaitable);
}

// Same for kj::Promise<void>.
boost::asio::awaitable<void> AwaitKjVoid(AsioKjLoop& loop, kj::Promise<void> promise);

}  // namespace tunnelkit::cloudflare
