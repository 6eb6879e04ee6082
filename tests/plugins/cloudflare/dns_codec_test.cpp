#include "tunnelkit/cloudflare/wire/dns/dns_codec.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace tunnelkit::cloudflare::dns {
namespace {

using Bytes = std::vector<std::uint8_t>;

// Header: id 0x1234, QR|RD|RA, 1 question, `answers` answers.
Bytes Header(std::uint16_t answers, std::uint8_t rcode = 0, std::uint16_t id = 0x1234) {
  return {static_cast<std::uint8_t>(id >> 8),
          static_cast<std::uint8_t>(id),
          0x81,
          static_cast<std::uint8_t>(0x80 | rcode),
          0,
          1,
          0,
          static_cast<std::uint8_t>(answers),
          0,
          0,
          0,
          0};
}

void Append(Bytes& out, std::initializer_list<std::uint8_t> bytes) {
  out.insert(out.end(), bytes);
}

// Question at offset 12: _srv.example.com SRV IN.
Bytes SrvResponse() {
  Bytes m = Header(2);
  Append(m, {4,   '_', 's', 'r', 'v', 7,   'e', 'x', 'a', 'm', 'p',
             'l', 'e', 3,   'c', 'o', 'm', 0,   0,   33,  0,   1});
  // Answer 1: name = pointer to 12; SRV 1 0 7844 region1.<ptr to "example.com" at 17>
  Append(m, {0xc0, 12, 0,    33,   0, 1,   0,   0,   0,   60,  0,   16,  0,    1,
             0,    0,  0x1e, 0xa4, 7, 'r', 'e', 'g', 'i', 'o', 'n', '1', 0xc0, 17});
  // Answer 2: SRV 2 5 7844 region2.example.com (uncompressed target).
  Append(m, {0xc0, 12,  0,   33,   0,    1,   0,   0,   0,   60,  0,   27,  0,
             2,    0,   5,   0x1e, 0xa4, 7,   'r', 'e', 'g', 'i', 'o', 'n', '2',
             7,    'e', 'x', 'a',  'm',  'p', 'l', 'e', 3,   'c', 'o', 'm', 0});
  return m;
}

TEST(DnsCodec, EncodesSrvQuery) {
  Bytes q = EncodeQuery(0xbeef, "_srv.example.com.", RecordType::kSrv);
  Bytes expected = {0xbe, 0xef, 0x01, 0x00, 0,   1, 0,   0,   0,   0,   0,   0,
                    4,    '_',  's',  'r',  'v', 7, 'e', 'x', 'a', 'm', 'p', 'l',
                    'e',  3,    'c',  'o',  'm', 0, 0,   33,  0,   1};
  EXPECT_EQ(q, expected);
  Bytes a = EncodeQuery(1, "a.b", RecordType::kAaaa);
  EXPECT_EQ(a[a.size() - 3], 28);
}

TEST(DnsCodec, RejectsBadQueryNames) {
  EXPECT_THROW(EncodeQuery(1, "", RecordType::kA), std::invalid_argument);
  EXPECT_THROW(EncodeQuery(1, "a..b", RecordType::kA), std::invalid_argument);
  EXPECT_THROW(EncodeQuery(1, std::string(64, 'x') + ".com", RecordType::kA),
               std::invalid_argument);
  std::string long_name;
  for (int i = 0; i < 5; ++i) long_name += std::string(60, 'x') + ".";
  EXPECT_THROW(EncodeQuery(1, long_name, RecordType::kA), std::invalid_argument);
}

TEST(DnsCodec, DecodesSrvWithCompression) {
  auto r = DecodeResponse(SrvResponse(), 0x1234);
  ASSERT_TRUE(r) << r.message();
  ASSERT_EQ(r->srv.size(), 2u);
  EXPECT_EQ(r->srv[0], (SrvRecord{1, 0, 7844, "region1.example.com"}));
  EXPECT_EQ(r->srv[1], (SrvRecord{2, 5, 7844, "region2.example.com"}));
}

TEST(DnsCodec, DecodesAAndAaaaAndSkipsCname) {
  Bytes m = Header(3);
  Append(m, {1, 'h', 0, 0, 1, 0, 1});
  Append(m, {0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 1, 0, 2, 0xc0, 12});  // CNAME, skipped
  Append(m, {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 198, 41, 192, 7});
  Append(m, {0xc0, 12, 0, 28,   0, 1, 0, 0, 0, 1, 0, 16, 0x26, 0x06,
             0x47, 0,  0, 0xa8, 0, 0, 0, 0, 0, 0, 0, 0,  0,    1});
  auto r = DecodeResponse(m, 0x1234);
  ASSERT_TRUE(r) << r.message();
  ASSERT_EQ(r->a.size(), 1u);
  EXPECT_EQ(r->a[0], (std::array<std::uint8_t, 4>{198, 41, 192, 7}));
  ASSERT_EQ(r->aaaa.size(), 1u);
  EXPECT_EQ(r->aaaa[0][0], 0x26);
  EXPECT_EQ(r->aaaa[0][15], 1);
}

TEST(DnsCodec, ChecksIdQrAndRcode) {
  auto wrong_id = DecodeResponse(SrvResponse(), 0x4321);
  ASSERT_FALSE(wrong_id);
  EXPECT_NE(wrong_id.message().find("does not match query id"), std::string::npos);
  Bytes nx = Header(0, 3);
  Append(nx, {1, 'h', 0, 0, 1, 0, 1});
  auto r = DecodeResponse(nx, 0x1234);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.kind(), ErrorKind::kNotFound);
  EXPECT_EQ(r.message(), "DNS server answered NXDOMAIN");
  Bytes query = EncodeQuery(0x1234, "h", RecordType::kA);
  auto q = DecodeResponse(query, 0x1234);
  ASSERT_FALSE(q);
  EXPECT_NE(q.message().find("QR bit clear"), std::string::npos);
}

