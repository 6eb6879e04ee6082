#include "tunnelkit/buffer_pool.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace tunnelkit {

Chunk& Chunk::operator=(Chunk&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = std::move(other.pool_);
    storage_ = std::exchange(other.storage_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    begin_ = std::exchange(other.begin_, 0);
    end_ = std::exchange(other.end_, 0);
  }
  return *this;
}

std::size_t Chunk::Append(std::span<const std::uint8_t> bytes) {
  const std::size_t n = std::min(bytes.size(), capacity_ - end_);
  if (n > 0) {
    std::memcpy(storage_ + end_, bytes.data(), n);
    end_ += n;
  }
  return n;
}

void Chunk::Release() {
  if (storage_ != nullptr) {
    pool_->Return(storage_);
    storage_ = nullptr;
  }
  pool_.reset();
  capacity_ = begin_ = end_ = 0;
}

std::shared_ptr<BufferPool> BufferPool::Create(std::size_t chunk_size, std::size_t max_free) {
  if (chunk_size == 0) throw std::invalid_argument("BufferPool: chunk_size must be > 0");
  return std::shared_ptr<BufferPool>(new BufferPool(chunk_size, max_free));
}

BufferPool::BufferPool(std::size_t chunk_size, std::size_t max_free)
    : chunk_size_(chunk_size), max_free_(max_free) {
  free_.reserve(std::min<std::size_t>(max_free, 1024));
}

BufferPool::~BufferPool() {
  for (std::uint8_t* storage : free_) delete[] storage;
}

Chunk BufferPool::Acquire() {
  Chunk chunk;
  if (!free_.empty()) {
    chunk.storage_ = free_.back();
    free_.pop_back();
  } else {
    chunk.storage_ = new std::uint8_t[chunk_size_];
    ++allocations_;
  }
  chunk.pool_ = shared_from_this();
  chunk.capacity_ = chunk_size_;
  ++in_use_;
  return chunk;
}

void BufferPool::Return(std::uint8_t* storage) {
  --in_use_;
  if (free_.size() < max_free_) {
    free_.push_back(storage);
  } else {
    delete[] storage;
  }
}

BufferPool& ThreadBufferPool(std::size_t chunk_size, std::size_t max_free) {
  thread_local std::vector<std::shared_ptr<BufferPool>> pools;
  for (auto& pool : pools) {
    if (pool->chunk_size() == chunk_size) return *pool;
  }
  pools.push_back(BufferPool::Create(chunk_size, max_free));
  return *pools.back();
}

}  // namespace tunnelkit
