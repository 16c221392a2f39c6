# Crypto benchmark worker for the MicroPython unix port, launched by tools/bench.py:
#   micropython tools/workers/bench_crypto.py REPO_ROOT SECTION[,SECTION] [SCALE]
# Prints exactly one JSON line: {"runtime": ..., "sections": {SECTION: {...}}}.
# Runs under MicroPython only (time.ticks_us, micropython.mem_total); imports from REPO_ROOT.
import gc
import json
import sys
import time

import micropython

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")

from dtls_lite import crypto  # noqa: E402


def per_op_us(fn, n, repeats=5):
    # Median over `repeats` runs of the mean microseconds per call (n calls in all). The GC
    # runs whenever the heap fills, as in real use: keep n large enough for a few collections.
    for _ in range(10):
        fn()
    gc.collect()
    runs = []
    for _ in range(repeats):
        t = time.ticks_us()
        for _ in range(n // repeats):
            fn()
        runs.append(time.ticks_diff(time.ticks_us(), t) / (n // repeats))
    runs.sort()
    return runs[repeats // 2]


def alloc_per_op(fn, n=10):
    # Mean heap bytes requested per call, with the GC off so nothing is reclaimed meanwhile.
    fn()
    gc.collect()
    gc.disable()
    try:
        if hasattr(micropython, "mem_total"):
            how = "micropython.mem_total"
            t0 = micropython.mem_total()
            for _ in range(n):
                fn()
            used = micropython.mem_total() - t0
        else:
            how = "gc.mem_alloc"
            t0 = gc.mem_alloc()
            for _ in range(n):
                fn()
            used = gc.mem_alloc() - t0
    finally:
        gc.enable()
    return used / n, how


def bench_crypto(scale):
    key = bytes(range(16))
    nonce = bytes(range(12))
    aad = bytes(13)  # DTLS 1.2 additional data: seq(8) type(1) version(2) length(2)
    ccm = crypto.PortableAesCcm(key, 8)
    out = {}
    for size in (64, 100, 1024):
        pt = bytes((i * 7) & 0xFF for i in range(size))
        sealed = ccm.seal(nonce, aad, pt)
        n = (10000 if size < 1024 else 2500) * scale // 4
        out["ccm8_seal_%d_us" % size] = per_op_us(lambda: ccm.seal(nonce, aad, pt), n)
        out["ccm8_open_%d_us" % size] = per_op_us(lambda: ccm.open(nonce, aad, sealed), n)
    pt = bytes(100)
    out["ccm8_seal_100_alloc_bytes"], out["alloc_method"] = alloc_per_op(
        lambda: ccm.seal(nonce, aad, pt))
    sealed = ccm.seal(nonce, aad, pt)
    out["ccm8_open_100_alloc_bytes"] = alloc_per_op(lambda: ccm.open(nonce, aad, sealed))[0]
    secret = bytes(48)
    seed = bytes(64)
    out["prf_48_us"] = per_op_us(lambda: crypto.prf(secret, b"key expansion", seed, 48),
                                 400 * scale // 4)
    gc.collect()
    out["heap_bytes"] = gc.mem_free() + gc.mem_alloc()
    return out


SECTIONS = {"crypto": bench_crypto}


def main():
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else list(SECTIONS)
    scale = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    result = {"runtime": "micropython", "version": sys.version,
              "implementation": list(sys.implementation.version), "sections": {}}
    for name in names:
        if name in SECTIONS:
            result["sections"][name] = SECTIONS[name](scale)
    print(json.dumps(result))


main()
