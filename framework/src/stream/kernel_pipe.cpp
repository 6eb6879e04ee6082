#include "tunnelkit/stream/kernel_pipe.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tunnelkit/stream/sigpipe.hpp"

namespace tunnelkit {

namespace asio = boost::asio;

namespace {

KernelPipe::Move Result(ssize_t n) {
  if (n > 0) return {KernelPipe::Status::kMoved, static_cast<std::size_t>(n), 0};
  if (n == 0) return {KernelPipe::Status::kEnd, 0, 0};
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return {};
  return {KernelPipe::Status::kError, 0, errno};
}

}  // namespace

std::shared_ptr<KernelPipe> KernelPipe::Create() {
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
      new KernelPipe(fds[0], fds[1], static_cast<std::size_t>(granted)));
}

KernelPipe::KernelPipe(int read_fd, int write_fd, std::size_t capacity)
    : read_fd_(read_fd), write_fd_(write_fd), capacity_(capacity) {}

KernelPipe::~KernelPipe() {
  ::close(read_fd_);
  ::close(write_fd_);
}

KernelPipe::Move KernelPipe::FillFrom(int socket_fd, std::size_t max) {
  const ssize_t n =
      ::splice(socket_fd, nullptr, write_fd_, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
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
  const ssize_t n = ::write(write_fd_, data, size);
  Move m = Result(n);
  size_ += m.bytes;
  return m;
}

bool KernelPipe::Full() const {
  pollfd p{write_fd_, POLLOUT, 0};
  return ::poll(&p, 1, 0) == 0;
}

asio::awaitable<void> KernelPipe::WaitWritable() {
  // A descriptor object only for this wait: the pipe itself belongs to no io_context.
  asio::posix::stream_descriptor end(co_await asio::this_coro::executor, write_fd_);
  waiting_ = &end;
  boost::system::error_code ec;
  co_await end.async_wait(asio::posix::stream_descriptor::wait_write,
                          asio::redirect_error(asio::use_awaitable, ec));
  waiting_ = nullptr;
  end.release();  // the pipe keeps its descriptor
}

void KernelPipe::Cancel() {
  boost::system::error_code ec;
  if (waiting_) waiting_->cancel(ec);
}

asio::awaitable<boost::system::error_code> DrainExactly(KernelPipe& pipe,
                                                        asio::ip::tcp::socket& socket,
                                                        std::size_t size) {
  while (size > 0) {
    const KernelPipe::Move m = pipe.DrainTo(socket.native_handle(), size);
    if (m.status == KernelPipe::Status::kMoved) {
      size -= m.bytes;
      continue;
    }
    if (m.status == KernelPipe::Status::kError) {
      co_return boost::system::error_code(m.error, boost::system::system_category());
    }
    if (m.status == KernelPipe::Status::kEnd || pipe.size() == 0) {
      co_return asio::error::broken_pipe;  // fewer bytes in the pipe than promised
    }
    boost::system::error_code ec;
    co_await socket.async_wait(asio::ip::tcp::socket::wait_write,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return ec;
  }
  co_return boost::system::error_code{};
}

namespace {
constexpr std::size_t kPooledPipes = 16;
std::vector<std::shared_ptr<KernelPipe>>& FreePipes() {
  thread_local std::vector<std::shared_ptr<KernelPipe>> free;
  return free;
}
}  // namespace

std::shared_ptr<KernelPipe> BorrowPipe() {
  auto& free = FreePipes();
  if (free.empty()) return KernelPipe::Create();
  auto pipe = std::move(free.back());
  free.pop_back();
  return pipe;
}

void ReturnPipe(std::shared_ptr<KernelPipe> pipe) {
  auto& free = FreePipes();
  if (pipe && pipe->size() == 0 && free.size() < kPooledPipes) free.push_back(std::move(pipe));
}

}  // namespace tunnelkit
