"""Many sleepy nodes in one event loop (CPython): a load test of a DTLS server with clients that
behave like real battery nodes (issue 16 item 4).

    .venv/bin/python tools/fleet.py N [--server pion|mbedtls|HOST:PORT] [options]

N nodes, each with its own state (a MemoryStore: RTC memory), its own loopback address and
port, and its own wake schedule, run as asyncio tasks with dtls_lite.aio's AsyncDTLSClient:
a wake connects as the wake policy says (full handshake the first time, then continue the
saved connection), sends one reading, waits for the reply, suspends (no close_notify) and the
node sleeps. Some wakes are not plain ones (seeded, per wake): the node moved to a new address
(--move: the policy resumes, or continues with a server CID), the application forced a
resumption (--force), the node lost power (--reboot: the state is gone, a full handshake).

It prints, per wake kind (what the policy chose): wakes, failures, handshakes (wakes that
handshook, with what the handshake was), fallbacks (continued connections the server no longer
had), datagrams and bytes both ways, median and 95th percentile wake time; then wakes per
second over the run, the client's CPU per wake (this process: one core, asyncio, the clients
and their crypto) and the server's (its process's user+system time, when it runs here).

Servers started here: pion (tools/pion_server: many associations at once) and Mbed TLS
ssl_server2 (one association at a time, and it closes a connection after `exchanges` exchanges:
run with --concurrency 1; every wake then resumes, see README). Or a running server HOST:PORT
(--identity, --psk).

Options: --wakes W (per node, default 3)  --concurrency C (nodes awake at once, default 64;
1 for mbedtls)  --sleep-ms S (mean sleep between a node's wakes, default 0: as fast as the
server goes)  --move P  --force P  --reboot P (probabilities per wake, default 0.05, 0.02,
0.02)  --seed N  --timeout-ms T (request timeout, default 2000)  --json FILE.
Addresses: node i lives at 127.1.X.Y (and moves to 127.2.X.Y), one port per run; loopback only.
"""
import argparse
import asyncio
import json
import os
import random
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from dtls_lite.aio import AsyncDTLSClient  # noqa: E402
from dtls_lite.store import MemoryStore  # noqa: E402

KINDS = ("full", "abbreviated", "continue")
PSK_HEX = "73656372657450534b"
IDENTITY = "Client_identity"


