"""dtls-lite benchmarks: CPython in-process, MicroPython through tools/bench_mp.py.

Run from the repo root: `python tools/bench.py [--only crypto] [--json PATH]`.
Each section is one function returning a dict; printing and the JSON file are shared.
Sections: crypto (CCM_8 seal/open and the TLS PRF, portable vs pycryptodome's CCM);
handshake (full CCM_8 handshake against OpenSSL s_server on both runtimes, with MicroPython's
built-in `tls` client as the reference; see tools/bench_handshake.py).
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from dtls_lite import crypto  # noqa: E402

# Targets for the MicroPython unix port on the development machine.
TARGET_SEAL_100_US = 20.0
TARGET_SEAL_100_ALLOC = 2048


def find_micropython():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("micropython")


def per_op_us(fn, n, repeats=5):
    """Median over `repeats` runs of the mean microseconds per call (n calls in all)."""
    for _ in range(10):
        fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        for _ in range(n // repeats):
            fn()
        runs.append((time.perf_counter_ns() - t) / (n // repeats) / 1000.0)
    return sorted(runs)[repeats // 2]


def run_micropython(args, sections):
    """Runs tools/bench_mp.py; returns its sections, or {"error": ...}."""
    mp = args.micropython or find_micropython()
    if not mp:
        return {"error": "micropython not found"}
    cmd = [mp]
    if args.mp_heapsize:
        cmd += ["-X", "heapsize=" + args.mp_heapsize]
    cmd += [os.path.join(ROOT, "tools", "bench_mp.py"), ROOT, ",".join(sections),
            str(args.scale)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:]}
    result = json.loads(lines[-1])
    result["command"] = " ".join(cmd)
    return result


# --- section: crypto ---

def _native_ccm_seal(key, tag_len):
    from Crypto.Cipher import AES

    def seal(nonce, aad, pt):
        c = AES.new(key, AES.MODE_CCM, nonce=nonce, mac_len=tag_len)
        c.update(aad)
        ct, tag = c.encrypt_and_digest(pt)
        return ct + tag

    def open_(nonce, aad, data):
        c = AES.new(key, AES.MODE_CCM, nonce=nonce, mac_len=tag_len)
        c.update(aad)
        try:
            return c.decrypt_and_verify(data[:-tag_len], data[-tag_len:])
        except ValueError:
            return None

    return seal, open_


def bench_crypto_cpython(scale):
    key, nonce, aad = bytes(range(16)), bytes(range(12)), bytes(13)
    portable = crypto.PortableAesCcm(key, 8)
    native_seal, native_open = _native_ccm_seal(key, 8)
    out = {"portable": {}, "native": {}}
    for size in (64, 100, 1024):
        pt = bytes((i * 7) & 0xFF for i in range(size))
        sealed = portable.seal(nonce, aad, pt)
        assert native_seal(nonce, aad, pt) == sealed and native_open(nonce, aad, sealed) == pt
        n = 2000 * scale // 4
        for name, seal, open_ in (("portable", portable.seal, portable.open),
                                  ("native", native_seal, native_open)):
            out[name]["ccm8_seal_%d_us" % size] = per_op_us(lambda: seal(nonce, aad, pt), n)
            out[name]["ccm8_open_%d_us" % size] = per_op_us(lambda: open_(nonce, aad, sealed), n)
    out["portable"]["prf_48_us"] = per_op_us(
        lambda: crypto.prf(bytes(48), b"key expansion", bytes(64), 48), 1000 * scale // 4)
    out["ratio_portable_over_native"] = {
        k: out["portable"][k] / out["native"][k] for k in out["native"]}
    return out


def bench_crypto(args):
    result = {"cpython": bench_crypto_cpython(args.scale)}
    mp = run_micropython(args, ["crypto"])
    result["micropython"] = mp.get("sections", {}).get("crypto", mp)
    if "command" in mp:
        result["micropython_command"] = mp["command"]
    m = result["micropython"]
    if "ccm8_seal_100_us" in m:
        result["targets"] = {
            "mp_ccm8_seal_100_us": {"value": m["ccm8_seal_100_us"], "limit": TARGET_SEAL_100_US,
                                    "met": m["ccm8_seal_100_us"] <= TARGET_SEAL_100_US},
            "mp_ccm8_seal_100_alloc_bytes": {"value": m["ccm8_seal_100_alloc_bytes"],
                                             "limit": TARGET_SEAL_100_ALLOC,
                                             "met": m["ccm8_seal_100_alloc_bytes"]
                                             <= TARGET_SEAL_100_ALLOC},
        }
    return result


def print_crypto(r):
    cp, mp = r["cpython"], r["micropython"]
    print("crypto: microseconds per operation, median of 5 runs"
          " (CCM_8, 12-byte nonce, 13-byte aad)")
    print("  %-18s %13s %13s %8s %13s" % ("", "CPy portable", "CPy native", "ratio",
                                           "MicroPython"))
    for k in ("ccm8_seal_64_us", "ccm8_open_64_us", "ccm8_seal_100_us", "ccm8_open_100_us",
              "ccm8_seal_1024_us", "ccm8_open_1024_us", "prf_48_us"):
        native = cp["native"].get(k)
        ratio = cp["ratio_portable_over_native"].get(k)
        print("  %-18s %13.2f %13s %8s %13s" % (
            k[:-3], cp["portable"][k], "%.2f" % native if native else "-",
            "%.2f" % ratio if ratio else "-", "%.2f" % mp[k] if k in mp else "-"))
    if "error" in mp:
        print("  MicroPython failed: " + mp["error"])
        return
    print("  MicroPython heap allocated per 100 B seal: %.0f B, per open: %.0f B (%s)"
          % (mp["ccm8_seal_100_alloc_bytes"], mp["ccm8_open_100_alloc_bytes"],
             mp["alloc_method"]))
    print("  MicroPython heap size: %d B" % mp["heap_bytes"])
    for name, t in r.get("targets", {}).items():
        print("  target %-30s %9.1f <= %-6g %s" % (name, t["value"], t["limit"],
                                                   "MET" if t["met"] else "MISSED"))


def bench_handshake(args):
    from bench_handshake import bench_handshake as run
    return run(args.handshakes)


def print_handshake(r):
    from bench_handshake import print_handshake as show
    show(r)


SECTIONS = {"crypto": (bench_crypto, print_crypto), "handshake": (bench_handshake, print_handshake)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma-separated sections (%s)" % ", ".join(SECTIONS))
    ap.add_argument("--json", default="bench-results.json", metavar="PATH")
    ap.add_argument("--scale", type=int, default=4, help="iteration multiplier (4 = default)")
    ap.add_argument("--micropython", help="micropython binary (default: next to python)")
    ap.add_argument("--mp-heapsize", help="micropython -X heapsize=, e.g. 64K (ESP32-like)")
    ap.add_argument("--handshakes", type=int, default=30, help="handshakes per client (handshake section)")
    args = ap.parse_args(argv)
    names = [s for s in args.only.split(",") if s]
    for name in names:
        if name not in SECTIONS:
            ap.error("unknown section %r" % name)
    report = {
        "meta": {"python": sys.version.split()[0], "machine": platform.machine(),
                 "platform": platform.platform(), "backend": crypto.BACKEND,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
        "sections": {},
    }
    for name in names:
        run, show = SECTIONS[name]
        report["sections"][name] = run(args)
        show(report["sections"][name])
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    print("wrote " + args.json)
    return report


if __name__ == "__main__":
    main()
