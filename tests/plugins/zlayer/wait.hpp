// Waiting in the zlayer tests' coroutines: a sleep, and polling a condition with a bound.
#pragma once

#include <chrono>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::zlayer::test {

inline boost::asio::awaitable<void> Sleep(std::chrono::milliseconds d) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, d);
  co_await t.async_wait(boost::asio::use_awaitable);
}

// Polls `predicate` every 20 ms for at most `limit`.
// (A template, not std::function: g++ 12 mishandles non-trivial temporaries in co_await.)
template <class Predicate>
boost::asio::awaitable<bool> WaitFor(Predicate predicate, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > end) co_return false;
    co_await Sleep(std::chrono::milliseconds(20));
  }
  co_return true;
}

}  // namespace tunnelkit::zlayer::test
