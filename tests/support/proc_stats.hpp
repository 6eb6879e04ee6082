// What a running process costs, read from /proc: resident memory, open descriptors, CPU time.
// Abuse and fault tests bound these for the server they attack.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace tunnelkit::test {

// VmRSS of /proc/PID/status in KiB; -1 when the process is gone or the field is missing.
std::int64_t RssKib(pid_t pid);

// Entries of /proc/PID/fd; -1 when the process is gone.
int OpenDescriptors(pid_t pid);

// User + system CPU time of the process in seconds (/proc/PID/stat); -1 when it is gone.
double CpuSeconds(pid_t pid);

}  // namespace tunnelkit::test
