#!/usr/bin/env bash
# Build a 32-bit MicroPython unix port for the tests: .peers/bin/micropython32 (and the
# matching .peers/bin/mpy-cross32). An ESP32 is 32-bit: small ints are 31-bit and objects are
# smaller, so the 64-bit unix port hides allocations and overstates heap.
#
# Source: Debian 13 (trixie)'s `micropython` source package (1.25), fetched like the Mbed TLS
# peer (apt-get source through a private deb-src list, tools/install_peers.sh). Debian strips
# the bundled Mbed TLS (it links the system one), and cryptolib (the AES dtls-lite needs),
# hashlib and tls all sit on Mbed TLS in this port (axtls, the alternative, is stripped too),
# so the same suite's `mbedtls` source package (the one the peers use) is built with -m32
# into a static library and linked in. Built with MICROPY_FORCE_32BIT=1 (apt gcc-multilib),
# ffi off (needs a 32-bit libffi), btree off (its source is stripped), no frozen modules.
#
# Idempotent: does nothing when the binaries run, are 32-bit and were built with the current
# flags; keeps the unpacked sources and the static Mbed TLS in .peers/mp32 for rebuilds.
# Usage: tools/build_mp32.sh [--force]
#        tools/build_mp32.sh --manifest FILE --output PATH   (a firmware with FILE frozen in)
# Env: MP32_MIRROR (Debian mirror URI; else read from this machine's apt configuration),
#      MP32_SUITE (default trixie).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/.peers"
DIR="$PEERS/mp32"
SUITE="${MP32_SUITE:-trixie}"
BIN="$PEERS/bin/micropython32"
XBIN="$PEERS/bin/mpy-cross32"
FORCE=0
MANIFEST=""
OUTPUT=""

die() { echo "build_mp32: ERROR: $*" >&2; exit 1; }
log() { echo "build_mp32: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1; shift ;;
        --manifest) MANIFEST="$(realpath "$2")"; shift 2 ;;
        --output) OUTPUT="$(realpath -m "$2")"; shift 2 ;;
        *) die "unknown argument $1 (usage: build_mp32.sh [--force] | --manifest FILE --output PATH)" ;;
    esac
done
[ -z "$MANIFEST" ] || [ -n "$OUTPUT" ] || die "--manifest needs --output"

# Port options; a change rebuilds. FLT16 off: i386 without SSE2 has no _Float16 (as
# Debian's own i386 build does).
MP_FLAGS=(MICROPY_FORCE_32BIT=1 MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0
          MICROPY_SSL_AXTLS=0 MICROPY_SSL_MBEDTLS=1)
MP_CFLAGS="-DMICROPY_FLOAT_USE_NATIVE_FLT16=0"
STAMP_TEXT="$SUITE ${MP_FLAGS[*]} $MP_CFLAGS"

mp_ok() {  # $1: binary
    [ -x "$1" ] || return 1
    "$1" -c "import sys, cryptolib, hashlib, socket, select, tls
sys.exit(0 if sys.maxsize == 2**31 - 1 and sys.implementation.version[:2] == (1, 25) else 1)" \
        >/dev/null 2>&1
}

all_ok() {
    mp_ok "$BIN" && [ -x "$XBIN" ] && "$XBIN" --version >/dev/null 2>&1 \
        && [ "$(cat "$DIR/STAMP" 2>/dev/null)" = "$STAMP_TEXT" ]
}

if [ -z "$MANIFEST" ] && [ "$FORCE" -eq 0 ] && all_ok; then
    log "already built: $("$BIN" -c 'import sys; print(sys.implementation.version[:3], sys.maxsize)')"
    exit 0
fi

for c in gcc make cmake python3 apt-get; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' missing (tools/install_peers.sh installs what this needs)"
done
echo 'int main(void){return 0;}' | gcc -m32 -x c -o /dev/null - 2>/dev/null \
    || die "gcc -m32 cannot link: apt-get install gcc-multilib"
JOBS="$(nproc 2>/dev/null || echo 2)"
START=$SECONDS

# ---- 1. sources: micropython and mbedtls from $SUITE, kept in .peers/mp32/src -----------------
mp_src() { find "$DIR/src" -mindepth 1 -maxdepth 1 -type d -name 'micropython-*' 2>/dev/null | head -n1; }
mb_src() { find "$DIR/src" -mindepth 1 -maxdepth 1 -type d -name 'mbedtls-*' 2>/dev/null | head -n1; }

fetch_sources() {
    local tmp d
    # shellcheck source=tools/debian_source.sh
    . "$ROOT/tools/debian_source.sh"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/dtls-lite-mp32.XXXXXX")"
    trap 'rm -rf "$tmp"' RETURN
    MIRROR="${MP32_MIRROR:-}" fetch_debian_source "$SUITE" "$tmp/src" micropython mbedtls
    rm -rf "$DIR/src"
    mkdir -p "$DIR/src"
    for d in "$tmp"/src/micropython-* "$tmp"/src/mbedtls-*; do
        [ -d "$d" ] && mv "$d" "$DIR/src/"
    done
}