def node_address(i, moved):
    """Node i's loopback address (a unique 127.x.y.z per node: no port clashes)."""
    return "127.%d.%d.%d" % (2 if moved else 1, i // 250, i % 250 + 1)


def free_port(hosts):
    """A port free on every one of hosts (tried from a seeded random start)."""
    rnd = random.Random(os.getpid())
    for _ in range(200):
        port = rnd.randrange(20000, 60000)
        socks = []
        try:
            for h in hosts:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((h, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("fleet: no free port on the nodes' addresses")


class Stats:
    def __init__(self):
        self.rows = dict((k, {"wakes": 0, "failed": 0, "handshakes": 0, "fallbacks": 0, "hs_kinds": {},
                              "datagrams": 0, "bytes_up": 0, "bytes_down": 0, "ms": [], "errors": {},
                              # the wakes that sent no handshake datagram, and their traffic
                              "no_handshake": {"wakes": 0, "datagrams": 0, "bytes_up": 0}})
                         for k in KINDS)

    def add(self, policy, c, ok, ms, error=None):
        row = self.rows[policy]
        row["wakes"] += 1
        row["ms"].append(ms)
        if not ok:
            row["failed"] += 1
            row["errors"][error] = row["errors"].get(error, 0) + 1
        if c is None:
            return
        w = c.wire
        row["datagrams"] += w["datagrams_sent"] + w["datagrams_received"]
        row["bytes_up"] += w["bytes_sent"]
        row["bytes_down"] += w["bytes_received"]
        kind = c.stats.handshake_kind
        if w["handshake_datagrams"] and kind:
            row["handshakes"] += 1
            row["hs_kinds"][kind] = row["hs_kinds"].get(kind, 0) + 1
        elif not w["handshake_datagrams"]:
            q = row["no_handshake"]
            q["wakes"] += 1
            q["datagrams"] += w["datagrams_sent"] + w["datagrams_received"]
            q["bytes_up"] += w["bytes_sent"]
        if policy == "continue" and c.wake_reason == "the continued connection got no reply":
            row["fallbacks"] += 1


async def node_life(i, args, server, stats, gate, port):
    rnd = random.Random(args.seed * 1000003 + i)
    store = MemoryStore()
    moved = False
    await asyncio.sleep(rnd.random() * args.sleep_ms / 1000)
    for w in range(args.wakes):
        force = False
        if w:
            if rnd.random() < args.reboot:
                store = MemoryStore()  # power lost: RTC memory is gone
            if rnd.random() < args.move:
                moved = not moved
            force = rnd.random() < args.force
        host = node_address(i, moved)
        async with gate:
            t0 = time.monotonic()
            c = None
            policy = "full"
            try:
                c = AsyncDTLSClient(server[0], server[1], args.identity.encode(), bytes.fromhex(args.psk),
                                    bind=(host, port), local=(host, port), store=store,
                                    initial_timeout_ms=args.initial_timeout_ms, max_retransmits=4)
                if force:
                    c.force_resume()
                try:
                    await c.connect()
                finally:
                    policy = c.wake_action or "full"
                policy = c.wake_action  # before a fallback changes it
                payload = b"node %d wake %d" % (i, w)
                reply = await c.request(payload, args.timeout_ms)
                if args.linger_ms:
                    await c.recv(args.linger_ms)  # a close_notify right after the reply?
                c.suspend()
                ok = reply is not None
                stats.add(policy, c, ok, (time.monotonic() - t0) * 1000, None if ok else "no reply")
            except Exception as e:
                if c is not None:
                    try:
                        c.suspend()
                    except Exception:
                        pass
                stats.add(policy, c, False, (time.monotonic() - t0) * 1000, type(e).__name__)
        if args.sleep_ms:
            await asyncio.sleep(rnd.uniform(0.5, 1.5) * args.sleep_ms / 1000)


def proc_cpu_s(pid):
    """user+system CPU seconds of a process (Linux /proc), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def run_fleet(args, server, server_pid):
    stats = Stats()
    gate = asyncio.Semaphore(args.concurrency)
    port = free_port([node_address(i, m) for i in (0, args.nodes - 1) for m in (False, True)])
    cpu0, wall0 = time.process_time(), time.monotonic()
    srv0 = proc_cpu_s(server_pid) if server_pid else None
    await asyncio.gather(*(node_life(i, args, server, stats, gate, port) for i in range(args.nodes)))
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    srv = proc_cpu_s(server_pid) - srv0 if srv0 is not None else None
    return stats, wall, cpu, srv


def _pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))]


def report(args, stats, wall, cpu, srv_cpu):
    total = sum(r["wakes"] for r in stats.rows.values())
    lines = ["fleet: %d nodes x %d wakes against %s, concurrency %d, sleep %d ms (seed %d)"
             % (args.nodes, args.wakes, args.server, args.concurrency, args.sleep_ms, args.seed),
             "%-12s %6s %6s %10s %9s %9s %10s %10s %8s %8s  %s" % (
                 "wake kind", "wakes", "failed", "handshakes", "fallbacks", "datagrams", "bytes up",
                 "bytes down", "p50 ms", "p95 ms", "handshakes done")]
    for k in KINDS:
        r = stats.rows[k]
        lines.append("%-12s %6d %6d %10d %9d %9d %10d %10d %8s %8s  %s" % (
            k, r["wakes"], r["failed"], r["handshakes"], r["fallbacks"], r["datagrams"], r["bytes_up"],
            r["bytes_down"], "%.1f" % _pct(r["ms"], 0.5) if r["ms"] else "-",
            "%.1f" % _pct(r["ms"], 0.95) if r["ms"] else "-",
            " ".join("%s %d" % kv for kv in sorted(r["hs_kinds"].items())) or "-"))
    t = dict((f, sum(r[f] for r in stats.rows.values()))
             for f in ("failed", "handshakes", "fallbacks", "datagrams", "bytes_up", "bytes_down"))
    lines.append("%-12s %6d %6d %10d %9d %9d %10d %10d" % (
        "total", total, t["failed"], t["handshakes"], t["fallbacks"], t["datagrams"], t["bytes_up"],
        t["bytes_down"]))
    errors = {}
    for r in stats.rows.values():
        for e, n in r["errors"].items():
            errors[e] = errors.get(e, 0) + n
    if errors:
        lines.append("failures: " + ", ".join("%s %d" % kv for kv in sorted(errors.items())))
    lines.append("%.1f wakes/s over %.1f s; client CPU %.2f ms per wake (%.1f s on one core, %.0f%% busy)%s"
                 % (total / wall, wall, 1000 * cpu / max(total, 1), cpu, 100 * cpu / wall,
                    "" if srv_cpu is None else "; server CPU %.2f ms per wake" % (1000 * srv_cpu / max(total, 1))))
    print("\n".join(lines))
    sys.stdout.flush()
    return {"nodes": args.nodes, "wakes_per_node": args.wakes, "server": args.server,
            "concurrency": args.concurrency, "sleep_ms": args.sleep_ms, "seed": args.seed,
            "wakes": total, "wall_s": wall, "wakes_per_s": total / wall,
            "client_cpu_ms_per_wake": 1000 * cpu / max(total, 1),
            "server_cpu_ms_per_wake": None if srv_cpu is None else 1000 * srv_cpu / max(total, 1),
            "kinds": dict((k, dict((f, v) for f, v in r.items() if f != "ms")) for k, r in stats.rows.items()),
            "totals": t, "errors": errors}


def parse(argv):
    p = argparse.ArgumentParser(description="many sleepy nodes in one event loop against one DTLS server")
    p.add_argument("nodes", type=int)
    p.add_argument("--server", default="pion", help="pion, mbedtls or HOST:PORT (a running server)")
    p.add_argument("--identity", default=IDENTITY)
    p.add_argument("--psk", default=PSK_HEX, help="hex")
    p.add_argument("--wakes", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--sleep-ms", type=int, default=0)
    p.add_argument("--move", type=float, default=0.05)
    p.add_argument("--force", type=float, default=0.02)
    p.add_argument("--reboot", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout-ms", type=int, default=2000)
    p.add_argument("--initial-timeout-ms", type=int, default=1000)
    p.add_argument("--linger-ms", type=int, default=None,
                   help="wait this long after the reply for a close_notify (default: 50 for mbedtls, else 0)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if not 1 <= a.nodes <= 60000 or a.wakes < 1:
        p.error("N must be 1..60000 and --wakes at least 1")
    if a.concurrency is None:
        a.concurrency = 1 if a.server == "mbedtls" else 64
    if a.linger_ms is None:
        a.linger_ms = 50 if a.server == "mbedtls" else 0
    return a


def main(argv=None):
    args = parse(argv)
    import contextlib
    with contextlib.ExitStack() as stack:
        pid = None
        if args.server in ("pion", "mbedtls"):
            import peers
            if args.server == "pion":
                srv = stack.enter_context(peers.pion_server(psk_hex=args.psk, identity=args.identity))
            else:  # one association at a time; read_timeout: a node that vanished does not block it
                srv = stack.enter_context(peers.mbedtls_server(psk_hex=args.psk, identity=args.identity,
                                                               exchanges=1, read_timeout_ms=2000))
            server, pid = (srv.host, srv.port), srv.pid
        else:
            host, port = args.server.rsplit(":", 1)
            server = (host, int(port))
        stats, wall, cpu, srv_cpu = asyncio.run(run_fleet(args, server, pid))
        out = report(args, stats, wall, cpu, srv_cpu)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if out["totals"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
