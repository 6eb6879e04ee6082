# Per-stream metadata of Cloudflare's tunnel protocol (specs/cloudflare.md section 5): every
# edge-opened data stream starts with a signature, the version "01" and one ConnectRequest;
# the client answers with the same preamble and one ConnectResponse. Written for tunnelkit
# from the spec's IDs and layouts.
@0xb29021ef7421cc32;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tunnelkit::cloudflare::rpc");

struct ConnectRequest @0xc47116a1045e4061 {
  dest @0 :Text;               # full URL for http/websocket, host:port for tcp
  type @1 :ConnectionType;
  metadata @2 :List(Metadata);
}

enum ConnectionType @0xc52e1bac26d379c8 {
  http @0;
  websocket @1;
  tcp @2;
}

struct Metadata @0xe1446b97bfd1cd37 {
  key @0 :Text;                # HttpMethod, HttpHost, HttpHeader:<Name>, HttpStatus, ...
  val @1 :Text;
}

struct ConnectResponse @0xb1032ec91cef8727 {
  error @0 :Text;              # empty on success
  metadata @1 :List(Metadata);
}
