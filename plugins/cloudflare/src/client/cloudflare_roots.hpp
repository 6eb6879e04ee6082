// The trust roots of Cloudflare's edge (specs/cloudflare.md section 3): the edge's
// *.cftunnel.com certificates chain to three Cloudflare CAs that are in no public trust store,
// so a client trusts the system roots plus these. --edge-ca replaces both.
#pragma once

#include <string>

namespace tunnelkit::cloudflare {

// The three CA certificates as PEM (Origin SSL ECC CA, Origin SSL CA (RSA),
// origin-pull.cloudflare.net), all valid until 2029.
const std::string& CloudflareEdgeRootsPem();

// The system's PEM bundle (Debian: /etc/ssl/certs/ca-certificates.crt; empty if unreadable)
// followed by CloudflareEdgeRootsPem().
std::string DefaultEdgeRootsPem();

}  // namespace tunnelkit::cloudflare
