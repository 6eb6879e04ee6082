#include "util/memory_trim.hpp"

#include "tunnelkit/memory_trim.hpp"

namespace tunnelkit::zlayer::util {

namespace {

constexpr std::uint64_t kBulkBytes = 4 * 1024 * 1024;
constexpr int kChurnPerTrim = 64;

}  // namespace

void NoteClosed(const boost::asio::any_io_executor& executor, std::uint64_t bytes) {
  thread_local int closes = 0;
  if (bytes < kBulkBytes && ++closes < kChurnPerTrim) return;
  closes = 0;
  ScheduleMemoryTrim(executor);
}

void NoteOpened(const boost::asio::any_io_executor& executor) {
  thread_local int opens = 0;
  if (++opens < kChurnPerTrim) return;
  opens = 0;
  ScheduleMemoryTrim(executor);
}

}  // namespace tunnelkit::zlayer::util
