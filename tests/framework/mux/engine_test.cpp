// MuxEngine without any I/O: two engines exchange encoded batches directly.
#include "tunnelkit/mux/engine.hpp"

#include <gtest/gtest.h>

#include "test_codec.hpp"

namespace tunnelkit::mux::test {
namespace {

struct RecordingObserver final : EngineObserver {
  void OnOutputReady() override { ++output_ready; }
  void OnIncomingStream() override { ++incoming; }
  void OnReadResumable() override { ++resumed; }
  void OnControl(const Frame& frame) override { controls.emplace_back(frame.text()); }
  int output_ready = 0;
  int incoming = 0;
  int resumed = 0;
  std::vector<std::string> controls;
};

struct CountingWaiter final : StreamWaiter {
  void WakeReader() override { ++reader; }
  void WakeWriter() override { ++writer; }
  int reader = 0;
  int writer = 0;
};

struct Side {
  Side(MuxConfig config, bool window_updates = true) : codec(window_updates) {
    engine = std::make_unique<MuxEngine>(config, codec, observer);
  }
  TestCodec codec;
  RecordingObserver observer;
  std::unique_ptr<MuxEngine> engine;
};

struct Decoded {
  FrameKind kind;
  StreamId id;
  std::size_t size;
  std::uint32_t value;
};

// Encodes one batch from `from` and applies it to `to`; returns what crossed.
std::vector<Decoded> Pump(Side& from, Side& to) {
  std::vector<std::uint8_t> wire;
  EXPECT_TRUE(from.engine->FillBatch(wire));
  std::vector<Decoded> frames;
  TestCodec codec;
  std::span<const std::uint8_t> rest(wire);
  while (!rest.empty()) {
    DecodeResult r = codec.Decode(rest);
    EXPECT_EQ(r.status, DecodeResult::Status::kFrame);
    if (r.status != DecodeResult::Status::kFrame) break;
    frames.push_back({r.frame.kind, r.frame.stream_id, r.frame.payload.size(),
                      r.frame.kind == FrameKind::kReset ? r.frame.code : r.frame.credit});
    EXPECT_TRUE(to.engine->OnFrame(r.frame)) << to.engine->failure();
    rest = rest.subspan(r.consumed);
  }
  return frames;
}

MuxConfig Odd() {
  MuxConfig c;
  c.local_ids = IdParity::kOdd;
  return c;
}
MuxConfig Even() {
  MuxConfig c;
  c.local_ids = IdParity::kEven;
  return c;
}

std::span<const std::uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TEST(MuxEngineTest, WriterDrainsHigherPrioritiesFirstAndKeepsFifoWithinOne) {
  Side a(Odd()), b(Even());
  std::string error;
  auto low = a.engine->Open(Priority::kLow, {}, &error);
  auto normal1 = a.engine->Open(Priority::kNormal, {}, &error);
  auto high = a.engine->Open(Priority::kHigh, {}, &error);
  auto normal2 = a.engine->Open(Priority::kNormal, {}, &error);
  a.engine->Write(*low, Bytes("low"));
  a.engine->Write(*normal1, Bytes("n1"));
  a.engine->Write(*high, Bytes("high"));
  a.engine->Write(*normal2, Bytes("n2"));
  a.engine->SendControl(Bytes("heartbeat"), Priority::kCritical);
  auto frames = Pump(a, b);
  std::vector<std::pair<FrameKind, StreamId>> order;
  for (const auto& f : frames) order.emplace_back(f.kind, f.id);
  const std::vector<std::pair<FrameKind, StreamId>> expected{
      {FrameKind::kControl, 0},                                       // critical
      {FrameKind::kOpen, high->id},    {FrameKind::kData, high->id},  // high
      {FrameKind::kOpen, normal1->id}, {FrameKind::kOpen, normal2->id},
      {FrameKind::kData, normal1->id}, {FrameKind::kData, normal2->id},  // normal, FIFO
      {FrameKind::kOpen, low->id},     {FrameKind::kData, low->id},      // low
  };
  EXPECT_EQ(order, expected);
  EXPECT_EQ(b.observer.controls, std::vector<std::string>{"heartbeat"});
  EXPECT_EQ(b.engine->pending_incoming(), 4u);
}

TEST(MuxEngineTest, BatchesAreBoundedInFramesAndBytes) {
  MuxConfig config = Odd();
  config.max_batch_frames = 10;
  Side a(config), b(Even());
  std::string error;
  for (int i = 0; i < 25; ++i) a.engine->Open(Priority::kNormal, {}, &error);
  EXPECT_EQ(Pump(a, b).size(), 10u);
  EXPECT_EQ(Pump(a, b).size(), 10u);
  EXPECT_EQ(Pump(a, b).size(), 5u);
  EXPECT_FALSE(a.engine->HasOutput());

  MuxConfig bytes_config = Odd();
  bytes_config.max_batch_bytes = 100 * 1024;
  bytes_config.chunk_size = 16 * 1024;
  Side c(bytes_config), d(Even());
  auto stream = c.engine->Open(Priority::kNormal, {}, &error);
  std::vector<std::uint8_t> big(240 * 1024, 1);
  EXPECT_EQ(c.engine->Write(*stream, big), big.size());
  std::size_t first = 0;
  for (const auto& f : Pump(c, d)) first += f.size;
  EXPECT_GE(first, 100u * 1024);
  EXPECT_LT(first, 100u * 1024 + 16 * 1024 + 1);  // at most one frame past the bound
}

TEST(MuxEngineTest, SmallWritesCoalesceIntoOneDataFrame) {
  Side a(Odd()), b(Even());
  std::string error;
  auto stream = a.engine->Open(Priority::kNormal, {}, &error);
  for (int i = 0; i < 100; ++i) a.engine->Write(*stream, Bytes("0123456789"));
  auto frames = Pump(a, b);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[1].kind, FrameKind::kData);
  EXPECT_EQ(frames[1].size, 1000u);
  // Data frames never exceed the chunk size / codec maximum.
  std::vector<std::uint8_t> big(100 * 1024, 2);
  a.engine->Write(*stream, big);
  for (const auto& f : Pump(a, b)) EXPECT_LE(f.size, a.engine->max_data_payload());
}

TEST(MuxEngineTest, CreditLimitsTheSenderAndReadsReturnIt) {
  Side a(Odd()), b(Even());
  std::string error;
  auto stream = a.engine->Open(Priority::kNormal, {}, &error);
  auto waiter = std::make_shared<CountingWaiter>();
  stream->waiter = waiter;
  std::vector<std::uint8_t> mib(1024 * 1024, 3);
  EXPECT_EQ(a.engine->Write(*stream, mib), kInitialStreamWindow);
  EXPECT_EQ(a.engine->Write(*stream, mib), 0u);  // out of credit
  Pump(a, b);
  auto peer = b.engine->PopIncoming();
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->recv_bytes, kInitialStreamWindow);
  EXPECT_EQ(b.engine->ReceiveBufferedBytes(), kInitialStreamWindow);

