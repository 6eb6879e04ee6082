// Gives freed heap memory back to the system shortly after a bulk transfer ends. glibc keeps
// freed chunks inside the heap (and raises its mmap threshold after large frees), so a process
// that once moved a burst of data would otherwise stay at its peak resident size with every
// later idle connection.
#pragma once

#include <boost/asio/any_io_executor.hpp>

namespace tunnelkit::ferro {

// Called once when the backend starts: glibc's automatic trimming (whenever 128 KiB at the top
// of the heap are free) makes a request-per-stream workload fault fresh pages in and out on
// every exchange; with a larger threshold, ScheduleMemoryTrim does the giving back instead.
void TuneAllocator();

// Runs malloc_trim(0) on `executor` 200 ms from now, once however often it is called
// meanwhile.
void ScheduleMemoryTrim(const boost::asio::any_io_executor& executor);

}  // namespace tunnelkit::ferro
