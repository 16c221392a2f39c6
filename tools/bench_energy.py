"""Energy per wake over the link profiles (CPython driver): A MODEL, tools/energy.py priced with
wakes measured over tools/links.py's emulated links.

    .venv/bin/python tools/bench_energy.py [--link wifi,lte-m,nb-iot] [--wakes 10] [--plot PNG]
    .venv/bin/python tools/bench.py --only energy [--link lte-m]     (a section of bench-results.json)

Per profile, against a local pion (noems, so the built-in client is served too) behind the
profile's seeded relay, on MicroPython (dtls_lite from .mpy, each wake a new process): the
demo's ten-wake schedule (tools/demo.py: first boot, continued wakes, an address change, a
forced resumption, a server restart), the same number of wakes with a full handshake each, and
MicroPython's built-in `tls` client (full handshake each wake). Each wake: the relay's datagram
sizes, the wake's wall time and its CPU time on this host (schedstat), priced by
tools/energy.py. Printed: per wake kind (medians), the ten-wake sums, battery life on a 2,000 mAh
cell for wakes every 1 min .. 1 h, for dtls-lite (the ten-wake mix, and continued wakes only:
a node's steady state), a full handshake every wake, and the built-in client; plus a PNG of the
projection when matplotlib is installed (the `plot` extra), else the reason it was skipped.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import benchkit  # noqa: E402
import demo  # noqa: E402
import energy  # noqa: E402
import links  # noqa: E402
import peers  # noqa: E402

DEFAULT_LINKS = ("wifi", "lte-m", "nb-iot")
PLOT = "bench-battery.png"


def _slim(r):
    """What the JSON keeps of one wake."""
    w = r.get("wire") or {}
    return {"client": r.get("client"), "kind": demo.kind_of(r), "ok": demo.got_reply(r),
            "wall_ms": round(r.get("wall_ms", 0), 3), "cpu_ms": r.get("cpu_ms"),
            "round_trips": w.get("round_trips"), "datagrams": w.get("datagrams"), "bytes": w.get("bytes"),
            "hs_bytes": w.get("hs_bytes"), "error": None if r.get("ok") else "%s %s" % (r.get("error"), r.get("message")),
            "energy": {k: round(v, 4) for k, v in (r.get("energy") or {}).items() if isinstance(v, float)}}


def run_profile(p, wakes, mp, env, tmp):
    """The three series over profile p: {"ours": [...], "full": [...], "builtin": [...]} (slim)."""
    state = os.path.join(tmp, "energy-%s.bin" % p.name)
    out = {"ours": [], "full": [], "builtin": []}
    with peers.pion_server(noems=True) as srv:
        node = demo.Node(mp, env, srv.host, srv.port, peers.IDENTITY, peers.PSK_HEX, p, p.timeout_ms, p.reply_ms)
        with links.relay(p, (srv.host, srv.port), seed="bench") as front:
            for i, (label, bind, force, restart) in enumerate(demo.schedule(wakes, True), 1):
                if restart:
                    srv.restart()
                r = node.wake(front, state, bind, force, "reading %d" % i)
                s = _slim(r)
                s["situation"] = label
                out["ours"].append(s)
        with links.relay(p, (srv.host, srv.port), seed="bench/full") as front:
            for i in range(wakes):
                if os.path.exists(state):
                    os.remove(state)
                out["full"].append(_slim(node.wake(front, state, (demo.HOME[0], demo.HOME[1] + 1 + i), False,
                                                   "reading %d" % i)))
        with links.relay(p, (srv.host, srv.port), seed="bench/builtin") as front:
            for i in range(wakes):
                out["builtin"].append(_slim(node.builtin(front, "reading %d" % i)))
    return out


def summarise(p, series):
    """Per-kind medians, ten-wake sums, the projection (charge per wake in mA*s per series)."""
    kinds = {}
    for name, ws in series.items():
        for w in ws:
            key = ("dtls-lite" if name != "builtin" else "built-in tls") + " " + w["kind"]
            kinds.setdefault(key, []).append(w)
    per_kind = {}
    for key, ws in kinds.items():
        def med(f):
            vals = [f(w) for w in ws if f(w) is not None]
            return round(statistics.median(vals), 3) if vals else None
        per_kind[key] = {"n": len(ws), "failed": sum(1 for w in ws if not w["ok"]),
                         "round_trips": med(lambda w: w["round_trips"]), "bytes": med(lambda w: w["bytes"]),
                         "wall_ms": med(lambda w: w["wall_ms"]), "cpu_ms": med(lambda w: w["cpu_ms"]),
                         "radio_on_s": med(lambda w: w["energy"].get("radio_on_s")),
                         "exchange_mj": med(lambda w: w["energy"].get("exchange_mj")),
                         "total_mj": med(lambda w: w["energy"].get("total_mj")),
                         "total_mas": med(lambda w: w["energy"].get("total_mas"))}
    sums = {}
    for name, ws in series.items():
        sums[name] = {"wakes": len(ws), "failed": sum(1 for w in ws if not w["ok"]),
                      "wall_ms": round(sum(w["wall_ms"] for w in ws), 1),
                      "cpu_ms": round(sum(w["cpu_ms"] or 0 for w in ws), 3),
                      "bytes": sum(w["bytes"] or 0 for w in ws),
                      "exchange_mj": round(sum(w["energy"].get("exchange_mj", 0) for w in ws), 2),
                      "total_mj": round(sum(w["energy"].get("total_mj", 0) for w in ws), 2),
                      "total_mas": round(sum(w["energy"].get("total_mas", 0) for w in ws), 3)}
    out = {"profile": p.as_dict(), "per_kind": per_kind, "ten_wakes": sums}
    if p.radio is not None:
        cont = [w["energy"]["total_mas"] for w in series["ours"] if w["kind"] == "continue" and w["ok"]]
        per_wake = {"dtls-lite (ten-wake mix)": sums["ours"]["total_mas"] / max(sums["ours"]["wakes"], 1),
                    "full handshake every wake": sums["full"]["total_mas"] / max(sums["full"]["wakes"], 1),
                    "built-in tls": sums["builtin"]["total_mas"] / max(sums["builtin"]["wakes"], 1)}
        if cont:
            per_wake["dtls-lite continued wakes"] = statistics.median(cont)
        proj = energy.projection(p.radio, per_wake)
        out["radio"] = p.radio
        out["sleep_ua"] = round(energy.sleep_ma(p.radio) * 1000, 2)
        out["charge_per_wake_mas"] = {k: round(v, 3) for k, v in per_wake.items()}
        out["battery_days"] = {k: [[t, round(d, 1)] for t, d in v] for k, v in proj.items()}
    return out


def bench_energy(names=DEFAULT_LINKS, wakes=10, plot_path=PLOT):
    mp = benchkit.need_micropython()
    tmp = tempfile.mkdtemp(prefix="dtls-lite-bench-energy-")
    started = time.time()
    res = {"model": "A MODEL: tools/energy.py (published currents, see its sources) x wakes measured over"
                    " tools/links.py's emulated links; ESP32 CPU = host CPU x %s (an assumption)" % (energy.CPU_SCALE,),
           "cell_mah": energy.CELL_MAH, "cpu_scale": dict(energy.CPU_SCALE), "profiles": {},
           "radios": {k: {x: v for x, v in r.items()} for k, r in energy.RADIOS.items()}}
    try:
        env = benchkit.mpy_env(tmp)
        for name in names:
            p = links.get(name)
            series = run_profile(p, wakes, mp, env, tmp)
            s = summarise(p, series)
            s["wakes"] = series
            res["profiles"][name] = s
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["seconds"] = round(time.time() - started, 1)
    panels = {}
    for name, s in res["profiles"].items():
        if "battery_days" in s:
            panels["%s (%s)" % (name, energy.RADIOS[s["radio"]]["name"])] = {
                k: [(t, d) for t, d in v] for k, v in s["battery_days"].items()}
    res["plot"] = None
    res["plot_skipped"] = None
    if panels and plot_path:
        why = energy.plot(plot_path, "Battery life vs wake interval: dtls-lite, full handshake every wake,"
                          " MicroPython's built-in tls", panels)
        if why is None:
            res["plot"] = plot_path
        else:
            res["plot_skipped"] = why
    return res


def print_energy(res):
    print("Energy per wake: A MODEL (tools/energy.py), wakes measured over emulated links (tools/links.py);"
          "\n  ESP32 CPU = this host's CPU x %g for MicroPython, x %g for the built-in C client (an assumption);"
          "\n  radio mJ = the DTLS exchange; total = + the radio's fixed cost of a wake (same for every client)"
          % (energy.CPU_SCALE["micropython"], energy.CPU_SCALE["builtin"]))
    for name, s in res["profiles"].items():
        p = links.get(name)
        radio = s.get("radio")
        print("\n  %s" % p.describe())
        if radio:
            r = energy.RADIOS[radio]
            print("  radio: %s; fixed cost per wake %.0f mJ; sleep %.1f uA" % (
                r["name"], r["fixed_mas"] * r["volts"], s["sleep_ua"]))
        print("    %-36s %3s %4s %3s %6s %9s %7s %9s %9s %9s" % (
            "wake kind (medians)", "n", "fail", "RTs", "bytes", "wall ms", "cpu ms", "radio-on s", "radio mJ", "total mJ"))
        for key, k in sorted(s["per_kind"].items()):
            print("    %-36s %3d %4d %3s %6s %9s %7s %9s %9s %9s" % (
                key, k["n"], k["failed"], k["round_trips"], k["bytes"], k["wall_ms"], k["cpu_ms"],
                "-" if k["radio_on_s"] is None else "%.3f" % k["radio_on_s"],
                "-" if k["exchange_mj"] is None else "%.1f" % k["exchange_mj"],
                "-" if k["total_mj"] is None else "%.1f" % k["total_mj"]))
        print("    ten wakes (sums):")
        for n, t in s["ten_wakes"].items():
            label = {"ours": "dtls-lite", "full": "full handshake every wake", "builtin": "built-in tls"}[n]
            print("      %-28s wall %8.1f ms  cpu %7.2f ms  %6d B  radio %8.1f mJ  total %8.1f mJ  failed %d" % (
                label, t["wall_ms"], t["cpu_ms"], t["bytes"], t["exchange_mj"], t["total_mj"], t["failed"]))
        if "battery_days" in s:
            print("    battery life, days on %d mAh (sleep %.1f uA):" % (res["cell_mah"], s["sleep_ua"]))
            ts = [t for t, _ in next(iter(s["battery_days"].values()))]
            print("      %-28s" % "wake every" + "".join("%8s" % ("%dm" % (t // 60)) for t in ts))
            for k, v in s["battery_days"].items():
                print("      %-28s" % k + "".join("%8.0f" % d for _, d in v))
    if res.get("plot"):
        print("\n  plot: %s" % res["plot"])
    elif res.get("plot_skipped"):
        print("\n  plot skipped: %s" % res["plot_skipped"])
    print("  (%.0f s)" % res["seconds"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", default=",".join(DEFAULT_LINKS), help="comma-separated profiles (%s)" % ", ".join(links.names()))
    ap.add_argument("--wakes", type=int, default=10)
    ap.add_argument("--plot", default=PLOT, metavar="PNG")
    ap.add_argument("--json", default="bench-energy.json", metavar="PATH")
    args = ap.parse_args(argv)
    names = [n for n in args.link.split(",") if n]
    for n in names:
        links.get(n)
    res = bench_energy(names, args.wakes, args.plot)
    print_energy(res)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2, sort_keys=True)
    print("wrote " + args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
