"""dtls-lite demo: a sleepy sensor node through wake cycles, each wake a new MicroPython process
that exits without close_notify (as a node entering deep sleep), its state in a file.

    python tools/demo.py                 # starts the local pion server (PSK, CCM_8, sessions)
    python tools/demo.py --wakes 12 --runtime cpython
    python tools/demo.py --server HOST:PORT --identity ID --psk HEX

The default schedule: first boot, same-address wakes, an address change (127.0.0.2 ->
127.0.0.3), a forced resumption, a server restart (the continued request goes unanswered, the
resumption offer meets a server that forgot the session: full handshake, reading delivered).
One row per wake, then the totals beside a full handshake on every wake (measured: the same
number of wakes without saved state). Against --server the restart row is skipped (it is not
our server to restart). Exit status 0 only if every reading got its reply.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import benchkit  # noqa: E402
import netem  # noqa: E402
import peers  # noqa: E402

WAKE = os.path.join(ROOT, "tools", "wake.py")
HOME = ("127.0.0.2", 40683)  # the node's usual local address and port
MOVED = ("127.0.0.3", 40683)  # after a "DHCP renumbering"


def schedule(wakes, can_restart):
    """[(label, bind, force, restart_server_first)] for `wakes` wakes."""
    plan = [("first boot", HOME, False, False)]
    specials = [("address changed", MOVED, False, False), ("same address", MOVED, False, False),
                ("forced resumption", MOVED, True, False)]
    if can_restart:
        specials.append(("server restarted", MOVED, False, True))
    same = max(wakes - 1 - len(specials), 0)
    first = (same + 1) // 2
    plan += [("same address", HOME, False, False)] * first
    plan += specials
    plan += [("same address", MOVED, False, False)] * (same - first)
    return plan[:wakes]


def wake(exe, host, port, identity, psk, state, bind, force, reading, timeout_ms, reply_ms=1000):
    argv = [exe, WAKE, host, str(port), identity, psk, "--state", state, "--bind", "%s:%d" % bind,
            "--send", reading, "--timeout-ms", str(timeout_ms), "--reply-ms", str(reply_ms)]
    if force:
        argv.append("--force-resume")
    try:
        p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    except FileNotFoundError:
        return {"ok": False, "error": "missing runtime", "message": "%s not found (run `make venv`)" % exe}
    if not p.stdout.strip():
        return {"ok": False, "error": "crash", "message": (p.stderr or p.stdout).strip()[-500:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def row(i, label, r):
    st = r.get("stats") or {}
    w = r.get("wire") or {}
    did = st.get("handshake_kind") or r.get("action") or "-"
    if did == "continued":
        did = "continue"
    if r.get("policy") and r["policy"] != did:
        did = "%s->%s" % (r["policy"], did)  # a continued request got no reply: fallback
    ok = r.get("ok") and r.get("received") and r["received"][-1] is not None
    print("%4d  %-20s %-22s %3s %5d %6d %9d %6d %9.1f  %s" % (
        i, label, did, st.get("round_trips", "-") if st else "-", w.get("handshake_datagrams", 0),
        w.get("handshake_bytes", 0), w.get("datagrams_sent", 0) + w.get("datagrams_received", 0),
        w.get("bytes_sent", 0) + w.get("bytes_received", 0), r.get("wall_us", 0) / 1000.0,
        "reply ok" if ok else "FAILED: %s %s" % (r.get("error"), r.get("message"))))
    return bool(ok)


def totals(rs):
    t = [0, 0, 0, 0, 0]
    for r in rs:
        w = r.get("wire") or {}
        t[0] += (r.get("stats") or {}).get("round_trips", 0)
        t[1] += w.get("handshake_bytes", 0)
        t[2] += w.get("datagrams_sent", 0) + w.get("datagrams_received", 0)
        t[3] += w.get("bytes_sent", 0) + w.get("bytes_received", 0)
        t[4] += r.get("wall_us", 0)
    return t


def cid_part(exe, args, tmp):
    """The same node against a server that gives a Connection ID (RFC 9146): Mbed TLS
    ssl_server2 cid=1 behind tools/netem.py's relay routing by CID (as a CID-aware load
    balancer); every wake after the first binds a new address and port."""
    state = os.path.join(tmp, "node-cid-state.bin")
    ok = True
    print("\nConnection ID: local Mbed TLS ssl_server2 cid=1 (6-byte CID) behind a CID-routing front;"
          "\nthe node moves to a new address and port on every wake:\n")
    print("wake  situation            client did             RTs hs-dg hs-B   datagrams  bytes   wall ms")
    with peers.mbedtls_server(cid=True, exchanges=1000, psk_hex=args.psk, identity=args.identity,
                              extra=("cid_val=c1d2e3f4a5b6",)) as srv, \
            netem.Relay((srv.host, srv.port), cid_len=6) as front:
        results = []
        for i in range(5):
            host = "127.0.0.%d" % (2 + i % 3)
            bind = (host, peers.free_udp_port(host))
            r = wake(exe, "127.0.0.1", front.port, args.identity, args.psk, state, bind, False,
                     "reading %d" % (i + 1), args.timeout_ms)
            results.append(r)
            ok = row(i + 1, "first boot" if i == 0 else "new %s:%d" % bind, r) and ok
        t = totals(results)
        print("  5 wakes, 4 address changes: %d handshake(s), %d handshake bytes" % (
            sum(1 for r in results if (r.get("wire") or {}).get("handshake_datagrams")), t[1]))
    if os.path.exists(state):
        os.remove(state)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="HOST:PORT of a DTLS 1.2 PSK server (default: start the local pion one)")
    ap.add_argument("--identity", default=peers.IDENTITY)
    ap.add_argument("--psk", default=peers.PSK_HEX, help="PSK as hex")
    ap.add_argument("--wakes", type=int, default=10)
    ap.add_argument("--runtime", choices=("micropython", "cpython"), default="micropython")
    ap.add_argument("--timeout-ms", type=int, default=300, help="initial retransmission timeout")
    ap.add_argument("--no-cid", action="store_true", help="skip the Connection ID part")
    args = ap.parse_args()
    if args.wakes < 1:
        ap.error("--wakes must be at least 1")
    exe = sys.executable if args.runtime == "cpython" else (benchkit.find_micropython() or "micropython")
    tmp = tempfile.mkdtemp(prefix="dtls-lite-demo-")
    state = os.path.join(tmp, "node-state.bin")
    ok = True
    with contextlib.ExitStack() as stack:
        srv = None
        if args.server:
            host, _, port = args.server.rpartition(":")
            host, port = host.strip("[]"), int(port)
            print("server: %s port %d (identity %s)" % (host, port, args.identity))
        else:
            srv = stack.enter_context(peers.pion_server(psk_hex=args.psk, identity=args.identity))
            host, port = srv.host, srv.port
            print("server: local pion/dtls (echo, PSK, session store, AES-128-CCM-8 first) on %s:%d" % (host, port))
        print("node: %s, state in %s, each wake a new process, no close_notify\n" % (args.runtime, state))
        print("wake  situation            client did             RTs hs-dg hs-B   datagrams  bytes   wall ms")
        results = []
        for i, (label, bind, force, restart) in enumerate(schedule(args.wakes, srv is not None), 1):
            if restart:
                srv.restart()
            r = wake(exe, host, port, args.identity, args.psk, state, bind, force, "reading %d" % i,
                     args.timeout_ms)
            results.append(r)
            ok = row(i, label, r) and ok
        print("\nthe same %d wakes with a full handshake on every wake (no saved state):" % args.wakes)
        fulls = []
        for i in range(args.wakes):
            if os.path.exists(state):
                os.remove(state)
            # a fresh local port each time: a node without state, and no server association to meet
            fulls.append(wake(exe, host, port, args.identity, args.psk, state, (HOME[0], HOME[1] + 1 + i),
                              False, "reading %d" % i, args.timeout_ms))
        a, b = totals(results), totals(fulls)
        print("                  handshake RTs  handshake B  datagrams   bytes   wall ms")
        print("  dtls-lite       %13d %12d %10d %7d %9.1f" % (a[0], a[1], a[2], a[3], a[4] / 1000.0))
        print("  full every wake %13d %12d %10d %7d %9.1f" % (b[0], b[1], b[2], b[3], b[4] / 1000.0))
        if b[1]:
            print("  ratio           %13.2f %12.2f %10.2f %7.2f %9.2f" % (
                a[0] / max(b[0], 1), a[1] / b[1], a[2] / max(b[2], 1), a[3] / max(b[3], 1), a[4] / max(b[4], 1)))
        ok = ok and all(r.get("ok") for r in fulls)
        print("(wall time includes waiting --reply-ms for the reply that never came after the server"
              " restart,\n and one retransmission where a server must first drop an association)")
        if srv is not None and not args.no_cid:
            ok = cid_part(exe, args, tmp) and ok
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
