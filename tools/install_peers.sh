#!/usr/bin/env bash
# Install the real DTLS servers the tests talk to, on Debian 12 (bookworm) or similar.
#
#   - OpenSSL 3 (`openssl s_server`/`s_client`) and GnuTLS (`gnutls-serv`/`gnutls-cli`) from apt;
#   - Mbed TLS 3.6 `ssl_server2`/`ssl_client2` (with DTLS Connection ID, RFC 9146), built from
#     Debian 13 (trixie)'s source package, because Debian 12 only ships Mbed TLS 2.28.
#   - a 32-bit MicroPython 1.25 unix port (.peers/bin/micropython32), tools/build_mp32.sh.
#   - aiocoap's CoAP server over tinydtls (tools/coap_server.py): PyPI aiocoap and DTLSSocket
#     (which builds tinydtls from source: apt autoconf, automake, libtool, python3-dev), pinned
#     in tools/coap-server-requirements.txt, in a venv of its own, .peers/coapvenv: its build
#     tools (Cython, setuptools) and aiocoap stay out of the project's .venv, and `make
#     distclean` removes it with the other peers.
#
# Idempotent: installs only missing packages, and skips the Mbed TLS build when
# .peers/mbedtls/bin/ssl_server2 already exists and runs (the CoAP venv when it imports and was
# made from the current requirements files). Binaries end up in .peers/bin/.
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
      gcc-multilib   # gcc-multilib: the 32-bit MicroPython (tools/build_mp32.sh)
      autoconf automake libtool python3-dev python3-venv)  # DTLSSocket's tinydtls build (.peers/coapvenv)
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
for c in openssl gnutls-serv gnutls-cli cmake gcc make dpkg-source go coap-server-openssl coap-server-gnutls tcpdump tshark \
         autoconf automake libtoolize; do
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

# aiocoap + tinydtls (tools/coap_server.py) in .peers/coapvenv, from the pinned requirements.
COAP_VENV="$PEERS/coapvenv"
COAP_REQ="$ROOT/tools/coap-server-requirements.txt"
COAP_BUILD_REQ="$ROOT/tools/coap-server-build-requirements.txt"
COAP_PYTHON="${PYTHON:-python3}"
coap_stamp() { cat "$COAP_BUILD_REQ" "$COAP_REQ" | sha256sum | cut -d' ' -f1; }
coap_ok() {
    # the venv imports the pinned versions and tinydtls makes a context; made from these files
    [ -x "$COAP_VENV/bin/python" ] && [ "$(cat "$COAP_VENV/.dtls-lite-stamp" 2>/dev/null)" = "$(coap_stamp)" ] \
        || return 1
    "$COAP_VENV/bin/python" - "$COAP_REQ" >/dev/null 2>&1 <<'PY' || return 1
import sys
from importlib.metadata import version
import aiocoap.transports.tinydtls_server  # noqa: F401
from DTLSSocket import dtls
for line in open(sys.argv[1]):
    if "==" in line and not line.startswith("#"):
        name, pin = line.split("==")
        assert version(name.strip()) == pin.strip(), (name, version(name.strip()), pin)
dtls.DTLS(pskId=b"Client_identity", pskStore={b"Client_identity": b"secretPSK"})
PY
}
build_coap_venv() {
    local logf
    logf="$(mktemp "${TMPDIR:-/tmp}/dtls-lite-coapvenv.XXXXXX")"
    log "building the aiocoap/tinydtls venv ($COAP_VENV; DTLSSocket compiles tinydtls)"
    rm -rf "$COAP_VENV"
    "$COAP_PYTHON" -m venv "$COAP_VENV" >"$logf" 2>&1 \
        || { cat "$logf" >&2; die "$COAP_PYTHON -m venv $COAP_VENV failed (python3-venv?)"; }
    { "$COAP_VENV/bin/python" -m pip install --no-input -r "$COAP_BUILD_REQ" \
        && "$COAP_VENV/bin/python" -m pip install --no-input --no-build-isolation -r "$COAP_REQ"; } >>"$logf" 2>&1 \
        || { tail -n 60 "$logf" >&2; rm -rf "$COAP_VENV"; \
             die "installing aiocoap and DTLSSocket (tinydtls) failed; the whole log: $logf"; }
    coap_stamp > "$COAP_VENV/.dtls-lite-stamp"
    rm -f "$logf"
}
if coap_ok; then
    log "aiocoap/tinydtls venv already built"
else
    build_coap_venv
    coap_ok || die "the aiocoap/tinydtls venv was built but does not import (DTLSSocket's tinydtls?)"
fi

log "done: $(openssl version | cut -d' ' -f1-2), $(gnutls-serv --version 2>/dev/null | head -n1), $(cat "$MBED/VERSION"), pion/dtls $(dpkg-query -W -f='${Version}' golang-github-pion-dtls.v2-dev), libcoap $(dpkg-query -W -f='${Version}' libcoap3-bin), $(grep -v '^#' "$COAP_REQ" | tr '\n' ' ')(tinydtls)"
