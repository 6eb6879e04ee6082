#include "tunnelkit/cloudflare/wire/rpc/registration_client.hpp"

namespace tunnelkit::cloudflare {

RegistrationClient::RegistrationClient(AsioKjLoop& loop, std::shared_ptr<Stream> control_stream,
                                       std::chrono::milliseconds rpc_timeout)
    : loop_(loop),
      rpc_timeout_(rpc_timeout),
      adapter_(std::move(control_stream)),
      client_(adapter_),
      server_(client_.bootstrap().castAs<rpc::RegistrationServer>()) {}

RegistrationClient::~RegistrationClient() noexcept = default;

kj::Promise<RegistrationResult> RegistrationClient::RegisterPromise(
    const RegistrationRequest& request) {
  auto call = server_.registerConnectionRequest();
  WriteRegistrationParams(call, request);
  auto reply = call.send().then(
      [](capnp::Response<rpc::RegistrationServer::RegisterConnectionResults>&& response) {
        return ReadConnectionResponse(response.getResult());
      });
  return loop_.WithTimeout(kj::mv(reply), rpc_timeout_, "registerConnection");
}

boost::asio::awaitable<RegistrationResult> RegistrationClient::Register(
    const RegistrationRequest& request) {
  co_return co_await AwaitKj(loop_, RegisterPromise(request));
}

boost::asio::awaitable<void> RegistrationClient::UpdateLocalConfiguration(std::string config_json) {
  auto call = server_.updateLocalConfigurationRequest();
  call.setConfig(kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(config_json.data()),
                                              config_json.size()));
  auto reply = call.send().ignoreResult();
  co_await AwaitKjVoid(loop_,
                       loop_.WithTimeout(kj::mv(reply), rpc_timeout_, "updateLocalConfiguration"));
}

boost::asio::awaitable<void> RegistrationClient::Unregister(std::chrono::milliseconds deadline) {
  auto reply = server_.unregisterConnectionRequest().send().ignoreResult();
  co_await AwaitKjVoid(loop_, loop_.WithTimeout(kj::mv(reply), deadline, "unregisterConnection"));
}

}  // namespace tunnelkit::cloudflare
