"""dtls-lite demo: a sleepy sensor node through wake cycles, each wake a new MicroPython process
that exits without close_notify (as a node entering deep sleep), its state in a file, over an
emulated link (tools/links.py's profiles through tools/netem.py's seeded relay, on loopback).

    make demo                                        # = python tools/demo.py (LTE-M profile)
    make demo LINK=nb-iot                            # any profile: loopback, wifi, lte-m, nb-iot
    make demo SERVER=HOST:PORT PSK=HEX IDENTITY=ID   # your server (through the same relay)
    .venv/bin/python tools/demo.py --link wifi --wakes 12 --runtime cpython

The default schedule: first boot, same-address wakes, an address change (127.0.0.2 ->
127.0.0.3), a forced resumption, a server restart (the continued request goes unanswered, the
resumption offer meets a server that forgot the session: full handshake, reading delivered).
One row per wake, then the totals beside a full handshake on every wake (measured: the same
number of wakes without saved state) and beside MicroPython's built-in `tls` client (C Mbed
TLS: a full handshake on every wake, no retransmission), both over the same profile. Each wake
row and total carries the wake's CPU time on this host and its energy under the profile's
radio from tools/energy.py: A MODEL (published currents times the emulated link's times), not
a measurement of a board. Against --server the restart row is skipped (it is not our server to
restart). Exit status 0 only if every reading of dtls-lite got its reply (the built-in
client's failures are reported, not counted).

The CoAP part (issue 17; --no-coap skips it): the sleepy node itself (ports/node.py with
PROTOCOL = "coap", each wake a new process of ports/unix/main.py --coap) PUTs each wake's reading
to libcoap's coap-server through the same link, then the CLI (`dtls-lite coaps://... --state`,
continuing a connection of its own) GETs it back: each wake's GET must return that wake's
reading. The message IDs come from the counter saved with the node's connection, so the wakes
that continue with no handshake never repeat one.
"""
import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import bench_wake  # noqa: E402  (run_worker, settle, wire: the benchmark's way of timing a wake)
import benchkit  # noqa: E402
import energy  # noqa: E402
import links  # noqa: E402
import peers  # noqa: E402

HOME = ("127.0.0.2", 40683)  # the node's usual local address and port
MOVED = ("127.0.0.3", 40683)  # after a "DHCP renumbering"
DEFAULT_LINK = "lte-m"  # `make demo` in well under a minute (nb-iot takes a few minutes)


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


class Node:
    """How the demo runs one wake: runtime, its worker environment, server, credentials, link."""

    def __init__(self, exe, env, host, port, identity, psk, profile, timeout_ms, reply_ms):
        self.exe, self.env, self.host, self.port = exe, env, host, port
        self.identity, self.psk, self.profile = identity, psk, profile
        self.timeout_ms, self.reply_ms = timeout_ms, reply_ms

    def energy(self, r):
        if self.profile.radio is None or not r.get("wire"):
            return None
        return energy.wake_from_result(self.profile.radio, self.profile, r)

    def wake(self, front, state, bind, force, reading):
        """One dtls-lite wake (tools/wake.py in tools/workers/bench_wake.py: CPU time measured)
        through the relay `front`; returns the wake's JSON plus wire (from the relay's log)."""
        n0 = front.logged()
        argv = ["wake", "127.0.0.1", str(front.port), self.identity, self.psk, "--state", state,
                "--bind", "%s:%d" % bind, "--send", reading, "--timeout-ms", str(self.timeout_ms),
                "--reply-ms", str(self.reply_ms)] + (["--force-resume"] if force else [])
        r = bench_wake.run_worker(self.exe, argv, self.env)
        bench_wake.settle(front, quiet_s=0.05)
        r["wire"], r["client_wire"] = bench_wake.wire(front.since(n0)), r.get("wire")
        r["wall_ms"] = r.get("wall_us", 0) / 1000.0
        r["client"] = "dtls-lite"
        r["energy"] = self.energy(r)
        return r

    def coap_wake(self, cfg_path, cwd):
        """One wake of the CoAP node: ports/unix/main.py --coap --once as a new process (the
        library from .mpy under MicroPython); its JSON report."""
        env = dict(self.env or os.environ)
        if self.env and self.env.get("DTLS_LITE_LIB"):
            env["MICROPYPATH"] = self.env["DTLS_LITE_LIB"] + ":.frozen"
        t0 = time.monotonic()
        p = subprocess.run([self.exe, os.path.join(ROOT, "ports", "unix", "main.py"), "--config",
                            cfg_path, "--once", "--coap"], cwd=cwd, env=env, capture_output=True,
                           timeout=120)
        out = p.stdout.decode("utf-8", "replace")
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        try:
            r = json.loads(lines[-1])
        except (IndexError, ValueError):
            r = {"ok": False, "error": "node", "message": (out + p.stderr.decode("utf-8", "replace"))[-400:]}
        r["process_ms"] = (time.monotonic() - t0) * 1000
        return r

    def builtin(self, front, reading):
        """One wake of MicroPython's built-in `tls` client: full handshake, one record, its reply."""
        n0 = front.logged()
        r = bench_wake.run_worker(self.exe, ["builtin", "127.0.0.1", str(front.port), self.identity,
                                             self.psk, reading], self.env)
        bench_wake.settle(front, quiet_s=0.05)
        r["wire"] = bench_wake.wire(front.since(n0))
        r["wall_ms"] = r.get("wall_us", 0) / 1000.0
        r["client"] = "builtin tls"
        r["action"] = "full" if got_reply(r) else None
        r["energy"] = self.energy(r)
        return r


