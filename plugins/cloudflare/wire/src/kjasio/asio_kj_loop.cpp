#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"

#include <functional>

#include <boost/asio/steady_timer.hpp>

namespace tunnelkit::cloudflare {

KjError::KjError(const kj::Exception& e)
    : std::runtime_error(e.getDescription().cStr()),
      disconnected_(e.getType() == kj::Exception::Type::DISCONNECTED) {}

AsioEventPort::AsioEventPort(boost::asio::io_context& io)
    : io_(io), alive_(std::make_shared<bool>(true)) {}

AsioEventPort::~AsioEventPort() noexcept(false) {
  *alive_ = false;
}

bool AsioEventPort::wait() {
  io_.run_one();
  return false;
}

bool AsioEventPort::poll() {
  io_.poll();
  return false;
}

void AsioEventPort::Schedule() const {
  if (scheduled_) return;
  scheduled_ = true;
  boost::asio::post(io_, [this, alive = alive_] {
    if (!*alive) return;
    scheduled_ = false;
    if (loop_ != nullptr) loop_->run();
  });
}

void AsioEventPort::setRunnable(bool runnable) {
  if (runnable) Schedule();
}

void AsioEventPort::wake() const {
  // Cross-thread wake-ups (kj::Executor) come through here; asio::post is thread-safe, but
  // scheduled_ is not, so post unconditionally.
  boost::asio::post(io_, [this, alive = alive_] {
    if (*alive && loop_ != nullptr) loop_->run();
  });
}

class AsioKjLoop::ErrorHandler final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& exception) override {
    if (handler) handler(exception);
  }
  std::function<void(const kj::Exception&)> handler;
};

AsioKjLoop::AsioKjLoop(boost::asio::io_context& io)
    : io_(io),
      port_(io),
      loop_(port_),
      wait_scope_(loop_),
      error_handler_(std::make_unique<ErrorHandler>()),
      tasks_(kj::heap<kj::TaskSet>(*error_handler_)) {
  port_.SetLoop(&loop_);
}

AsioKjLoop::~AsioKjLoop() noexcept {
  // Adopted objects first: their KJ state may still have tasks and promises on this loop.
  lifetime_.reset();
  while (!owned_.empty()) owned_.pop_back();
  tasks_ = nullptr;
  port_.SetLoop(nullptr);
}

void AsioKjLoop::AddTask(kj::Promise<void> task) {
  tasks_->add(kj::mv(task));
}

void AsioKjLoop::SetTaskErrorHandler(std::function<void(const kj::Exception&)> handler) {
  error_handler_->handler = std::move(handler);
}

kj::Promise<void> AsioKjLoop::Delay(std::chrono::milliseconds delay) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto timer = std::make_shared<boost::asio::steady_timer>(io_, delay);
  // The fulfiller is only touched while the promise is wanted: dropping the promise cancels the
  // timer, and the handler then sees operation_aborted.
  auto fulfiller = std::make_shared<kj::Own<kj::PromiseFulfiller<void>>>(kj::mv(paf.fulfiller));
  timer->async_wait([fulfiller](const boost::system::error_code& ec) {
    if (ec || !*fulfiller) return;
    (*fulfiller)->fulfill();
  });
  return paf.promise.attach(kj::defer([timer, fulfiller] {
    *fulfiller = nullptr;
    timer->cancel();
  }));
}

boost::asio::awaitable<void> AwaitKjVoid(AsioKjLoop& loop, kj::Promise<void> promise) {
  co_await AwaitKj<bool>(loop, promise.then([] { return true; }));
}

}  // namespace tunnelkit::cloudflare
