#include "tunnelkit/buffer_pool.hpp"

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace tunnelkit {
namespace {

TEST(BufferPoolTest, ChunksAreRecycledUpToTheFreeListBound) {
  auto pool = BufferPool::Create(1024, 2);
  {
    std::vector<Chunk> chunks;
    for (int i = 0; i < 5; ++i) chunks.push_back(pool->Acquire());
    EXPECT_EQ(pool->chunks_in_use(), 5u);
    EXPECT_EQ(pool->allocations(), 5u);
  }
  // Only two of the five were kept.
  EXPECT_EQ(pool->chunks_in_use(), 0u);
  EXPECT_EQ(pool->free_chunks(), 2u);
  Chunk a = pool->Acquire();
  Chunk b = pool->Acquire();
  EXPECT_EQ(pool->allocations(), 5u);  // both recycled
  Chunk c = pool->Acquire();
  EXPECT_EQ(pool->allocations(), 6u);
}

TEST(BufferPoolTest, ChunkCursorsTrackReadableAndWritableBytes) {
  auto pool = BufferPool::Create(8, 4);
  Chunk chunk = pool->Acquire();
  EXPECT_EQ(chunk.capacity(), 8u);
  EXPECT_TRUE(chunk.empty());
  const std::string text = "hello world";
  const std::size_t n =
      chunk.Append(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  EXPECT_EQ(n, 8u);  // only what fits
  EXPECT_EQ(chunk.writable().size(), 0u);
  chunk.Consume(6);
  ASSERT_EQ(chunk.size(), 2u);
  EXPECT_EQ(std::memcmp(chunk.readable().data(), "wo", 2), 0);
  chunk.Clear();
  EXPECT_EQ(chunk.writable().size(), 8u);
}

TEST(BufferPoolTest, RecycledChunksComeBackCleared) {
  auto pool = BufferPool::Create(16, 1);
  {
    Chunk chunk = pool->Acquire();
    const std::uint8_t bytes[4] = {1, 2, 3, 4};
    chunk.Append(bytes);
  }
  Chunk again = pool->Acquire();
  EXPECT_TRUE(again.empty());
  EXPECT_EQ(again.writable().size(), 16u);
}

TEST(BufferPoolTest, ChunksKeepThePoolAlive) {
  Chunk survivor;
  {
    auto pool = BufferPool::Create(32, 1);
    survivor = pool->Acquire();
  }
  const std::uint8_t bytes[3] = {9, 9, 9};
  EXPECT_EQ(survivor.Append(bytes), 3u);
  survivor = Chunk();  // returns to the pool, which then goes away (ASan checks the rest)
  EXPECT_FALSE(survivor);
}

TEST(BufferPoolTest, MovedFromChunkIsEmpty) {
  auto pool = BufferPool::Create(32, 1);
  Chunk a = pool->Acquire();
  Chunk b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_TRUE(b);
  EXPECT_EQ(pool->chunks_in_use(), 1u);
}

TEST(BufferPoolTest, ThreadPoolIsOnePerSizeAndThread) {
  BufferPool& a = ThreadBufferPool(3000, 2);
  EXPECT_EQ(&ThreadBufferPool(3000), &a);  // the same pool again, first caller's max_free
  EXPECT_EQ(a.max_free(), 2u);
  BufferPool& b = ThreadBufferPool(5000);
  EXPECT_NE(&a, &b);
  EXPECT_EQ(b.chunk_size(), 5000u);
  {
    // Recycled: the second chunk reuses the first one's storage instead of allocating.
    Chunk first = a.Acquire();
    EXPECT_EQ(first.capacity(), 3000u);
  }
  const std::size_t allocations = a.allocations();
  Chunk second = a.Acquire();
  EXPECT_EQ(a.allocations(), allocations);
  const BufferPool* other_thread = nullptr;
  std::thread([&] { other_thread = &ThreadBufferPool(3000); }).join();
  EXPECT_NE(other_thread, &a);  // pools take no locks: each thread has its own
}

TEST(BufferPoolTest, ZeroChunkSizeIsRefused) {
  EXPECT_THROW(BufferPool::Create(0, 1), std::invalid_argument);
}

}  // namespace
}  // namespace tunnelkit
