// The ngtcp2 callbacks of a QuicConnection (private to the wire library). They only record
// state and wake waiters; see the design note in quic_connection.hpp.
#pragma once

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"

namespace tunnelkit::cloudflare::quic::detail {

// Every callback a connection of `role` needs, in `cb` (which is reset first).
void FillCallbacks(ngtcp2_callbacks& cb, QuicConnection::Role role);
// ngtcp2_crypto_conn_ref::get_conn: the ngtcp2 connection of the QuicConnection in `ref`.
ngtcp2_conn* ConnOfRef(ngtcp2_crypto_conn_ref* ref);

}  // namespace tunnelkit::cloudflare::quic::detail
