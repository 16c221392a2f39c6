"""Handshakes and echoes through a lossy link (tools/netem.py), and a dead link.

Every run is a fresh OpenSSL s_server or gnutls-serv behind a fresh netem.Relay (seeded: 20%
loss each way, 5% duplication, 10% reordering, 0-30 ms delay) and one tools/run_client.py
process, on CPython (50 seeds per server) and the MicroPython unix port (20 seeds per server).
The client uses short timers (100 ms initial, up to 12 retransmissions) and, because DTLS does
not retransmit application data, re-sends a message whose echo has not come back within
250 ms (`--resend`, as a CoAP client would). Every run must complete: full handshake, both
echoes, close_notify sent.

Why a fresh server per run: s_server and gnutls-serv serve one association at a time and stay
on a client whose close_notify was lost (20% of runs here) for good, so the next run would not
be answered. Whether each close_notify got through is counted and reported, not hidden.

`pytest -s tests/test_lossy.py` prints a summary per runtime and server: retransmissions,
re-sends, drops, lost close_notify alerts and wall time.
"""
import concurrent.futures
import json
import os
import socket
import threading
import time

import pytest

import netem
import peers
from support import wire
from support.runtimes import run_tool

pytestmark = pytest.mark.interop

RUNS = {"cpython": 50, "micropython": 20}
IMPAIRMENT = dict(loss=0.2, dup=0.05, reorder=0.1, delay_ms=(0, 30))
# s_server and gnutls-serv re-send a lost flight only on their own doubling timer (1 s, 2 s,
# 4 s, ...), not when our retransmission arrives (measured through the relay), so the client
# must be patient: it retransmits every 100..1000 ms and gives up only at the 120 s deadline.
HANDSHAKE_DEADLINE_MS = 120000
TIMERS = ["--timeout-ms", "100", "--max-timeout-ms", "1000", "--retransmits", "200",
          "--handshake-timeout-ms", str(HANDSHAKE_DEADLINE_MS)]
ECHO = ["--reply-ms", "250", "--resend", "10"]
MESSAGES = ["hello through a lossy link", "a second record, " + "y" * 100]
CLIENT_TIMEOUT_S = 200  # a hung client process fails the run, never the whole session
PARALLEL = 4  # runs at a time: they mostly wait for timers, each has its own server and relay


def run_client(runtime, host, port, srv, *args):
    report = run_tool(runtime, "run_client.py", host, port, srv.identity, srv.psk_hex, *args,
                      timeout=CLIENT_TIMEOUT_S)
    return report, report.pop("_wall_s")


def close_notify_fate(relay):
    """Fate ("send", "drop", ...) of the client's last alert datagram, None if none was sent."""
    fate = None
    for direction, data, _, f in relay.log:
        if direction == netem.UP and any(r[wire.CTYPE] == wire.CT_ALERT
                                         for r in wire.records(data, partial=True)):
            fate = f
    return fate


def sends(msgs):
    out = []
    for m in msgs:
        out += ["--send", m]
    return out


def one_lossy_run(runtime, server, seed):
    with peers.SERVERS[server]() as srv:
        with netem.Relay(srv.address, seed=seed, **IMPAIRMENT) as relay:
            report, wall = run_client(runtime, relay.address[0], relay.address[1], srv,
                                      *(TIMERS + ECHO + sends(MESSAGES)))
        assert relay.error is None, relay.error
        return dict(seed=seed, report=report, wall=wall, counts=relay.counts,
                    close=close_notify_fate(relay), server_log=srv.output()[-2000:])


