#include "tunnelkit/memory_trim.hpp"

#include <malloc.h>

#include <chrono>
#include <memory>

#include <boost/asio/steady_timer.hpp>

namespace tunnelkit {

void TuneAllocator() {
  mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
}

void ScheduleMemoryTrim(const boost::asio::any_io_executor& executor) {
  thread_local bool pending = false;
  if (pending) return;
  pending = true;
  auto timer =
      std::make_shared<boost::asio::steady_timer>(executor, std::chrono::milliseconds(200));
  timer->async_wait([timer](const boost::system::error_code&) {
    pending = false;
    malloc_trim(0);
  });
}

}  // namespace tunnelkit
