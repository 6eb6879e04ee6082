// BufferPool: fixed-size byte chunks for the data path, recycled through a bounded free list so
// that steady-state forwarding does not hit the allocator for every frame.
//
// A pool belongs to one thread (one io_context): it takes no locks. Chunks keep their pool alive
// (they hold a shared_ptr), so a chunk may outlive every other user of the pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace tunnelkit {

class BufferPool;

// One chunk of `capacity()` bytes with a read cursor and a write cursor:
//   [0, begin) consumed | [begin, end) readable | [end, capacity) writable.
// Move-only; returns its storage to the pool when destroyed (if the free list has room).
class Chunk {
 public:
  Chunk() = default;
  ~Chunk() { Release(); }
  Chunk(Chunk&& other) noexcept { *this = std::move(other); }
  Chunk& operator=(Chunk&& other) noexcept;
  Chunk(const Chunk&) = delete;
  Chunk& operator=(const Chunk&) = delete;

  explicit operator bool() const { return storage_ != nullptr; }
  std::size_t capacity() const { return capacity_; }
  std::size_t size() const { return end_ - begin_; }  // readable bytes
  bool empty() const { return end_ == begin_; }

  std::span<const std::uint8_t> readable() const { return {storage_ + begin_, end_ - begin_}; }
  std::span<std::uint8_t> writable() { return {storage_ + end_, capacity_ - end_}; }
  // Marks n bytes of writable() as filled.
  void Commit(std::size_t n) { end_ += n; }
  // Drops n bytes from the front of readable().
  void Consume(std::size_t n) { begin_ += n; }
  // Forgets the contents (keeps the storage).
  void Clear() { begin_ = end_ = 0; }
  // Copies as much of `bytes` as fits; returns the count copied.
  std::size_t Append(std::span<const std::uint8_t> bytes);

 private:
  friend class BufferPool;
  void Release();

  std::shared_ptr<BufferPool> pool_;
  std::uint8_t* storage_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // chunk_size > 0; at most max_free idle chunks are kept, the rest go back to the allocator.
  static std::shared_ptr<BufferPool> Create(std::size_t chunk_size, std::size_t max_free);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A cleared chunk of chunk_size() bytes (recycled when possible).
  Chunk Acquire();

  std::size_t chunk_size() const { return chunk_size_; }
  std::size_t max_free() const { return max_free_; }
  std::size_t free_chunks() const { return free_.size(); }
  // Chunks handed out and not yet returned.
  std::size_t chunks_in_use() const { return in_use_; }
  // How many times Acquire had to allocate (the rest were recycled).
  std::size_t allocations() const { return allocations_; }

 private:
  BufferPool(std::size_t chunk_size, std::size_t max_free);
  friend class Chunk;
  void Return(std::uint8_t* storage);

  std::size_t chunk_size_;
  std::size_t max_free_;
  std::vector<std::uint8_t*> free_;
  std::size_t in_use_ = 0;
  std::size_t allocations_ = 0;
};

// This thread's pool of `chunk_size`-byte chunks, created on first use with room for
// `max_free` idle chunks (the first caller for a size sets it). For the data paths of an io
// thread: a direction borrows a chunk only while bytes move, so idle connections hold none.
BufferPool& ThreadBufferPool(std::size_t chunk_size, std::size_t max_free = 16);

}  // namespace tunnelkit