  std::vector<std::uint8_t> out(kInitialStreamWindow / 8);
  EXPECT_EQ(b.engine->Read(*peer, out), out.size());
  EXPECT_FALSE(b.engine->HasOutput());  // below the quarter-window threshold: no update yet
  EXPECT_EQ(b.engine->Read(*peer, out), out.size());
  ASSERT_TRUE(b.engine->HasOutput());
  auto updates = Pump(b, a);
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(updates[0].kind, FrameKind::kWindowUpdate);
  EXPECT_EQ(updates[0].value, kInitialStreamWindow / 4);
  EXPECT_EQ(waiter->writer, 1);  // the blocked writer was woken
  EXPECT_EQ(a.engine->Write(*stream, mib), kInitialStreamWindow / 4);
}

TEST(MuxEngineTest, SendQueueBoundSuspendsWritersAndWakesThemWhenDrained) {
  MuxConfig config = Odd();
  config.wire_flow_control = false;
  config.max_send_queued = 64 * 1024;
  Side a(config, false), b(Even(), false);
  std::string error;
  auto stream = a.engine->Open(Priority::kNormal, {}, &error);
  auto waiter = std::make_shared<CountingWaiter>();
  stream->waiter = waiter;
  std::vector<std::uint8_t> big(200 * 1024, 4);
  EXPECT_EQ(a.engine->Write(*stream, big), 64u * 1024);
  EXPECT_EQ(a.engine->SendQueuedBytes(), 64u * 1024);
  EXPECT_EQ(a.engine->Write(*stream, big), 0u);
  Pump(a, b);
  EXPECT_EQ(a.engine->SendQueuedBytes(), 0u);
  EXPECT_EQ(waiter->writer, 1);
}