def got_reply(r):
    return bool(r.get("ok") and r.get("received") and r["received"][-1] is not None)


HEAD = ("wake  situation            client did             RTs hs-dg hs-B   datagrams  bytes"
        "   wall ms  cpu ms  radio mJ*")


def kind_of(r):
    """What the wake did: full, abbreviated, continue, or policy->done after a fallback."""
    did = (r.get("stats") or {}).get("handshake_kind") or r.get("action") or "-"
    if did == "continued":
        did = "continue"
    if r.get("policy") and r["policy"] != did:
        did = "%s->%s" % (r["policy"], did)  # a continued request got no reply: fallback
    return did


def row(i, label, r):
    w = r.get("wire") or {}
    did = kind_of(r)
    ok = got_reply(r)
    e = r.get("energy")
    print("%4d  %-20s %-22s %3s %5d %6d %9d %6d %9.1f %7.2f %9s  %s" % (
        i, label, did, w.get("round_trips", "-"), w.get("hs_datagrams", 0), w.get("hs_bytes", 0),
        w.get("datagrams", 0), w.get("bytes", 0), r.get("wall_ms", 0), r.get("cpu_ms") or 0,
        "-" if e is None else "%.1f" % e["exchange_mj"],
        "reply ok" if ok else "FAILED: %s %s" % (r.get("error"), r.get("message"))))
    return ok


def totals(rs):
    """[handshake RTs, handshake B, datagrams, bytes, wall ms, cpu ms, exchange mJ, total mJ,
    exchange mA*s, total mA*s] over the wakes rs (energy sums 0 without a radio)."""
    t = [0] * 10
    for r in rs:
        w = r.get("wire") or {}
        e = r.get("energy") or {}
        for k, v in enumerate((w.get("round_trips", 0), w.get("hs_bytes", 0), w.get("datagrams", 0),
                               w.get("bytes", 0), r.get("wall_ms", 0), r.get("cpu_ms") or 0,
                               e.get("exchange_mj", 0), e.get("total_mj", 0), e.get("exchange_mas", 0),
                               e.get("total_mas", 0))):
            t[k] += v
    return t


def cid_part(node, tmp):
    """The same node against a server that gives a Connection ID (RFC 9146): Mbed TLS
    ssl_server2 cid=1 behind tools/netem.py's relay routing by CID (as a CID-aware load
    balancer) and impairing as the link profile says; every wake after the first binds a new
    address and port."""
    state = os.path.join(tmp, "node-cid-state.bin")
    ok = True
    print("\nConnection ID: local Mbed TLS ssl_server2 cid=1 (6-byte CID) behind a CID-routing front,"
          "\nsame link profile; the node moves to a new address and port on every wake:\n")
    print(HEAD)
    with peers.mbedtls_server(cid=True, exchanges=1000, psk_hex=node.psk, identity=node.identity,
                              extra=("cid_val=c1d2e3f4a5b6",)) as srv, \
            links.relay(node.profile, (srv.host, srv.port), seed="cid", cid_len=6) as front:
        results = []
        for i in range(5):
            host = "127.0.0.%d" % (2 + i % 3)
            bind = (host, peers.free_udp_port(host))
            r = node.wake(front, state, bind, False, "reading %d" % (i + 1))
            results.append(r)
            ok = row(i + 1, "first boot" if i == 0 else "new %s:%d" % bind, r) and ok
        t = totals(results)
        print("  5 wakes, 4 address changes: %d handshake(s), %d handshake bytes" % (
            sum(1 for r in results if (r.get("wire") or {}).get("hs_datagrams")), t[1]))
    if os.path.exists(state):
        os.remove(state)
    return ok


