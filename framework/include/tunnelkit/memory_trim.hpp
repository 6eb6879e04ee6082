// Gives freed heap memory back to the system shortly after traffic drops (a bulk transfer
// ended, a crowd of connections closed). glibc keeps freed chunks inside its heaps (and raises
// its mmap threshold after large frees), so a process that once moved a burst of data would
// otherwise stay at its peak resident size for every later idle connection.
#pragma once

#include <boost/asio/any_io_executor.hpp>

namespace tunnelkit {

// Once at start: glibc's automatic top-of-heap trim (whenever 128 KiB are free) makes a
// request-per-stream workload fault pages in and out on every exchange; with a 32 MiB
// threshold, ScheduleMemoryTrim does the giving back instead.
void TuneAllocator();

// Runs malloc_trim(0) on `executor` 200 ms from now, once however often it is called
// meanwhile (per thread).
void ScheduleMemoryTrim(const boost::asio::any_io_executor& executor);

}  // namespace tunnelkit