TEST(MuxEngineTest, WithoutCreditAFullStreamPausesTheReader) {
  MuxConfig config = Even();
  config.wire_flow_control = false;
  config.stream_window = 64 * 1024;
  Side a(Odd(), false), b(config, false);
  std::string error;
  auto stream = a.engine->Open(Priority::kNormal, {}, &error);
  std::vector<std::uint8_t> data(100 * 1024, 5);
  EXPECT_EQ(a.engine->Write(*stream, data), data.size());  // no credit on this wire
  Pump(a, b);
  EXPECT_TRUE(b.engine->ReadPaused());
  auto peer = b.engine->PopIncoming();
  std::vector<std::uint8_t> out(50 * 1024);
  b.engine->Read(*peer, out);
  EXPECT_FALSE(b.engine->ReadPaused());
  EXPECT_EQ(b.observer.resumed, 1);
  EXPECT_FALSE(b.engine->HasOutput());  // never a WindowUpdate on this wire
}

TEST(MuxEngineTest, ResetBeforeTheOpenLeftSendsNothing) {
  Side a(Odd()), b(Even());
  std::string error;
  auto stream = a.engine->Open(Priority::kNormal, {}, &error);
  a.engine->Write(*stream, Bytes("doomed"));
  a.engine->Reset(*stream, 0, "never mind");
  EXPECT_FALSE(a.engine->HasOutput());
  EXPECT_EQ(a.engine->SendQueuedBytes(), 0u);
  EXPECT_TRUE(Pump(a, b).empty());
  EXPECT_EQ(a.engine->stream_count(), 0u);
}

TEST(MuxEngineTest, ResetDropsQueuedDataAndOvertakesIt) {
  MuxConfig config = Odd();
  Side a(config), b(Even());
  std::string error;
  auto stream = a.engine->Open(Priority::kLow, {}, &error);
  Pump(a, b);  // the Open is out
  std::vector<std::uint8_t> data(50 * 1024, 6);
  a.engine->Write(*stream, data);
  a.engine->Reset(*stream, 7, "abort");
  auto frames = Pump(a, b);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].kind, FrameKind::kReset);
  EXPECT_EQ(frames[0].value, 7u);
  EXPECT_EQ(b.engine->stream_count(), 0u);
}

TEST(MuxEngineTest, StreamLeavesTheTableWhenBothSidesClosed) {
  Side a(Odd()), b(Even());
  std::string error;
  auto stream = a.engine->Open(Priority::kNormal, {}, &error);
  a.engine->ShutdownWrite(*stream);
  Pump(a, b);
  auto peer = b.engine->PopIncoming();
  EXPECT_TRUE(peer->recv_fin);
  EXPECT_EQ(b.engine->stream_count(), 1u);  // b may still write
  b.engine->Write(*peer, Bytes("reply"));
  b.engine->ShutdownWrite(*peer);
  EXPECT_EQ(b.engine->stream_count(), 0u);
  Pump(b, a);
  EXPECT_EQ(a.engine->stream_count(), 0u);
  std::vector<std::uint8_t> out(16);
  EXPECT_EQ(a.engine->Read(*stream, out), 5u);  // data outlives the table entry
  EXPECT_TRUE(stream->recv_fin);
}

