"""The link profiles (tools/links.py) and what tools/netem.py's relay does for them: delay within
the profile's bounds, serialisation at its rate, order kept, loss seeded and reproducible, and
the seeded fates unchanged by the rate and order options (CPython, loopback only).

A small UDP echo server stands in for the DTLS server: each test sends datagrams through the
relay and times their echoes. Timing bounds carry slack for a loaded two-core machine, on the
upper side only: a datagram can never come back EARLIER than the relay's delay allows.
"""
import socket
import threading
import time

import pytest

import links
import netem


class Echo:
    """A UDP echo server on 127.0.0.1 (a thread; stops on exit)."""

    def __enter__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                continue
            self.sock.sendto(data, addr)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3.0)
    return s


def test_profiles_named_with_bounds():
    for name in ("loopback", "wifi", "lte-m", "nb-iot"):
        p = links.get(name)
        lo, hi = p.one_way_ms()
        assert 0 <= lo <= hi and abs((lo + hi) - p.rtt_ms) < 1e-9
        assert hi - lo == pytest.approx(p.jitter_ms)
        assert 0.0 <= p.loss < 0.05
        assert p.timeout_ms > 0 and p.reply_ms >= p.timeout_ms
        if name != "loopback":
            assert p.radio is not None and p.up_kbps > 0 and p.down_kbps > 0
            # the client's first retransmission must not fire before a reply can come back
            assert p.timeout_ms > p.rtt_ms + p.jitter_ms / 2.0
    assert links.get("nb-iot").rtt_ms > links.get("lte-m").rtt_ms > links.get("wifi").rtt_ms
    with pytest.raises(ValueError):
        links.get("dial-up")


def test_round_trip_within_profile_bounds():
    """Each echo's round trip lies between the profile's smallest and largest RTT (plus the
    serialisation of both copies, plus slack above only)."""
    p = links.Profile("test", rtt_ms=120, jitter_ms=40, loss=0.0, up_kbps=200, down_kbps=100,
                      radio=None, timeout_ms=500, reply_ms=1000, summary="test")
    size = 200
    ser = (size + netem.HEADER_BYTES) * 8 / 200.0 + (size + netem.HEADER_BYTES) * 8 / 100.0  # ms
    rtts = []
    with Echo() as echo, links.relay(p, ("127.0.0.1", echo.port), seed=3) as r:
        s = client()
        try:
            for i in range(12):
                t = time.monotonic()
                s.sendto(bytes([i]) * size, ("127.0.0.1", r.port))
                data, _ = s.recvfrom(2048)
                rtts.append((time.monotonic() - t) * 1000)
                assert data == bytes([i]) * size
        finally:
            s.close()
    assert min(rtts) >= 120 - 40 + ser - 1  # never earlier than the smallest delay allows
    assert max(rtts) <= 120 + 40 + ser + 60  # slack for a loaded machine
    assert max(rtts) - min(rtts) > 2  # the jitter is drawn, not constant


def test_rate_serialises_a_burst_in_order():
    """Ten 972-byte datagrams sent at once over an 80 kbit/s link with jitter: 100 ms each at
    the bottleneck, so the last echo comes >= 1 s after the burst; in order despite jitter."""
    n, size = 10, 972
    with Echo() as echo, netem.Relay(("127.0.0.1", echo.port), seed=1, delay_ms=(0, 30), in_order=True,
                                     up={"rate_kbps": 80}, down={"rate_kbps": 1e6}) as r:
        s = client()
        try:
            t = time.monotonic()
            for i in range(n):
                s.sendto(bytes([i]) * size, ("127.0.0.1", r.port))
            got = []
            for _ in range(n):
                data, _ = s.recvfrom(2048)
                got.append(data[0])
            last = time.monotonic() - t
        finally:
            s.close()
    assert got == list(range(n))
    assert last >= n * (size + netem.HEADER_BYTES) * 8 / 80000.0 - 0.005
    assert last <= 1.0 + 0.03 + 0.5


def _fates(seed, **opts):
    """The fates of 60 datagrams sent one at a time (with their echoes) through a lossy relay."""
    with Echo() as echo, netem.Relay(("127.0.0.1", echo.port), seed=seed, loss=0.3, **opts) as r:
        s = client()
        s.settimeout(0.05)  # only the relay's log is read: a late echo changes nothing
        try:
            for i in range(60):
                s.sendto(bytes([i]), ("127.0.0.1", r.port))
                try:
                    s.recvfrom(64)
                except OSError:
                    pass
        finally:
            s.close()
        time.sleep(0.05)
        return [f for d, _, _, f in r.log if d == netem.UP]


def test_loss_is_seeded_and_reproducible():
    a = _fates(11)
    b = _fates(11, delay_ms=(0, 5), in_order=True, up={"rate_kbps": 500}, down={"rate_kbps": 500})
    c = _fates(12)
    assert len(a) == len(b) == 60
    assert a == b  # same seed: the same datagrams dropped, whatever the delay, rate and order options
    assert a != c  # another seed: other drops
    dropped = a.count("drop")
    assert 6 <= dropped <= 30  # 30% of 60 is 18; binomial sd ~3.5


def test_profile_relay_loss_matches_profile():
    """links.relay() applies the profile's loss to both directions (seeded per profile)."""
    p = links.get("nb-iot")
    opts = links.relay_options(p)
    assert opts["loss"] == p.loss and opts["in_order"]
    assert opts["up"]["rate_kbps"] == p.up_kbps and opts["down"]["rate_kbps"] == p.down_kbps
    r = links.relay(p, ("127.0.0.1", 9))
    assert r.up.loss == r.down.loss == p.loss
    assert r.up.delay_ms == p.one_way_ms() and r.up.rate_kbps == 20 and r.down.rate_kbps == 26
    assert r.up.serialisation_s(222) == pytest.approx(250 * 8 / 20000.0)