@contextlib.contextmanager
def libcoap_server(psk_hex, identity, host="127.0.0.1"):
    """libcoap 4.3's coap-server-openssl as tests/peers.py starts it, with -d 16 (a PUT to a
    new path creates the resource) and -v 7 (it logs every CoAP message: method, message ID,
    token, payload)."""
    with peers.coap_server(psk_hex=psk_hex, identity=identity, host=host, resources=16, verbose=7) as srv:
        yield srv


COAP_HEAD = ("wake  situation            client did             RTs hs-dg hs-B   datagrams  bytes"
             "   wall ms  MID     node got                  GET returned")


def coap_part(node, tmp, wakes=5):
    """The CoAP node against libcoap through the profile's relay: each wake PUTs its reading,
    then the CLI GETs it back (directly, continuing its own saved connection)."""
    path = "/sensors/demo"
    rtc, session, cfg_path = (os.path.join(tmp, n) for n in ("coap-rtc.bin", "coap-session.bin",
                                                              "coap-node.py"))
    cli_state = os.path.join(tmp, "coap-cli.bin")
    print("\nCoAP: the node (ports/node.py, PROTOCOL = \"coap\", each wake a new process, no"
          " close_notify) PUTs each\nwake's reading to %s on libcoap's coap-server through the"
          " same link; then `dtls-lite coaps://...%s\n--state` (a connection of its own) GETs it"
          " back. Message IDs come from the counter saved with the connection:\n" % (path, path))
    print(COAP_HEAD)
    ok = True
    with libcoap_server(node.psk, node.identity) as srv, \
            links.relay(node.profile, (srv.host, srv.port), seed="coap") as front:
        with open(cfg_path, "w") as f:
            f.write("".join("%s = %r\n" % kv for kv in sorted({
                "SERVER_HOST": "127.0.0.1", "SERVER_PORT": front.port, "IDENTITY": node.identity,
                "PSK_HEX": node.psk, "BIND_HOST": HOME[0], "BIND_PORT": HOME[1] + 100,
                "NODE_NAME": "demo", "SLEEP_MS": 0, "PROTOCOL": "coap", "COAP_METHOD": "PUT",
                "COAP_PATH": path, "INITIAL_TIMEOUT_MS": node.timeout_ms,
                "REPLY_TIMEOUT_MS": max(node.reply_ms, 4 * node.timeout_ms),
                "RTC_FILE": rtc, "SESSION_FILE": session,
                "WIFI_DOWN_FILE": os.path.join(tmp, "coap-wifi.down")}.items())))
        seen = 0
        retransmitted = False
        for i in range(1, wakes + 1):
            n0 = front.logged()
            r = node.coap_wake(cfg_path, tmp)
            bench_wake.settle(front, quiet_s=0.05)
            w = bench_wake.wire(front.since(n0))
            puts = [m for m in COAP_LOG.finditer(srv.output()) if m.group(1) == "PUT"]
            mid = "0x%04x" % int(puts[-1].group(2), 16) if len(puts) > seen else "-"
            seen = len(puts)
            retransmitted = retransmitted or bool(r.get("coap_retransmissions"))
            got = _cli_get(node, srv, path, cli_state)
            own = bool(r.get("ok")) and got == "2.05 Content\n" + r.get("sent", "")
            ok = ok and own
            print("%4d  %-20s %-22s %3s %5d %6d %9d %6d %9.1f  %-7s %-25s %s" % (
                i, "first boot" if i == 1 else "same address", kind_of(r), w["round_trips"],
                w["hs_datagrams"], w["hs_bytes"], w["datagrams"], w["bytes"], r.get("ms", 0), mid,
                _node_got(r),
                "its own reading" if own else "WRONG: %r" % got))
        handshakes = srv.output().count("DTLS: session connected")
    print("  %d wakes of the node, %d GETs: %d DTLS handshakes at the server (the node's first,"
          " the CLI's first)" % (wakes, wakes, handshakes))
    if retransmitted:
        print("  (retr.: the node got no response in time and sent its request again after the CoAP"
              " ACK timeout,\n  same message ID; libcoap keeps no deduplication cache: if the lost"
              " datagram was the response,\n  it ran the PUT again, 2.04 where 2.01 was due)")
    return ok


