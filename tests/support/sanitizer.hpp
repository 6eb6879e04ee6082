// Whether this test binary runs under AddressSanitizer, for tests that measure memory.
//
// ASan's allocator puts redzones around every block, keeps freed blocks in a quarantine and
// maps shadow memory, so resident and heap figures grow with everything the test does and
// measure nothing about the code. Such a test still runs its functional checks under ASan and
// skips only the memory bound, with this reason:
//   if (test::kAddressSanitizer) GTEST_SKIP() << test::kMemoryBoundUnderAsan;
#pragma once

namespace tunnelkit::test {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

inline constexpr const char* kMemoryBoundUnderAsan =
    "memory bound not checked under AddressSanitizer: its redzones, quarantine and shadow "
    "memory inflate resident and heap figures (the functional checks above did run)";

}  // namespace tunnelkit::test
