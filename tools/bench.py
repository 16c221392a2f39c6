"""dtls-lite benchmarks: CPython in-process, MicroPython through tools/workers/bench_crypto.py.

Run from the repo root: `python tools/bench.py [--only crypto] [--json PATH]`.
Each section is one function returning a dict; printing and the JSON file are shared.
Sections: crypto (CCM_8 seal/open and the TLS PRF, portable vs pycryptodome's CCM);
handshake (full CCM_8 handshake against OpenSSL s_server on both runtimes, with MicroPython's
built-in `tls` client as the reference; see tools/bench_handshake.py); reassembly (a 1-4 KB
handshake message from 1-byte and 64-byte fragments on both runtimes: cost per fragment);
wake (tools/bench_wake.py: cost per wake kind on loopback); energy (tools/bench_energy.py: the
demo's wakes over the link profiles of --link, priced by tools/energy.py's energy model, battery
life, and the --plot PNG).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import benchkit  # noqa: E402
from dtls_lite import crypto  # noqa: E402

# Targets for the MicroPython unix port on the development machine.
TARGET_SEAL_100_US = 20.0
TARGET_SEAL_100_ALLOC = 2048


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
    """Runs tools/workers/bench_crypto.py; returns its sections, or {"error": ...}."""
    mp = args.micropython or benchkit.find_micropython()
    if not mp:
        return {"error": "micropython not found"}
    cmd = [mp]
    if args.mp_heapsize:
        cmd += ["-X", "heapsize=" + args.mp_heapsize]
    cmd += [benchkit.worker("bench_crypto"), ROOT, ",".join(sections),
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


# --- section: reassembly (tools/workers/bench_reassembly.py on both runtimes) ---
# A 1-4 KB handshake message from 1-byte and 64-byte fragments: linear reassembly = a flat
# per-fragment cost as the number of fragments grows from 1,024 to 4,096.

def _run_reassembly(cmd, repeats):
    proc = subprocess.run(cmd + [benchkit.worker("bench_reassembly"), str(repeats)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:]}
    return json.loads(lines[-1])


def bench_reassembly(args):
    repeats = 2 * args.scale + 1
    result = {"cpython": _run_reassembly([sys.executable], repeats)}
    mp = args.micropython or benchkit.find_micropython()
    if not mp:
        result["micropython"] = {"error": "micropython not found"}
    else:
        # 4,096 fragment objects to feed in: more heap than the unix port's default
        cmd = [mp, "-X", "heapsize=" + (args.mp_heapsize or "8m")]
        result["micropython"] = _run_reassembly(cmd, repeats)
    for rt in ("cpython", "micropython"):
        r = result[rt]
        if "error" in r:
            continue
        # linear: 4x the fragments costs 4x the time, so the per-fragment cost stays flat
        for level in ("connection", "reassembly"):
            for order in ("in_order", "reverse"):
                k = level + ":" + order
                result.setdefault("growth_1k_to_4k", {}).setdefault(rt, {})[k] = (
                    r[level][order + "_4096B_from_1B_us_per_fragment"]
                    / r[level][order + "_1024B_from_1B_us_per_fragment"])
    return result


def print_reassembly(r):
    print("reassembly: microseconds per fragment, best of runs (a ServerKeyExchange of N bytes"
          " in F-byte fragments)")
    cases = [(s, f) for s, f in ((1024, 1), (2048, 1), (4096, 1), (4096, 64))]
    print("  %-26s %-9s" % ("", "order") + "".join("%12s" % ("%dB/%dB" % c) for c in cases)
          + "%10s" % "4k/1k")
    for rt in ("cpython", "micropython"):
        res = r[rt]
        if "error" in res:
            print("  %s failed: %s" % (rt, res["error"]))
            continue
        for level in ("connection", "reassembly"):
            for order in ("in_order", "reverse"):
                vals = [res[level]["%s_%dB_from_%dB_us_per_fragment" % (order, s, f)] for s, f in cases]
                g = r["growth_1k_to_4k"][rt][level + ":" + order]
                print("  %-26s %-9s" % (rt + " " + level, order.replace("_", "-"))
                      + "".join("%12.2f" % v for v in vals) + "%10.2f" % g)
        if "reassembly_alloc" in res:
            for order in ("in_order", "reverse"):
                vals = [res["reassembly_alloc"]["%s_%dB_from_%dB_alloc_bytes_per_fragment" % (order, s, f)]
                        for s, f in cases]
                print("  %-26s %-9s" % (rt + " heap B/fragment", order.replace("_", "-"))
                      + "".join("%12.1f" % v for v in vals))
    print("  4k/1k: per-fragment cost of 4096 one-byte fragments over that of 1024 (1.0 = linear)")


SECTIONS = {"crypto": (bench_crypto, print_crypto), "handshake": (bench_handshake, print_handshake),
            "reassembly": (bench_reassembly, print_reassembly)}


# --- section: wake (tools/bench_wake.py: cost per wake kind, both runtimes, with references) ---

def bench_wake(args):
    from bench_wake import bench_wake as run
    # scale 4 (the default): 3 rounds, 20 full/abbreviated pairs, 500 in-process wakes
    return run(rounds=max(1, args.scale * 3 // 4), pairs=5 * args.scale, hot_n=125 * args.scale,
               old_root=args.old and os.path.abspath(args.old))


def print_wake(r):
    from bench_wake import print_wake as show
    show(r)


SECTIONS["wake"] = (bench_wake, print_wake)


# --- section: energy (tools/bench_energy.py: energy per wake over link profiles, A MODEL) ---

def bench_energy(args):
    from bench_energy import bench_energy as run
    return run([n for n in args.link.split(",") if n], wakes=10, plot_path=args.plot)


def print_energy(r):
    from bench_energy import print_energy as show
    show(r)


SECTIONS["energy"] = (bench_energy, print_energy)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma-separated sections (%s)" % ", ".join(SECTIONS))
    ap.add_argument("--json", default="bench-results.json", metavar="PATH")
    ap.add_argument("--scale", type=int, default=4, help="iteration multiplier (4 = default)")
    ap.add_argument("--micropython", help="micropython binary (default: next to python)")
    ap.add_argument("--mp-heapsize", help="micropython -X heapsize=, e.g. 64K (ESP32-like)")
    ap.add_argument("--handshakes", type=int, default=30, help="handshakes per client (handshake section)")
    ap.add_argument("--link", default="wifi,lte-m,nb-iot",
                    help="link profiles of the energy section (tools/links.py: loopback, wifi, lte-m, nb-iot)")
    ap.add_argument("--plot", default="bench-battery.png", metavar="PNG",
                    help="battery-life plot of the energy section (needs matplotlib: the plot extra)")
    ap.add_argument("--old", metavar="TREE", help="an older checkout (`git archive 876eb97`): the wake"
                    " section alternates its continued wakes with ours for the old figure")
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
