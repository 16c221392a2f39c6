#!/usr/bin/env bash
# Install the real DTLS servers the tests talk to, on Debian 12 (bookworm) or similar.
#
#   - OpenSSL 3 (`openssl s_server`/`s_client`) and GnuTLS (`gnutls-serv`/`gnutls-cli`) from apt;
#   - Mbed TLS 3.6 `ssl_server2`/`ssl_client2` (with DTLS Connection ID, RFC 9146), built from
#     Debian 13 (trixie)'s source package, because Debian 12 only ships Mbed TLS 2.28.
#   - a 32-bit MicroPython 1.25 unix port (.peers/bin/micropython32), tools/build_mp32.sh.
#
# Idempotent: installs only missing packages, and skips the Mbed TLS build when
# .peers/mbedtls/bin/ssl_server2 already exists and runs. Binaries end up in .peers/bin/.
# The Debian mirror is read from this machine's own apt configuration, never hard-coded.
# Usage: tools/install_peers.sh   (as root, or as a user with sudo)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/.peers"
MBED="$PEERS/mbedtls"
MBED_SUITE="${MBED_SUITE:-trixie}"   # Debian release whose mbedtls source package we build
export DEBIAN_FRONTEND=noninteractive

die() { echo "install_peers: ERROR: $*" >&2; exit 1; }
log() { echo "install_peers: $*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else
        die "not root and no sudo: run as root"; fi
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian/Ubuntu only"

# ---- 1. apt packages ------------------------------------------------------------------------
PKGS=(openssl gnutls-bin cmake gcc make libc6-dev dpkg-dev xz-utils python3 ca-certificates
      golang-go golang-github-pion-dtls.v2-dev libcoap3-bin tcpdump tshark
      gcc-multilib)  # gcc-multilib: the 32-bit MicroPython (tools/build_mp32.sh)
missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update -q || die "apt-get update failed"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
else
    log "apt packages already installed: ${PKGS[*]}"
fi
for c in openssl gnutls-serv gnutls-cli cmake gcc make dpkg-source go coap-server-openssl coap-server-gnutls tcpdump tshark; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' still missing after apt-get install"
done

# ---- 2. Mbed TLS 3.6 from the trixie source package -----------------------------------------
mbed_ok() {
    # query_config exits 0 only if the binary runs and was built with DTLS Connection ID.
    local b="$MBED/bin/ssl_server2"
    [ -x "$b" ] && [ -x "$MBED/bin/ssl_client2" ] || return 1
    "$b" query_config=MBEDTLS_SSL_DTLS_CONNECTION_ID >/dev/null 2>&1 || return 1
    "$MBED/bin/ssl_client2" query_config=MBEDTLS_SSL_DTLS_CONNECTION_ID >/dev/null 2>&1 || return 1
}

link_bins() {
    mkdir -p "$PEERS/bin"
    ln -sf "../mbedtls/bin/ssl_server2" "$PEERS/bin/ssl_server2"
    ln -sf "../mbedtls/bin/ssl_client2" "$PEERS/bin/ssl_client2"
}

# debian_mirror and fetch_debian_source
# shellcheck source=tools/debian_source.sh
. "$ROOT/tools/debian_source.sh"

build_mbedtls() {
    local tmp src jobs
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/dtls-lite-peers.XXXXXX")"
    trap 'rm -rf "$tmp"' RETURN
    fetch_debian_source "$MBED_SUITE" "$tmp/src" mbedtls
    src="$(find "$tmp/src" -mindepth 1 -maxdepth 1 -type d -name 'mbedtls-*' | head -n1)"
    [ -n "$src" ] && [ -f "$src/CMakeLists.txt" ] || die "unpacked mbedtls source not found in $tmp/src"
    grep -q 'MBEDTLS_VERSION_STRING  *"3\.6' "$src/include/mbedtls/build_info.h" \
        || die "$MBED_SUITE's mbedtls is not 3.6: $(grep -m1 MBEDTLS_VERSION_STRING "$src/include/mbedtls/build_info.h")"
    log "building $(basename "$src")"

    # RFC 9146 Connection ID is on by default in 3.6; make sure (and fail loudly if impossible).
    if ! grep -q '^#define MBEDTLS_SSL_DTLS_CONNECTION_ID$' "$src/include/mbedtls/mbedtls_config.h"; then
        log "enabling MBEDTLS_SSL_DTLS_CONNECTION_ID"
        (cd "$src" && python3 scripts/config.py set MBEDTLS_SSL_DTLS_CONNECTION_ID) \
            || die "could not enable MBEDTLS_SSL_DTLS_CONNECTION_ID"
    fi

    rm -rf "$MBED"
    mkdir -p "$MBED/bin"
    jobs="$(nproc 2>/dev/null || echo 2)"
    (cd "$src" \
        && cmake -B build -DENABLE_TESTING=OFF -DENABLE_PROGRAMS=ON -DGEN_FILES=OFF -DCMAKE_BUILD_TYPE=Release \
        && make -C build -j"$jobs" ssl_server2 ssl_client2) >"$tmp/build.log" 2>&1 \
        || { tail -n 60 "$tmp/build.log" >&2; die "building mbedtls ssl_server2/ssl_client2 failed"; }
    cp "$src/build/programs/ssl/ssl_server2" "$src/build/programs/ssl/ssl_client2" "$MBED/bin/"
    basename "$src" > "$MBED/VERSION"
}

if mbed_ok; then
    log "Mbed TLS peers already built: $(cat "$MBED/VERSION" 2>/dev/null || echo "$MBED/bin")"
else
    build_mbedtls
    mbed_ok || die "built ssl_server2 does not run"
fi
link_bins

# pion/dtls (Go): built from tools/pion_server with Debian's packaged sources, no module download.
PION_SRC="$ROOT/tools/pion_server/main.go"
PION_BIN="$PEERS/bin/pion_server"
if [ -x "$PION_BIN" ] && [ "$PION_BIN" -nt "$PION_SRC" ]; then
    log "pion server already built"
else
    log "building pion/dtls server"
    gotmp="$(mktemp -d "${TMPDIR:-/tmp}/dtls-lite-pion.XXXXXX")"
    mkdir -p "$gotmp/src/pion_server" "$PEERS/bin"
    cp "$PION_SRC" "$gotmp/src/pion_server/"
    (cd "$gotmp" && GO111MODULE=off GOPATH="$gotmp:/usr/share/gocode" GOCACHE="$gotmp/cache" GOFLAGS= \
        go build -o "$PION_BIN" pion_server) >"$gotmp/build.log" 2>&1 \
        || { cat "$gotmp/build.log" >&2; rm -rf "$gotmp"; die "building the pion/dtls server failed"; }
    rm -rf "$gotmp"
fi

# 32-bit MicroPython 1.25 unix port (.peers/bin/micropython32, mpy-cross32), same mirror.
MP32_MIRROR="${MP32_MIRROR:-$(debian_mirror || true)}" bash "$ROOT/tools/build_mp32.sh" \
    || die "building the 32-bit MicroPython failed"

log "done: $(openssl version | cut -d' ' -f1-2), $(gnutls-serv --version 2>/dev/null | head -n1), $(cat "$MBED/VERSION"), pion/dtls $(dpkg-query -W -f='${Version}' golang-github-pion-dtls.v2-dev), libcoap $(dpkg-query -W -f='${Version}' libcoap3-bin)"
