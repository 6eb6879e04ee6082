#!/usr/bin/env bash
# Installs the Debian 12 packages that tunnelkit's build, tests and demos need.
# Safe to run twice: apt-get install is idempotent, and the package list is only
# refreshed when a package is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git curl ca-certificates
  clang-format
  clang libclang-rt-14-dev
  libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev gnutls-bin
  libssl-dev openssl
  capnproto libcapnp-dev
  libboost-dev libboost-system-dev libasio-dev
  libwebsockets-dev
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 netcat-openbsd
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
