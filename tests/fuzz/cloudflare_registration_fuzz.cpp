// fuzz-links: tunnelkit_cloudflare_wire CapnProto::capnp
// fuzz-sources: plugins/cloudflare/wire/src/rpc/registration_types.cpp
// fuzz-sources: plugins/cloudflare/wire/src/codec/encoding.cpp
// fuzz-libs: fuzz_capnp OpenSSL::Crypto fuzz_framework_text
// registerConnection's parameters (read by the edge emulator) and its answer (read by the
// client), as Cap'n Proto messages of arbitrary bytes: reading either fails with kj::Exception
// or std::invalid_argument, or gives values within the limits that write and read back equal.
// The first input byte picks which of the two structs the rest is.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>

#include "tunnelkit/cloudflare/wire/rpc/registration_types.hpp"

using namespace tunnelkit::cloudflare;

namespace {

bool SameRequest(const RegistrationRequest& a, const RegistrationRequest& b) {
  return a.credentials.tunnel_id == b.credentials.tunnel_id &&
         a.credentials.account_tag == b.credentials.account_tag &&
         a.credentials.secret == b.credentials.secret && a.conn_index == b.conn_index &&
         a.options.client.client_id == b.options.client.client_id &&
         a.options.client.features == b.options.client.features &&
         a.options.client.version == b.options.client.version &&
         a.options.client.arch == b.options.client.arch &&
         a.options.origin_local_ip == b.options.origin_local_ip &&
         a.options.replace_existing == b.options.replace_existing &&
         a.options.compression_quality == b.options.compression_quality &&
         a.options.num_previous_attempts == b.options.num_previous_attempts;
}

bool SameResult(const RegistrationResult& a, const RegistrationResult& b) {
  if (a.registered != b.registered) return false;
  if (a.registered) {
    return a.details.uuid == b.details.uuid && a.details.location == b.details.location &&
           a.details.tunnel_is_remotely_managed == b.details.tunnel_is_remotely_managed;
  }
  return a.error.cause == b.error.cause && a.error.retry_after_ns == b.error.retry_after_ns &&
         a.error.should_retry == b.error.should_retry;
}

void CheckLimits(const RegistrationRequest& request) {
  if (request.credentials.account_tag.size() > 1024 || request.credentials.secret.size() > 1024 ||
      request.options.client.features.size() > 64 || request.options.client.version.size() > 1024 ||
      request.options.client.arch.size() > 1024 || request.options.origin_local_ip.size() > 16) {
    std::abort();
  }
  for (const auto& feature : request.options.client.features) {
    if (feature.size() > 1024) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool params = (data[0] & 1) == 0;
  const std::size_t bytes = size - 1;
  // Cap'n Proto reads whole words: the bytes land in an aligned buffer, the tail zero-padded.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>((bytes + 7) / 8);
  std::memset(words.begin(), 0, words.size() * sizeof(capnp::word));
  if (bytes > 0) std::memcpy(words.begin(), data + 1, bytes);
  capnp::ReaderOptions limits;
  limits.traversalLimitInWords = 64 * 1024;
  limits.nestingLimit = 16;
  try {
    capnp::FlatArrayMessageReader reader(words.asPtr(), limits);
    if (params) {
      const RegistrationRequest request = ReadRegistrationParams(
          reader.getRoot<rpc::RegistrationServer::RegisterConnectionParams>());
      CheckLimits(request);
      capnp::MallocMessageBuilder builder;
      WriteRegistrationParams(builder.initRoot<rpc::RegistrationServer::RegisterConnectionParams>(),
                              request);
      const RegistrationRequest again = ReadRegistrationParams(
          builder.getRoot<rpc::RegistrationServer::RegisterConnectionParams>().asReader());
      if (!SameRequest(request, again)) std::abort();
    } else {
      const RegistrationResult result =
          ReadConnectionResponse(reader.getRoot<rpc::ConnectionResponse>());
      capnp::MallocMessageBuilder builder;
      WriteConnectionResponse(builder.initRoot<rpc::ConnectionResponse>(), result);
      const RegistrationResult again =
          ReadConnectionResponse(builder.getRoot<rpc::ConnectionResponse>().asReader());
      if (!SameResult(result, again)) std::abort();
    }
  } catch (const kj::Exception&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