def summarize(runtime, server, runs):
    retrans = [r["report"]["stats"]["retransmissions"] for r in runs]
    resends = [r["report"]["resends"] for r in runs]
    walls = [r["wall"] for r in runs]
    up = [sum(r["counts"][netem.UP][k] for r in runs) for k in ("received", "dropped")]
    down = [sum(r["counts"][netem.DOWN][k] for r in runs) for k in ("received", "dropped")]
    lost_close = sum(1 for r in runs if r["close"] != "send")
    walls.sort()
    return ("lossy %s/%s: %d runs ok; retransmissions total %d (mean %.2f, max %d); "
            "resends total %d (max %d); dropped up %d/%d, down %d/%d; close_notify lost %d; "
            "wall median %.2f s, p90 %.2f s, max %.2f s" % (
                runtime, server, len(runs), sum(retrans), sum(retrans) / len(runs), max(retrans),
                sum(resends), max(resends), up[1], up[0], down[1], down[0], lost_close,
                walls[len(walls) // 2], walls[len(walls) * 9 // 10], walls[-1]))


def dump_runs(runtime, server, runs):
    """With DTLS_LITE_LOSSY_JSON=FILE, append one JSON line per run (for README numbers and
    for comparing runs of the same seed)."""
    path = os.environ.get("DTLS_LITE_LOSSY_JSON")
    if not path:
        return
    with open(path, "a") as f:
        for r in runs:
            rep = r["report"]
            f.write(json.dumps(dict(
                runtime=runtime, server=server, seed=r["seed"], ok=rep["ok"],
                wall_s=round(r["wall"], 3), connect_us=rep.get("connect_us"),
                retransmissions=rep.get("stats", {}).get("retransmissions"),
                resends=rep["resends"], counts=r["counts"], close_notify=r["close"])) + "\n")


@pytest.mark.parametrize("server", ["openssl", "gnutls"])
@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_handshake_and_echo_through_lossy_link(runtime, server):
    runs, failures = [], []
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        done = list(pool.map(lambda seed: one_lossy_run(runtime, server, seed),
                             range(RUNS[runtime])))
    for seed, run in enumerate(done):
        rep = run["report"]
        ok = (rep["ok"] and rep["received"] == MESSAGES and rep["closed_cleanly"]
              and rep["stats"]["handshake_kind"] == "full")
        if not ok:
            failures.append("seed %d: %s\nrelay counts %s\nserver log tail:\n%s" % (
                seed, rep, run["counts"], run["server_log"]))
        runs.append(run)
    dump_runs(runtime, server, runs)
    assert not failures, "%d of %d runs failed:\n%s" % (len(failures), len(runs),
                                                        "\n\n".join(failures))
    print("\n" + summarize(runtime, server, runs))
    # The impairment really happened: about 20% of the datagrams were dropped each way, and
    # the client had to retransmit and re-send to get through.
    for direction in (netem.UP, netem.DOWN):
        received = sum(r["counts"][direction]["received"] for r in runs)
        dropped = sum(r["counts"][direction]["dropped"] for r in runs)
        assert 0.1 * received < dropped < 0.3 * received, (direction, dropped, received)
    assert sum(r["report"]["stats"]["retransmissions"] for r in runs) > 0
    assert sum(r["report"]["resends"] for r in runs) > 0


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
@pytest.mark.parametrize("dead_after", [0, 2])
def test_dead_link_fails_with_handshake_timeout(runtime, dead_after):
    """Nothing gets through (dead_after=0), or the link dies after the server's
    HelloVerifyRequest (2): the client gives up with HandshakeTimeout at handshake_timeout_ms
    (2 s), although 30 retransmissions with doubling timers would take far longer."""
    deadline_ms = 2000
    with peers.openssl_server() as srv:
        with netem.Relay(srv.address, seed=0, dead_after=dead_after) as relay:
            report, wall = run_client(runtime, relay.address[0], relay.address[1], srv,
                                      "--timeout-ms", "100", "--retransmits", "30",
                                      "--handshake-timeout-ms", str(deadline_ms))
    assert report["ok"] is False
    assert report["error"] == "HandshakeTimeout", report
    assert "handshake_timeout_ms (%d)" % deadline_ms in report["message"], report
    assert "wrong PSK" not in report["message"], report  # the PSK was never tried
    assert report["stats"]["handshake_kind"] is None
    assert report["stats"]["hello_verify"] is (dead_after == 2)
    # It kept trying until the deadline (100+200+400+800 ms timers: 5 ClientHellos), and
    # nothing after the first dead_after datagrams got through.
    ups = [data for direction, data, _ in relay.captured if direction == netem.UP]
    assert len(ups) >= 4, relay.counts
    sent = relay.counts[netem.UP]["sent"] + relay.counts[netem.DOWN]["sent"]
    assert sent == dead_after, relay.counts
    # Generous bounds: the point is that it does not run past the deadline (without it the
    # remaining retransmissions would take minutes).
    assert report["connect_us"] <= (deadline_ms + 1000) * 1000, report
    assert wall < deadline_ms / 1000.0 + 10, wall


# ---- the relay itself ---------------------------------------------------------------------

class EchoServer:
    """A plain UDP echo server thread on loopback; remembers each sender address."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.senders = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.senders.append(addr)
            self.sock.sendto(data, addr)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(2.0)
        self.sock.close()


def exchange(relay, n, gap_s=0.002, wait_s=0.3):
    """Send n numbered datagrams through the relay one by one; return the echoes received."""
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    c.settimeout(wait_s)
    got = []
    try:
        for i in range(n):
            c.sendto(b"%05d" % i, relay.address)
            time.sleep(gap_s)
        while len(got) < 4 * n:  # bounded: at most two copies each way
            try:
                got.append(c.recv(100))
            except socket.timeout:
                break
    finally:
        c.close()
    return got


def fates(relay):
    return [(d, b, f) for d, b, _, f in relay.log]


def test_relay_is_reproducible_per_seed():
    with EchoServer() as echo:
        logs = []
        for seed in (5, 5, 6):
            with netem.Relay(echo.address, seed=seed, loss=0.3, dup=0.1, reorder=0.1,
                             up={"delay_ms": (0, 5)}, down={"loss": 0.0}) as r:
                exchange(r, 200)
            assert r.error is None
            logs.append([f for d, b, f in fates(r) if d == netem.UP])
        assert logs[0] == logs[1]            # same seed: the same fate for the n-th datagram
        assert logs[0] != logs[2]            # another seed: other fates
        drops = logs[0].count("drop")
        assert 30 < drops < 90, drops       # about 30% of 200
        assert "dup" in logs[0] and "reorder" in logs[0]


def test_relay_loss_dup_reorder_and_capture():
    with EchoServer() as echo:
        with netem.Relay(echo.address, seed=1, up={"dup": 1.0}, down={"loss": 1.0}) as r:
            exchange(r, 20, wait_s=0.1)
        # every datagram up was duplicated, everything down was dropped
        assert r.counts[netem.UP] == dict(received=20, dropped=0, duplicated=20, reordered=0,
                                          sent=40)
        assert r.counts[netem.DOWN]["received"] == 40 and r.counts[netem.DOWN]["sent"] == 0
        sent = [b for d, b, _ in r.captured if d == netem.UP]
        assert sent == [b"%05d" % i for i in range(20)]
        times = [t for _, _, t in r.captured]
        assert times == sorted(times)

        with netem.Relay(echo.address, seed=2, up={"reorder": 1.0, "reorder_hold_ms": 1000}) as r:
            got = exchange(r, 10)
        # each datagram is held until the next one has gone: pairs swap places
        assert got[:2] == [b"00001", b"00000"], got


def test_relay_rebind_and_dead_link():
    with EchoServer() as echo:
        with netem.Relay(echo.address, seed=3) as r:
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(1.0)
            try:
                c.sendto(b"one", r.address)
                assert c.recv(100) == b"one"
                first = r.upstream_ports()
                r.rebind()
                c.sendto(b"two", r.address)
                assert c.recv(100) == b"two"
                second = r.upstream_ports()
                assert len(first) == len(second) == 1 and first != second
                assert [a[1] for a in echo.senders] == first + second  # the server saw both
                r.dead = True
                c.settimeout(0.3)
                c.sendto(b"three", r.address)
                with pytest.raises(socket.timeout):
                    c.recv(100)
                assert len(echo.senders) == 2
                assert r.log[-1][3] == "dead"
            finally:
                c.close()
        assert r.rebinds == 1 and r.error is None
