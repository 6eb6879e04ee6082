// This process's memory as the kernel sees it (/proc/self/status), for tests that bound what
// code keeps. Under AddressSanitizer these figures mean nothing (see sanitizer.hpp).
#pragma once

#include <malloc.h>

#include <fstream>
#include <string>

namespace tunnelkit::test {

// A "Vm...:" field of /proc/self/status in KiB, -1 if missing.
inline long ProcStatusKib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string key = field + ":";
  while (std::getline(status, line)) {
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(key.size()));
  }
  return -1;
}

// Resident memory (VmRSS) in KiB, after giving free heap pages back so that only memory in use
// counts.
inline long ResidentKib() {
  malloc_trim(0);
  return ProcStatusKib("VmRSS");
}

// Peak resident memory (VmHWM) in KiB; ResetPeakResident starts it afresh.
inline long PeakResidentKib() {
  return ProcStatusKib("VmHWM");
}
inline void ResetPeakResident() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

}  // namespace tunnelkit::test
