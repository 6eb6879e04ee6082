// The lifetime rules of the KJ loop driven by asio: callbacks of background KJ tasks own what
// they use, and objects holding KJ state that a coroutine frame uses die with the loop.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>

#include <boost/asio/io_context.hpp>

#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"

namespace tunnelkit::cloudflare {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// A callback that knows whether it is still alive when called: a dangling reference to a
// destroyed one (what kj's then() keeps of a named functor) sees kDead or garbage, not kAlive.
struct CheckedCallback {
  static constexpr std::uint64_t kAlive = 0x5eedca11ab1e0001;
  std::shared_ptr<int> calls;
  std::shared_ptr<int> dead_calls;
  std::uint64_t state = kAlive;
  CheckedCallback(std::shared_ptr<int> calls, std::shared_ptr<int> dead_calls)
      : calls(std::move(calls)), dead_calls(std::move(dead_calls)) {}
  CheckedCallback(const CheckedCallback&) = default;
  CheckedCallback(CheckedCallback&&) = default;
  ~CheckedCallback() { state = 0; }
  void operator()() const {
    if (state == kAlive) {
      ++*calls;
    } else {
      ++*dead_calls;
    }
  }
};

TEST(AsioKjLoopTest, WhenSettledOwnsItsCallbackPassedAsANamedObject) {
  asio::io_context io;
  AsioKjLoop loop(io);
  auto calls = std::make_shared<int>(0);
  auto dead_calls = std::make_shared<int>(0);
  auto paf = kj::newPromiseAndFulfiller<void>();
  {
    // Named, as the connection coroutine's loss watcher was: kj's then() kept a reference to
    // it, and the coroutine frame holding it was gone when the promise settled.
    CheckedCallback on_settled(calls, dead_calls);
    loop.WhenSettled(kj::mv(paf.promise), on_settled);
  }
  EXPECT_GE(calls.use_count(), 2) << "the pending task must own a copy of its callback";
  paf.fulfiller->fulfill();
  io.run_for(100ms);
  EXPECT_EQ(*dead_calls, 0) << "called through a reference to a destroyed callback";
  EXPECT_EQ(*calls, 1);
  EXPECT_EQ(calls.use_count(), 1) << "the callback is released once it ran";
}

TEST(AsioKjLoopTest, WhenSettledRunsTheCallbackOnRejection) {
  asio::io_context io;
  AsioKjLoop loop(io);
  auto calls = std::make_shared<int>(0);
  auto paf = kj::newPromiseAndFulfiller<void>();
  loop.WhenSettled(kj::mv(paf.promise), CheckedCallback(calls, std::make_shared<int>(0)));
  paf.fulfiller->reject(KJ_EXCEPTION(DISCONNECTED, "gone"));
  io.run_for(100ms);
  EXPECT_EQ(*calls, 1);
}

struct Tracked {
  explicit Tracked(bool& destroyed) : destroyed(destroyed) {}
  ~Tracked() { destroyed = true; }
  bool& destroyed;
};

TEST(AsioKjLoopTest, AdoptedObjectIsDestroyedByItsHandle) {
  asio::io_context io;
  AsioKjLoop loop(io);
  bool destroyed = false;
  {
    auto handle = loop.Adopt(std::make_unique<Tracked>(destroyed));
    EXPECT_NE(handle.get(), nullptr);
    EXPECT_EQ(loop.adopted(), 1u);
  }
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(loop.adopted(), 0u);
}

TEST(AsioKjLoopTest, AdoptedObjectDiesWithTheLoopWhenItsHandleOutlivesIt) {
  asio::io_context io;
  bool destroyed = false;
  AsioKjLoop::Adopted<Tracked> handle;
  {
    AsioKjLoop loop(io);
    handle = loop.Adopt(std::make_unique<Tracked>(destroyed));
  }
  EXPECT_TRUE(destroyed) << "the loop destroys what it adopted (a leak before)";
  EXPECT_EQ(handle.get(), nullptr);
  handle.Reset();  // harmless once the loop is gone
}

}  // namespace
}  // namespace tunnelkit::cloudflare
