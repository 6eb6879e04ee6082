#include "util/memory_trim.hpp"

#include <malloc.h>

#include <chrono>
#include <memory>

#include <boost/asio/steady_timer.hpp>

namespace tunnelkit::zlayer::util {

namespace {

constexpr std::uint64_t kBulkBytes = 4 * 1024 * 1024;
constexpr int kClosesPerTrim = 64;

}  // namespace

void TuneAllocator() {
  mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
}

void NoteClosed(const boost::asio::any_io_executor& executor, std::uint64_t bytes) {
  thread_local int closes = 0;
  thread_local bool pending = false;
  if (bytes < kBulkBytes && ++closes < kClosesPerTrim) return;
  closes = 0;
  if (pending) return;
  pending = true;
  auto timer =
      std::make_shared<boost::asio::steady_timer>(executor, std::chrono::milliseconds(200));
  timer->async_wait([timer](const boost::system::error_code&) {
    pending = false;
    malloc_trim(0);
  });
}

}  // namespace tunnelkit::zlayer::util
