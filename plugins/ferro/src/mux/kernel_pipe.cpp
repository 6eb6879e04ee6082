#include "mux/kernel_pipe.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tunnelkit/stream/sigpipe.hpp"

namespace tunnelkit::ferro {

namespace asio = boost::asio;

namespace {

KernelPipe::Move Result(ssize_t n) {
  if (n > 0) return {KernelPipe::Status::kMoved, static_cast<std::size_t>(n), 0};
  if (n == 0) return {KernelPipe::Status::kEnd, 0, 0};
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return {};
  return {KernelPipe::Status::kError, 0, errno};
}

}  // namespace

std::shared_ptr<KernelPipe> KernelPipe::Create(const asio::any_io_executor& executor) {
  IgnoreBrokenPipeSignal();  // splice() into a socket whose peer is gone
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return nullptr;
  int granted = ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(kWantedCapacity));
  if (granted < 0) granted = ::fcntl(fds[1], F_GETPIPE_SZ);
  if (granted <= 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return nullptr;
  }
  return std::shared_ptr<KernelPipe>(
      new KernelPipe(executor, fds[0], fds[1], static_cast<std::size_t>(granted)));
}

KernelPipe::KernelPipe(const asio::any_io_executor& executor, int read_fd, int write_fd,
                       std::size_t capacity)
    : read_fd_(read_fd), write_end_(executor, write_fd), capacity_(capacity) {}

KernelPipe::~KernelPipe() {
  ::close(read_fd_);
}

KernelPipe::Move KernelPipe::FillFrom(int socket_fd, std::size_t max) {
  const ssize_t n = ::splice(socket_fd, nullptr, write_end_.native_handle(), nullptr, max,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  Move m = Result(n);
  size_ += m.bytes;
  return m;
}

KernelPipe::Move KernelPipe::DrainTo(int socket_fd, std::size_t max) {
  if (max > size_) max = size_;
  if (max == 0) return {};
  const ssize_t n =
      ::splice(read_fd_, nullptr, socket_fd, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  Move m = Result(n);
  size_ -= m.bytes;
  return m;
}

KernelPipe::Move KernelPipe::Write(const std::uint8_t* data, std::size_t size) {
  const ssize_t n = ::write(write_end_.native_handle(), data, size);
  Move m = Result(n);
  size_ += m.bytes;
  return m;
}

bool KernelPipe::Full() const {
  pollfd p{const_cast<asio::posix::stream_descriptor&>(write_end_).native_handle(), POLLOUT, 0};
  return ::poll(&p, 1, 0) == 0;
}

asio::awaitable<void> KernelPipe::WaitWritable() {
  boost::system::error_code ec;
  co_await write_end_.async_wait(asio::posix::stream_descriptor::wait_write,
                                 asio::redirect_error(asio::use_awaitable, ec));
}

void KernelPipe::Cancel() {
  boost::system::error_code ec;
  write_end_.cancel(ec);
}

}  // namespace tunnelkit::ferro
