// Gives freed heap memory back to the system shortly after traffic drops (a bulk transfer
// ended, or many connections closed). glibc keeps freed chunks inside its heaps (one per
// thread here: the io_context's and libwebsockets'), so without this a process stays at its
// peak resident size, and later connections are carved out of already-touched pages.
#pragma once

#include <cstddef>
#include <cstdint>

#include <boost/asio/any_io_executor.hpp>

namespace tunnelkit::zlayer::util {

// (Once at start, the backend calls tunnelkit::TuneAllocator; these decide when to trim.)

// A data connection that carried `bytes` (both ways) closed: after a bulk one, or every
// 64 closes, malloc_trim(0) runs on `executor` 200 ms later (once however often asked).
void NoteClosed(const boost::asio::any_io_executor& executor, std::uint64_t bytes);

// A connection opened: every 64 opens, the same trim (the WebSocket handshakes of a crowd of
// new connections leave freed header buffers behind, mostly in libwebsockets' thread heap).
void NoteOpened(const boost::asio::any_io_executor& executor);

}  // namespace tunnelkit::zlayer::util