if [ -z "$(mp_src)" ] || [ -z "$(mb_src)" ] \
        || [ ! -f "$(mp_src)/ports/unix/Makefile" ] || [ ! -f "$(mb_src)/CMakeLists.txt" ]; then
    fetch_sources
fi
MP_SRC="$(mp_src)"
MB_SRC="$(mb_src)"
[ -f "$MP_SRC/ports/unix/Makefile" ] || die "unpacked micropython source not found in $DIR/src"
[ -f "$MB_SRC/CMakeLists.txt" ] || die "unpacked mbedtls source not found in $DIR/src"
grep -q '^#define MICROPY_VERSION_MINOR 25$' "$MP_SRC/py/mpconfig.h" \
    || die "$SUITE's micropython is not 1.25: $(basename "$MP_SRC")"
grep -q 'MBEDTLS_VERSION_STRING  *"3\.6' "$MB_SRC/include/mbedtls/build_info.h" \
    || die "$SUITE's mbedtls is not 3.6: $(basename "$MB_SRC")"

# ---- 2. a static 32-bit Mbed TLS (libraries only) --------------------------------------------
MB_BUILD="$DIR/mbedtls-m32"
if [ "$FORCE" -eq 1 ] || [ ! -f "$MB_BUILD/library/libmbedcrypto.a" ] \
        || [ ! -f "$MB_BUILD/library/libmbedx509.a" ] || [ ! -f "$MB_BUILD/library/libmbedtls.a" ]; then
    log "building a static 32-bit $(basename "$MB_SRC")"
    rm -rf "$MB_BUILD"
    (cmake -S "$MB_SRC" -B "$MB_BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-m32 \
            -DENABLE_TESTING=OFF -DENABLE_PROGRAMS=OFF -DGEN_FILES=OFF \
            -DUSE_STATIC_MBEDTLS_LIBRARY=ON -DUSE_SHARED_MBEDTLS_LIBRARY=OFF \
        && make -C "$MB_BUILD" -j"$JOBS" mbedcrypto mbedx509 mbedtls) >"$DIR/mbedtls-m32.log" 2>&1 \
        || { tail -n 40 "$DIR/mbedtls-m32.log" >&2; die "building the 32-bit Mbed TLS failed"; }
fi

# ---- 3. the unix port, and mpy-cross from the same source ------------------------------------
build_port() {  # $1: build dir, $2: frozen manifest ('' for none)
    make -C "$MP_SRC/ports/unix" -j"$JOBS" "${MP_FLAGS[@]}" BUILD="$1" FROZEN_MANIFEST="$2" \
        CFLAGS_EXTRA="-I$MB_SRC/include $MP_CFLAGS" LDFLAGS_EXTRA="-L$MB_BUILD/library"
}

if [ -n "$MANIFEST" ]; then
    log "building a 32-bit micropython with $MANIFEST frozen in"
    build="$DIR/build-frozen-$(echo "$MANIFEST" | md5sum | cut -c1-8)"
    # The port's make compiles a frozen .py again only when it is newer than its .mpy; a file
    # restored with an older mtime (git, another checkout) would stay stale: compile them all.
    rm -rf "$build/frozen_mpy"
    build_port "$build" "$MANIFEST" >"$build.log" 2>&1 \
        || { tail -n 40 "$build.log" >&2; die "building the frozen firmware failed (log: $build.log)"; }
    mkdir -p "$(dirname "$OUTPUT")"
    cp "$build/micropython" "$OUTPUT"
    mp_ok "$OUTPUT" || die "the built $OUTPUT does not run as a 32-bit 1.25 with cryptolib"
    log "done in $((SECONDS - START)) s: $OUTPUT"
    exit 0
fi

log "building the 32-bit unix port from $(basename "$MP_SRC")"
[ "$FORCE" -eq 0 ] || rm -rf "$DIR/build-standard"
build_port "$DIR/build-standard" "" >"$DIR/build-standard.log" 2>&1 \
    || { tail -n 40 "$DIR/build-standard.log" >&2; die "building the 32-bit unix port failed"; }
make -C "$MP_SRC/mpy-cross" -j"$JOBS" >"$DIR/mpy-cross.log" 2>&1 \
    || { tail -n 40 "$DIR/mpy-cross.log" >&2; die "building mpy-cross failed"; }
mkdir -p "$PEERS/bin"
cp "$DIR/build-standard/micropython" "$BIN"
cp "$MP_SRC/mpy-cross/build/mpy-cross" "$XBIN"
echo "$STAMP_TEXT" > "$DIR/STAMP"
all_ok || die "the built $BIN does not run as a 32-bit 1.25 with cryptolib, hashlib, socket, select, tls"
log "done in $((SECONDS - START)) s: $("$BIN" -c 'import sys; print(sys.implementation)')"
