#include "transport/upgrade_head.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

namespace tunnelkit::zlayer::transport {

namespace http = boost::beast::http;

std::optional<DataKind> ParseDataUpgrade(std::string_view head, std::size_t header_limit,
                                         UpgradeRequest& request) {
  http::request_parser<http::empty_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(header_limit));
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(head.data(), head.size()), ec);
  if (ec || !parser.is_header_done()) return std::nullopt;
  if (!boost::beast::websocket::is_upgrade(parser.get())) return std::nullopt;
  const auto protocols = parser.get()[http::field::sec_websocket_protocol];
  for (const auto token : http::token_list(protocols)) {
    std::optional<DataKind> kind;
    if (token == kDataSubprotocol) kind = DataKind::kPerConnection;
    if (token == kDataMuxSubprotocol) kind = DataKind::kShared;
    if (kind) {
      request = parser.release();
      return kind;
    }
  }
  return std::nullopt;
}

}  // namespace tunnelkit::zlayer::transport
