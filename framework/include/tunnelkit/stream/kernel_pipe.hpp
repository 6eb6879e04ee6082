// A pipe through which payload bytes move between two TCP sockets inside the kernel
// (splice(2)): a relay's bulk bytes then never pass through user space. A relay that reads and
// writes every byte costs two copies per hop; over loopback that bounded ferro plain at about a
// third of a direct connection (docs/benchmarks.md). Used by ferro (frames whose payload
// follows the header from a pipe) and zlayer (unmasked WebSocket payloads).
//
// Non-blocking throughout: every call returns at once and says whether it would block; callers
// wait on the socket (Asio) or on the pipe (WaitWritable).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

namespace tunnelkit {

class KernelPipe {
 public:
  enum class Status { kMoved, kEnd, kWouldBlock, kError };
  struct Move {
    Status status = Status::kWouldBlock;
    std::size_t bytes = 0;
    int error = 0;  // errno for kError
  };

  // Asks for this much room; the kernel may grant less (per-user pipe limits).
  static constexpr std::size_t kWantedCapacity = 1024 * 1024;

  // nullptr when no pipe can be made (descriptor limit): callers keep copying. A pipe is only
  // descriptors (no executor), so a pool may hand it to any io_context of the thread.
  static std::shared_ptr<KernelPipe> Create();
  ~KernelPipe();
  KernelPipe(const KernelPipe&) = delete;
  KernelPipe& operator=(const KernelPipe&) = delete;

  std::size_t size() const { return size_; }  // bytes in the pipe
  std::size_t capacity() const { return capacity_; }

  // Socket -> pipe, at most `max` bytes. kEnd: the socket's peer finished sending.
  Move FillFrom(int socket_fd, std::size_t max);
  // Pipe -> socket, at most `max` bytes (and at most size()).
  Move DrainTo(int socket_fd, std::size_t max);
  // Memory -> pipe (payload bytes that were already read into user space).
  Move Write(const std::uint8_t* data, std::size_t size);
  // True when a write into the pipe would block now (no free slot).
  bool Full() const;
  // Suspends (on the calling coroutine's executor) until the pipe can take more bytes, or
  // Cancel was called.
  boost::asio::awaitable<void> WaitWritable();
  void Cancel();

 private:
  KernelPipe(int read_fd, int write_fd, std::size_t capacity);

  int read_fd_;
  int write_fd_;
  std::size_t capacity_;
  boost::asio::posix::stream_descriptor* waiting_ = nullptr;  // during WaitWritable
  std::size_t size_ = 0;
};

// Moves exactly `size` bytes (at most pipe.size()) from `pipe` into `socket`, waiting while the
// socket is full. An error leaves the rest in the pipe.
boost::asio::awaitable<boost::system::error_code> DrainExactly(KernelPipe& pipe,
                                                               boost::asio::ip::tcp::socket& socket,
                                                               std::size_t size);

// A per-thread pool of empty pipes for code that borrows one per message: with thousands of
// idle connections none holds a pipe. nullptr when no pipe can be made. A pipe returned with
// bytes still in it (after an error) is closed rather than kept.
std::shared_ptr<KernelPipe> BorrowPipe();
void ReturnPipe(std::shared_ptr<KernelPipe> pipe);

}  // namespace tunnelkit
