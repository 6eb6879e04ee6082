// Writing to a socket whose peer has gone raises SIGPIPE unless the write passes MSG_NOSIGNAL.
// Asio's own sends do; OpenSSL's socket BIO (write(2)) and splice(2) cannot. A tunnel must see
// EPIPE instead of dying, so the code paths that write that way call this first.
#pragma once

namespace tunnelkit {

// Sets SIGPIPE to ignored, once per process (later calls do nothing).
void IgnoreBrokenPipeSignal();

}  // namespace tunnelkit
