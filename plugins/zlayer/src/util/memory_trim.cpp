#include "util/memory_trim.hpp"

#include <malloc.h>

#include <chrono>
#include <memory>

#include <boost/asio/steady_timer.hpp>

namespace tunnelkit::zlayer::util {

namespace {

constexpr std::uint64_t kBulkBytes = 4 * 1024 * 1024;
constexpr int kChurnPerTrim = 64;

}  // namespace

void TuneAllocator() {
  mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
}

namespace {

void ScheduleTrim(const boost::asio::any_io_executor& executor) {
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

}  // namespace

void NoteClosed(const boost::asio::any_io_executor& executor, std::uint64_t bytes) {
  thread_local int closes = 0;
  if (bytes < kBulkBytes && ++closes < kChurnPerTrim) return;
  closes = 0;
  ScheduleTrim(executor);
}

void NoteOpened(const boost::asio::any_io_executor& executor) {
  thread_local int opens = 0;
  if (++opens < kChurnPerTrim) return;
  opens = 0;
  ScheduleTrim(executor);
}

}  // namespace tunnelkit::zlayer::util
