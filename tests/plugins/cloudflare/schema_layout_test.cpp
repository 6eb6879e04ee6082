// The generated schemas must carry the IDs, ordinals and layouts of specs/cloudflare.md
// (sections 4.1-4.3 and 5.2): these decide what the edge sees on the wire.
#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "cloudflare/quic_metadata_protocol.capnp.h"
#include "cloudflare/tunnelrpc.capnp.h"

namespace {

namespace rpc = tunnelkit::cloudflare::rpc;

struct Layout {
  std::uint64_t id;
  unsigned data_words;
  unsigned pointers;
};

void ExpectStruct(capnp::StructSchema schema, Layout layout) {
  auto proto = schema.getProto();
  EXPECT_EQ(proto.getId(), layout.id) << proto.getDisplayName().cStr();
  EXPECT_EQ(proto.getStruct().getDataWordCount(), layout.data_words)
      << proto.getDisplayName().cStr();
  EXPECT_EQ(proto.getStruct().getPointerCount(), layout.pointers) << proto.getDisplayName().cStr();
}

// Offset of a field: pointer index for pointer fields, bit offset for data fields.
std::uint32_t Offset(capnp::StructSchema schema, const char* name) {
  return schema.getFieldByName(name).getProto().getSlot().getOffset();
}

TEST(CloudflareSchema, FileIds) {
  EXPECT_EQ(capnp::Schema::from<rpc::TunnelAuth>().getProto().getScopeId(), 0xdb8274f9144abc7eull);
  EXPECT_EQ(capnp::Schema::from<rpc::ConnectRequest>().getProto().getScopeId(),
            0xb29021ef7421cc32ull);
}

TEST(CloudflareSchema, RegistrationStructs) {
  ExpectStruct(capnp::Schema::from<rpc::TunnelAuth>(), {0x9496331ab9cd463full, 0, 2});
  ExpectStruct(capnp::Schema::from<rpc::ClientInfo>(), {0x83ced0145b2f114bull, 0, 4});
  ExpectStruct(capnp::Schema::from<rpc::ConnectionOptions>(), {0xb4bf9861fe035d04ull, 1, 2});
  ExpectStruct(capnp::Schema::from<rpc::ConnectionResponse>(), {0xdbaa9d03d52b62dcull, 1, 1});
  ExpectStruct(capnp::Schema::from<rpc::ConnectionError>(), {0xf5f383d2785edb86ull, 2, 1});
  ExpectStruct(capnp::Schema::from<rpc::ConnectionDetails>(), {0xb5f39f082b9ac18aull, 1, 2});
  ExpectStruct(capnp::Schema::from<rpc::RegisterUdpSessionResponse>(),
               {0xab6d5210c1f26687ull, 0, 2});
  ExpectStruct(capnp::Schema::from<rpc::UpdateConfigurationResponse>(),
               {0xdb58ff694ba05cf9ull, 1, 1});

  auto options = capnp::Schema::from<rpc::ConnectionOptions>();
  EXPECT_EQ(Offset(options, "client"), 0u);
  EXPECT_EQ(Offset(options, "originLocalIp"), 1u);
  EXPECT_EQ(Offset(options, "replaceExisting"), 0u);      // bit 0
  EXPECT_EQ(Offset(options, "compressionQuality"), 1u);   // byte 1 = bits [8,16)
  EXPECT_EQ(Offset(options, "numPreviousAttempts"), 2u);  // byte 2 = bits [16,24)

  auto client = capnp::Schema::from<rpc::ClientInfo>();
  EXPECT_EQ(Offset(client, "clientId"), 0u);
  EXPECT_EQ(Offset(client, "features"), 1u);
  EXPECT_EQ(Offset(client, "version"), 2u);
  EXPECT_EQ(Offset(client, "arch"), 3u);

  auto error = capnp::Schema::from<rpc::ConnectionError>();
  EXPECT_EQ(Offset(error, "cause"), 0u);
  EXPECT_EQ(Offset(error, "retryAfter"), 0u);    // 64-bit unit 0
  EXPECT_EQ(Offset(error, "shouldRetry"), 64u);  // bit 64

  auto details = capnp::Schema::from<rpc::ConnectionDetails>();
  EXPECT_EQ(Offset(details, "uuid"), 0u);
  EXPECT_EQ(Offset(details, "locationName"), 1u);
  EXPECT_EQ(Offset(details, "tunnelIsRemotelyManaged"), 0u);
}

TEST(CloudflareSchema, ConnectionResponseUnion) {
  auto response = capnp::Schema::from<rpc::ConnectionResponse>();
  auto group = response.getFieldByName("result").getType().asStruct();
  EXPECT_EQ(group.getProto().getId(), 0x97b3c5c260257622ull);
  EXPECT_EQ(group.getProto().getStruct().getDiscriminantOffset(), 0u);
  EXPECT_EQ(group.getFieldByName("error").getProto().getDiscriminantValue(), 0u);
  EXPECT_EQ(group.getFieldByName("connectionDetails").getProto().getDiscriminantValue(), 1u);
  EXPECT_EQ(Offset(group, "error"), 0u);
  EXPECT_EQ(Offset(group, "connectionDetails"), 0u);
}

struct MethodIds {
  const char* name;
  unsigned ordinal;
  std::uint64_t params;
  std::uint64_t results;
};

TEST(CloudflareSchema, RegistrationServerMethods) {
  auto server = capnp::Schema::from<rpc::RegistrationServer>();
  EXPECT_EQ(server.getProto().getId(), 0xf71695ec7fe85497ull);
  const MethodIds methods[] = {
      {"registerConnection", 0, 0xe6646dec8feaa6eeull, 0xea50d822450d1f17ull},
      {"unregisterConnection", 1, 0xf9cb7f4431a307d0ull, 0xb046e578094b1eadull},
      {"updateLocalConfiguration", 2, 0xc5d6e311876a3604ull, 0xe5ceae5d6897d7beull},
  };
  for (const auto& m : methods) {
    auto method = server.getMethodByName(m.name);
    EXPECT_EQ(method.getOrdinal(), m.ordinal) << m.name;
    EXPECT_EQ(method.getParamType().getProto().getId(), m.params) << m.name;
    EXPECT_EQ(method.getResultType().getProto().getId(), m.results) << m.name;
  }
  auto params = server.getMethodByName("registerConnection").getParamType();
  EXPECT_EQ(params.getProto().getStruct().getDataWordCount(), 1u);
  EXPECT_EQ(params.getProto().getStruct().getPointerCount(), 3u);
  EXPECT_EQ(Offset(params, "auth"), 0u);
  EXPECT_EQ(Offset(params, "tunnelId"), 1u);
  EXPECT_EQ(Offset(params, "connIndex"), 0u);
  EXPECT_EQ(Offset(params, "options"), 2u);
}

TEST(CloudflareSchema, EdgeRpcInterfaces) {
  auto sessions = capnp::Schema::from<rpc::SessionManager>();
  EXPECT_EQ(sessions.getProto().getId(), 0x839445a59fb01686ull);
  auto reg = sessions.getMethodByName("registerUdpSession");
  EXPECT_EQ(reg.getParamType().getProto().getId(), 0x904e297b87fbeceaull);
  EXPECT_EQ(reg.getResultType().getProto().getId(), 0x8635c6b4f45bf5cdull);
  auto unreg = sessions.getMethodByName("unregisterUdpSession");
  EXPECT_EQ(unreg.getParamType().getProto().getId(), 0x96b74375ce9b0ef6ull);
  EXPECT_EQ(unreg.getResultType().getProto().getId(), 0xf24ec4ab5891b676ull);
  auto config = capnp::Schema::from<rpc::ConfigurationManager>();
  EXPECT_EQ(config.getProto().getId(), 0xb48edfbdaa25db04ull);
  auto update = config.getMethodByName("updateConfiguration");
  EXPECT_EQ(update.getParamType().getProto().getId(), 0xb177ca2526a3ca76ull);
  EXPECT_EQ(update.getResultType().getProto().getId(), 0x958096448eb3373eull);
  auto server = capnp::Schema::from<rpc::CloudflaredServer>();
  EXPECT_EQ(server.getProto().getId(), 0xf548cef9dea2a4a1ull);
  auto supers = server.getSuperclasses();
  ASSERT_EQ(supers.size(), 2u);
  EXPECT_EQ(supers[0].getProto().getId(), 0x839445a59fb01686ull);
  EXPECT_EQ(supers[1].getProto().getId(), 0xb48edfbdaa25db04ull);
}

TEST(CloudflareSchema, MetadataStructs) {
  ExpectStruct(capnp::Schema::from<rpc::ConnectRequest>(), {0xc47116a1045e4061ull, 1, 2});
  ExpectStruct(capnp::Schema::from<rpc::Metadata>(), {0xe1446b97bfd1cd37ull, 0, 2});
  ExpectStruct(capnp::Schema::from<rpc::ConnectResponse>(), {0xb1032ec91cef8727ull, 0, 2});
  auto request = capnp::Schema::from<rpc::ConnectRequest>();
  EXPECT_EQ(Offset(request, "dest"), 0u);
  EXPECT_EQ(Offset(request, "type"), 0u);  // 16-bit unit 0
  EXPECT_EQ(Offset(request, "metadata"), 1u);
  auto type = capnp::Schema::from<rpc::ConnectionType>();
  EXPECT_EQ(type.getProto().getId(), 0xc52e1bac26d379c8ull);
  EXPECT_EQ(type.getEnumerantByName("http").getOrdinal(), 0u);
  EXPECT_EQ(type.getEnumerantByName("websocket").getOrdinal(), 1u);
  EXPECT_EQ(type.getEnumerantByName("tcp").getOrdinal(), 2u);
}

// Wire bytes of a small ConnectRequest, built with the generated code and checked word by word
// against the layout: root struct pointer (d1 p2), type in data word 0, dest and metadata pointers.
TEST(CloudflareSchema, ConnectRequestWireBytes) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<rpc::ConnectRequest>();
  root.setDest("http://a/");
  root.setType(rpc::ConnectionType::WEBSOCKET);
  auto list = root.initMetadata(1);
  list[0].setKey("k");
  list[0].setVal("v");
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  const std::uint8_t expected[] = {
      // framing: 1 segment of 11 words
      0x00,
      0x00,
      0x00,
      0x00,
      0x0b,
      0x00,
      0x00,
      0x00,
      // root pointer: struct at +0, data 1 word, 2 pointers
      0x00,
      0x00,
      0x00,
      0x00,
      0x01,
      0x00,
      0x02,
      0x00,
      // data word: type = 1 (websocket) in bits [0,16)
      0x01,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      // ptr[0] dest: list of bytes 1 word on, 10 elements ("http://a/" + NUL)
      0x05,
      0x00,
      0x00,
      0x00,
      0x52,
      0x00,
      0x00,
      0x00,
      // ptr[1] metadata: composite list 2 words on, 2 words of elements
      0x09,
      0x00,
      0x00,
      0x00,
      0x17,
      0x00,
      0x00,
      0x00,
      // dest text, 2 words
      'h',
      't',
      't',
      'p',
      ':',
      '/',
      '/',
      'a',
      '/',
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      // composite tag: 1 element, data 0 words, 2 pointers
      0x04,
      0x00,
      0x00,
      0x00,
      0x00,
      0x00,
      0x02,
      0x00,
      // element 0: key ptr (+1 word, 2 bytes), val ptr (+1 word, 2 bytes)
      0x05,
      0x00,
      0x00,
      0x00,
      0x12,
      0x00,
      0x00,
      0x00,
      0x05,
      0x00,
      0x00,
      0x00,
      0x12,
      0x00,
      0x00,
      0x00,
      'k',
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      'v',
      0,
      0,
      0,
      0,
      0,
      0,
      0,
  };
  ASSERT_EQ(bytes.size(), sizeof expected);
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()),
            std::string(std::begin(expected), std::end(expected)));
}

}  // namespace