def _node_got(r):
    if not r.get("reply"):
        return "FAILED: %s %s" % (r.get("error"), r.get("message"))
    n = r.get("coap_retransmissions")
    return r["reply"] + (" (%d retr.)" % n if n else "")


COAP_LOG = re.compile(r"v:1 t:CON c:(GET|PUT|POST|DELETE) i:([0-9a-f]{4}) ")


def _cli_get(node, srv, path, state):
    """`dtls-lite coaps://HOST:PORT/PATH --state FILE`'s stdout (the response) as text."""
    p = subprocess.run([sys.executable, "-m", "dtls_lite", "coaps://%s:%d%s" % (srv.host, srv.port, path),
                        "--psk", node.psk, "--identity", node.identity, "--state", state],
                       cwd=ROOT, capture_output=True, timeout=60)
    return (p.stdout.decode("utf-8", "replace") or p.stderr.decode("utf-8", "replace")).rstrip("\n")


def comparison(node, ours, fulls, builtins):
    """The totals of the three series and, with a radio, energy and battery life (the model)."""
    n = len(ours)
    print("\nthe %d wakes of each client over %s (sums):" % (n, node.profile.name))
    print("                  handshake RTs  handshake B  datagrams   bytes   wall ms    cpu ms  radio mJ*  +fixed mJ*  failed")
    series = [("dtls-lite", ours), ("full every wake", fulls)]
    if builtins:
        series.append(("built-in tls", builtins))
    rows = {}
    for name, rs in series:
        t = totals(rs)
        rows[name] = t
        radio = node.profile.radio is not None
        print("  %-15s %13d %12d %10d %7d %9.1f %9.2f %10s %11s  %d" % (
            name, t[0], t[1], t[2], t[3], t[4], t[5], "%.1f" % t[6] if radio else "-",
            "%.1f" % t[7] if radio else "-", sum(1 for r in rs if not got_reply(r))))
    a = rows["dtls-lite"]
    for name in rows:
        if name == "dtls-lite":
            continue
        b = rows[name]
        print("  dtls-lite / %-15s %6.2f %12.2f %10.2f %7.2f %9.2f %9.2f %10s %11s" % (
            name, a[0] / max(b[0], 1), a[1] / max(b[1], 1), a[2] / max(b[2], 1), a[3] / max(b[3], 1),
            a[4] / max(b[4], 1), a[5] / max(b[5], 1e-9), "%.2f" % (a[6] / b[6]) if b[6] else "-",
            "%.2f" % (a[7] / b[7]) if b[7] else "-"))
    if builtins and any(not got_reply(r) for r in builtins):
        print("  (the built-in client never retransmits: a datagram the link drops ends its handshake"
              " after its 5 s socket timeout)")
    if node.profile.radio is None:
        print("  (no radio on the %s profile: no energy figures; try --link wifi, lte-m or nb-iot)" % node.profile.name)
        return
    r = energy.RADIOS[node.profile.radio]
    print("\n* energy is A MODEL (tools/energy.py; README 'Energy per wake'): %s currents times the"
          "\n  emulated link's airtime and waits, ESP32 CPU = host CPU x %g (an assumption); radio mJ is"
          "\n  the DTLS exchange, +fixed adds the radio's own cost of every wake (%.0f mJ each: %s)." % (
              r["name"], energy.CPU_SCALE["micropython"], r["fixed_mas"] * r["volts"],
              "reconnect" if not r["separate"] else "leave PSM, connect, release"))
    sleep = energy.sleep_ma(node.profile.radio)
    print("  battery life on a 2,000 mAh cell, deep sleep %.1f uA between wakes (mean wake of each series):" % (sleep * 1000))
    print("                    every 1 min  every 15 min  every 1 h")
    for name, t in rows.items():
        q = t[9] / max(n, 1)
        print("  %-15s %12.0f d %12.0f d %9.0f d" % (name, energy.battery_days(q, 60, sleep),
                                                     energy.battery_days(q, 900, sleep),
                                                     energy.battery_days(q, 3600, sleep)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="HOST:PORT of a DTLS 1.2 PSK server (default: start the local pion one)")
    ap.add_argument("--identity", default=peers.IDENTITY)
    ap.add_argument("--psk", default=peers.PSK_HEX, help="PSK as hex")
    ap.add_argument("--wakes", type=int, default=10)
    ap.add_argument("--runtime", choices=("micropython", "cpython"), default="micropython")
    ap.add_argument("--link", default=DEFAULT_LINK, choices=links.names(),
                    help="link profile (tools/links.py), default %s" % DEFAULT_LINK)
    ap.add_argument("--seed", default="demo", help="the relay's seed (loss and delays)")
    ap.add_argument("--timeout-ms", type=int, help="initial retransmission timeout (default: the profile's)")
    ap.add_argument("--reply-ms", type=int, help="how long a request waits for its reply (default: the profile's)")
    ap.add_argument("--no-cid", action="store_true", help="skip the Connection ID part")
    ap.add_argument("--no-builtin", action="store_true", help="skip MicroPython's built-in tls client")
    ap.add_argument("--no-coap", action="store_true",
                    help="skip the CoAP part (the node against libcoap's coap-server)")
    args = ap.parse_args(argv)
    if args.wakes < 1:
        ap.error("--wakes must be at least 1")
    profile = links.get(args.link)
    tmp = tempfile.mkdtemp(prefix="dtls-lite-demo-")
    if args.runtime == "cpython":
        exe, env = sys.executable, None
    else:
        exe = benchkit.find_micropython() or "micropython"
        env = benchkit.mpy_env(tmp)  # dtls_lite from .mpy, as a device loads it
    state = os.path.join(tmp, "node-state.bin")
    ok = True
    with contextlib.ExitStack() as stack:
        srv = None
        if args.server:
            host, _, port = args.server.rpartition(":")
            host, port = host.strip("[]"), int(port)
            print("server: %s port %d (identity %s)" % (host, port, args.identity))
        else:
            # noems: MicroPython's built-in client offers no extended master secret (dtls-lite does)
            srv = stack.enter_context(peers.pion_server(psk_hex=args.psk, identity=args.identity, noems=True))
            host, port = srv.host, srv.port
            print("server: local pion/dtls (echo, PSK, session store, AES-128-CCM-8 first) on %s:%d" % (host, port))
        node = Node(exe, env, host, port, args.identity, args.psk, profile,
                    args.timeout_ms or profile.timeout_ms, args.reply_ms or profile.reply_ms)
        print("link: %s" % profile.describe())
        print("      through tools/netem.py's relay on loopback, seed %r; client: initial retransmission"
              " timeout %d ms, reply wait %d ms" % (args.seed, node.timeout_ms, node.reply_ms))
        print("node: %s, state in %s, each wake a new process, no close_notify\n" % (args.runtime, state))
        print(HEAD)
        results = []
        with links.relay(profile, (host, port), seed=args.seed) as front:
            for i, (label, bind, force, restart) in enumerate(schedule(args.wakes, srv is not None), 1):
                if restart:
                    srv.restart()
                r = node.wake(front, state, bind, force, "reading %d" % i)
                results.append(r)
                ok = row(i, label, r) and ok
        print("(wall time: the wake in its process, from creating the client to saving the state, over"
              " the emulated link;\n cpu ms: this host's CPU in that time, not an ESP32's)")
        print("\nthe same %d wakes with a full handshake on every wake (no saved state, a fresh port each):" % args.wakes)
        print(HEAD)
        fulls = []
        with links.relay(profile, (host, port), seed=args.seed + "/full") as front:
            for i in range(args.wakes):
                if os.path.exists(state):
                    os.remove(state)
                r = node.wake(front, state, (HOME[0], HOME[1] + 1 + i), False, "reading %d" % (i + 1))
                fulls.append(r)
                ok = row(i + 1, "no state", r) and ok
        builtins = []
        if args.runtime != "micropython" or args.no_builtin:
            print("\n(the built-in tls client is MicroPython's: skipped)")
        else:
            print("\nthe same %d wakes with MicroPython's built-in tls client (C Mbed TLS, full handshake"
                  " every wake):" % args.wakes)
            print(HEAD)
            with links.relay(profile, (host, port), seed=args.seed + "/builtin") as front:
                for i in range(args.wakes):
                    r = node.builtin(front, "reading %d" % (i + 1))
                    builtins.append(r)
                    row(i + 1, "built-in, no state", r)
        comparison(node, results, fulls, builtins)
        if srv is not None and not args.no_cid:
            ok = cid_part(node, tmp) and ok
        if srv is not None and not args.no_coap:
            ok = coap_part(node, tmp) and ok
    for root, dirs, files in os.walk(tmp, topdown=False):
        for f in files:
            os.remove(os.path.join(root, f))
        for d in dirs:
            os.rmdir(os.path.join(root, d))
    os.rmdir(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