TEST(DnsCodec, RejectsEveryTruncation) {
  Bytes full = SrvResponse();
  for (std::size_t n = 0; n < full.size(); ++n) {
    auto r = DecodeResponse(std::span(full.data(), n), 0x1234);
    ASSERT_FALSE(r) << "prefix " << n;
    EXPECT_FALSE(r.message().empty());
  }
}

TEST(DnsCodec, RejectsForwardAndSelfPointers) {
  Bytes self = Header(0);
  Append(self, {0xc0, 12, 0, 1, 0, 1});
  auto r = DecodeResponse(self, 0x1234);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("does not point backwards"), std::string::npos);
  Bytes forward = Header(0);
  Append(forward, {0xc0, 14, 1, 'a', 0, 0, 1, 0, 1});
  EXPECT_FALSE(DecodeResponse(forward, 0x1234));
  // A loop via two pointers: 12 -> 14 is forward, so rejected; 14 -> 12 -> (label) is fine.
  Bytes back = Header(1);
  Append(back, {1, 'a', 0, 0, 1, 0, 1});
  Append(back, {1, 'b', 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4});
  auto ok = DecodeResponse(back, 0x1234);
  ASSERT_TRUE(ok) << ok.message();
  auto name = ReadName(back, 19);
  ASSERT_TRUE(name) << name.message();
  EXPECT_EQ(name->text, "b.a");
  EXPECT_EQ(name->next, 23u);
}

TEST(DnsCodec, RejectsLimits) {
  Bytes many = Header(0);
  many[5] = 9;  // 9 questions
  EXPECT_NE(DecodeResponse(many, 0x1234).message().find("questions"), std::string::npos);
  EXPECT_EQ(DecodeResponse(many, 0x1234).kind(), ErrorKind::kTooLarge);
  Bytes big(70000, 0);
  EXPECT_NE(DecodeResponse(big, 0x1234).message().find("over 65535"), std::string::npos);
  Bytes label_type = Header(0);
  Append(label_type, {0x40, 0, 0, 1, 0, 1});
  EXPECT_NE(DecodeResponse(label_type, 0x1234).message().find("unsupported label"),
            std::string::npos);
  EXPECT_EQ(DecodeResponse(label_type, 0x1234).kind(), ErrorKind::kInvalid);
  // A name over 255 bytes: five 60-byte labels.
  Bytes long_name = Header(0);
  for (int i = 0; i < 5; ++i) {
    long_name.push_back(60);
    long_name.insert(long_name.end(), 60, 'x');
  }
  Append(long_name, {0, 0, 1, 0, 1});
  EXPECT_NE(DecodeResponse(long_name, 0x1234).message().find("over 255"), std::string::npos);
  EXPECT_EQ(DecodeResponse(long_name, 0x1234).kind(), ErrorKind::kTooLarge);
  Bytes bad_a = Header(1);
  Append(bad_a, {1, 'h', 0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 3, 1, 2, 3});
  EXPECT_NE(DecodeResponse(bad_a, 0x1234).message().find("A record with 3 bytes"),
            std::string::npos);
}

}  // namespace
}  // namespace tunnelkit::cloudflare::dns