TEST(MuxEngineTest, ProtocolViolationsFailTheEngine) {
  {
    Side b(Even());
    Frame data;
    data.kind = FrameKind::kData;
    data.stream_id = 99;
    EXPECT_TRUE(b.engine->OnFrame(data));  // unknown stream: dropped
    Frame open;
    open.kind = FrameKind::kOpen;
    open.stream_id = 1;
    EXPECT_TRUE(b.engine->OnFrame(open));
    EXPECT_TRUE(b.engine->OnFrame(open));  // duplicate: ignored
    EXPECT_EQ(b.engine->pending_incoming(), 1u);
    Frame close;
    close.kind = FrameKind::kClose;
    close.stream_id = 1;
    EXPECT_TRUE(b.engine->OnFrame(close));
    data.stream_id = 1;
    EXPECT_FALSE(b.engine->OnFrame(data));
    EXPECT_EQ(b.engine->failure(), "data after close on stream 1");
  }
  {
    Side b(Even());
    Frame open;
    open.kind = FrameKind::kOpen;
    open.stream_id = 0;
    EXPECT_FALSE(b.engine->OnFrame(open));
    EXPECT_EQ(b.engine->failure(), "peer opened stream 0");
  }
  {
    Side b(Even());
    Frame open;
    open.kind = FrameKind::kOpen;
    open.stream_id = 1;
    b.engine->OnFrame(open);
    Frame update;
    update.kind = FrameKind::kWindowUpdate;
    update.stream_id = 1;
    update.credit = 0xFFFFFFFFu;
    for (int i = 0; i < 300 && !b.engine->failed(); ++i) b.engine->OnFrame(update);
    EXPECT_NE(b.engine->failure().find("overflows"), std::string::npos);
  }
}

TEST(MuxEngineTest, FailEndsEveryStreamAndEmptiesQueues) {
  Side a(Odd()), b(Even());
  std::string error;
  auto stream = a.engine->Open(Priority::kNormal, {}, &error);
  auto waiter = std::make_shared<CountingWaiter>();
  stream->waiter = waiter;
  a.engine->Write(*stream, Bytes("pending"));
  a.engine->Fail("transport gone");
  EXPECT_EQ(stream->error, StreamError::kSessionClosed);
  EXPECT_EQ(stream->error_reason, "transport gone");
  EXPECT_EQ(waiter->reader, 1);
  EXPECT_EQ(waiter->writer, 1);
  EXPECT_FALSE(a.engine->HasOutput());
  EXPECT_EQ(a.engine->BufferedBytes(), 0u);
  EXPECT_EQ(a.engine->Open(Priority::kNormal, {}, &error), nullptr);
  EXPECT_EQ(error, "session closed: transport gone");
}

TEST(MuxEngineTest, CodecWithoutResetClosesInstead) {
  struct NoResetCodec final : FrameCodec {
    std::string Encode(const Frame& frame, std::vector<std::uint8_t>& out) override {
      if (frame.kind == FrameKind::kReset) return "cannot";
      return inner.Encode(frame, out);
    }
    DecodeResult Decode(std::span<const std::uint8_t> in) override { return inner.Decode(in); }
    bool SupportsWindowUpdate() const override { return false; }
    bool SupportsReset() const override { return false; }
    std::size_t MaxDataPayload() const override { return 65536; }
    TestCodec inner;
  } codec;
  RecordingObserver observer;
  MuxEngine engine(Odd(), codec, observer);
  std::string error;
  auto stream = engine.Open(Priority::kNormal, {}, &error);
  std::vector<std::uint8_t> wire;
  engine.FillBatch(wire);
  engine.Reset(*stream, 0, "x");
  wire.clear();
  ASSERT_TRUE(engine.FillBatch(wire)) << engine.failure();
  TestCodec decoder;
  auto r = decoder.Decode(wire);
  ASSERT_EQ(r.status, DecodeResult::Status::kFrame);
  EXPECT_EQ(r.frame.kind, FrameKind::kClose);
}

}  // namespace
}  // namespace tunnelkit::mux::test
