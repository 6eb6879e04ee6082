# Control-plane schema of Cloudflare's tunnel protocol, written for tunnelkit from the IDs,
# ordinals and layouts in specs/cloudflare.md (section 4). Every type carries its explicit
# 64-bit ID so that the wire (interface IDs in RPC calls, struct layouts) matches the edge.
# Types only used by named tunnels or by the removed h2mux transport are left out; their IDs
# are listed in the spec should they ever be needed.
@0xdb8274f9144abc7e;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tunnelkit::cloudflare::rpc");

# Credentials of a tunnel, as the quick-tunnel API hands them out.
struct TunnelAuth @0x9496331ab9cd463f {
  accountTag @0 :Text;
  tunnelSecret @1 :Data;  # the 32 raw bytes of the base64 secret
}

# Who is connecting.
struct ClientInfo @0x83ced0145b2f114b {
  clientId @0 :Data;           # 16 bytes: the connector id, one per process
  features @1 :List(Text);     # e.g. "support_quic_eof"
  version @2 :Text;
  arch @3 :Text;               # "<os>_<arch>", e.g. linux_amd64
}

struct ConnectionOptions @0xb4bf9861fe035d04 {
  client @0 :ClientInfo;
  originLocalIp @1 :Data;      # informational: 16-byte IP (v4-mapped for IPv4)
  replaceExisting @2 :Bool;
  compressionQuality @3 :UInt8;
  numPreviousAttempts @4 :UInt8;
}

# registerConnection's answer: either the connection's details or why it was refused.
struct ConnectionResponse @0xdbaa9d03d52b62dc {
  result :union {
    error @0 :ConnectionError;
    connectionDetails @1 :ConnectionDetails;
  }
}

struct ConnectionError @0xf5f383d2785edb86 {
  cause @0 :Text;              # "EDUPCONN" marks a duplicate connection index
  retryAfter @1 :Int64;        # nanoseconds
  shouldRetry @2 :Bool;
}

struct ConnectionDetails @0xb5f39f082b9ac18a {
  uuid @0 :Data;               # 16 bytes
  locationName @1 :Text;       # colo, e.g. "lhr01"
  tunnelIsRemotelyManaged @2 :Bool;
}

# The edge's side of the control stream (the first bidirectional QUIC stream).
interface RegistrationServer @0xf71695ec7fe85497 {
  registerConnection @0 (auth :TunnelAuth, tunnelId :Data, connIndex :UInt8,
                         options :ConnectionOptions) -> (result :ConnectionResponse);
  unregisterConnection @1 () -> ();
  updateLocalConfiguration @2 (config :Data) -> ();
}

# The client's side of edge-opened RPC streams (not used by quick tunnels; kept so a client
# can recognise and refuse them with the right types).
struct RegisterUdpSessionResponse @0xab6d5210c1f26687 {
  err @0 :Text;
  spans @1 :Data;
}

struct UpdateConfigurationResponse @0xdb58ff694ba05cf9 {
  latestAppliedVersion @0 :Int32;
  err @1 :Text;
}

interface SessionManager @0x839445a59fb01686 {
  registerUdpSession @0 (sessionId :Data, dstIp :Data, dstPort :UInt16,
                         closeAfterIdleHint :Int64, traceContext :Text = "")
      -> (result :RegisterUdpSessionResponse);
  unregisterUdpSession @1 (sessionId :Data, message :Text) -> ();
}

interface ConfigurationManager @0xb48edfbdaa25db04 {
  updateConfiguration @0 (version :Int32, config :Data) -> (result :UpdateConfigurationResponse);
}

interface CloudflaredServer @0xf548cef9dea2a4a1 extends(SessionManager, ConfigurationManager) {}
