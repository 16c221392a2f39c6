# Strict API input (issue 7, item 4), both runtimes: every bad argument is a UsageError with a
# message naming it, raised before anything changes; never a raw TypeError, never accepted.
from dtls_lite import connection as cn
from dtls_lite import record as rl
from dtls_lite.client import DTLSClient
from dtls_lite.errors import UsageError
from fakeserver import IDENTITY, PSK, FakeServer, Rng
from helpers import handshake, new_client

_CLOSED_PORT = 1  # nothing listens on UDP port 1 of the loopback


def refused(fn, *args, **kw):
    """The UsageError fn raises (anything else, or nothing, fails the test)."""
    try:
        fn(*args, **kw)
    except UsageError as e:
        return str(e)
    raise AssertionError("accepted %r %r" % (args, kw))


def connected():
    c, srv = new_client(), FakeServer()
    handshake(c, srv)
    assert c.state == cn.ST_CONNECTED and c.next_event() == (cn.EVENT_CONNECTED, None)
    return c, srv


def test_send_takes_bytes_only():
    c, srv = connected()
    for bad in (1000, "text", None, 1.5, [1, 2]):
        msg = refused(c.send, bad)
        assert "send() takes bytes" in msg, msg
    assert c.datagrams_to_send() == []  # send(1000) used to send 1,000 zero bytes
    c.send(bytearray(b"ok"))
    c.send(memoryview(b"ok"))
    assert len(c.datagrams_to_send()) == 2


def test_receive_takes_bytes_and_int_time():
    c, srv = connected()
    received = c.stats.datagrams_received
    for bad in ("text", None, 5, [1]):
        assert "receive() takes the datagram as bytes" in refused(c.receive, bad, 1)
    for now in (None, 1.5, "1", True):
        assert "now_ms must be an int" in refused(c.receive, srv.app(b"x"), now)
    assert c.stats.datagrams_received == received and c.next_event() is None
    c.receive(memoryview(srv.app(b"fine")), 2)
    assert c.next_event() == (cn.EVENT_DATA, b"fine")


def test_timer_takes_int_time():
    c = new_client()
    c.connect(0)
    for now in (None, 1000.0, False):
        assert "now_ms must be an int" in refused(c.handle_timer, now)
    assert c.stats.retransmissions == 0 and c.timer() == 1000


def test_connect_refusal_leaves_the_object_usable():
    c = new_client()
    for now in (None, 0.0, "0", True):
        assert "now_ms must be an int" in refused(c.connect, now)
        assert c.state == cn.ST_IDLE and c.datagrams_to_send() == []
    srv = FakeServer()
    handshake(c, srv)  # connect(0) now works
    assert c.state == cn.ST_CONNECTED


class BadRng:
    def __init__(self, mode):
        self.mode = mode
        self.good = Rng(3)

    def __call__(self, n):
        b = self.good(n)
        if self.mode == "short":
            return b[:-1]
        if self.mode == "long":
            return b + b"\x00"
        if self.mode == "str":
            return "x" * n
        return None


def test_rng_must_return_exactly_n_bytes():
    for mode, says in (("short", "returned 31 bytes"), ("long", "returned 33 bytes"),
                       ("str", "returned str"), ("none", "returned NoneType")):
        c = cn.Connection(IDENTITY, PSK, rng=BadRng(mode))
        msg = refused(c.connect, 0)  # never zero-padded into the client random
        assert says in msg and "not 32 bytes" in msg, msg
        assert c.state == cn.ST_IDLE and c.datagrams_to_send() == []
    assert "rng must be a function" in refused(cn.Connection, IDENTITY, PSK, rng=b"\x00" * 32)
    c = cn.Connection(IDENTITY, PSK, rng=lambda n: bytearray(n))  # bytearray is fine
    c.connect(0)
    assert c.state == cn.ST_WAIT_SERVER_HELLO


def test_numeric_options_must_be_ints_in_range():
    cases = [
        ("mtu", 1200.0), ("mtu", "1200"), ("mtu", True), ("mtu", 127), ("mtu", 16385),
        ("initial_timeout_ms", 1000.0), ("initial_timeout_ms", 0), ("initial_timeout_ms", True),
        ("max_timeout_ms", 60000.5), ("max_timeout_ms", 999), ("max_timeout_ms", None),
        ("max_retransmits", 6.0), ("max_retransmits", -1), ("max_retransmits", True),
        ("max_retransmits", "6"), ("max_handshake_size", 0), ("max_handshake_size", -4096),
        ("max_handshake_size", 4096.0), ("max_handshake_size", 1 << 24),
        ("handshake_timeout_ms", 0), ("handshake_timeout_ms", 2.5), ("handshake_timeout_ms", False),
    ]
    for name, value in cases:
        msg = refused(cn.Connection, IDENTITY, PSK, **{name: value})
        assert msg.startswith(name + " must be an int"), (name, value, msg)
    # and the edges that are fine
    cn.Connection(IDENTITY, PSK, mtu=128, initial_timeout_ms=1, max_timeout_ms=1,
                  max_retransmits=0, max_handshake_size=1, handshake_timeout_ms=1)


def test_suites_are_checked():
    ccm8 = rl.SUITE_PSK_AES_128_CCM_8
    assert "listed twice" in refused(cn.Connection, IDENTITY, PSK, suites=[ccm8, ccm8])
    assert "list of suite numbers" in refused(cn.Connection, IDENTITY, PSK, suites=ccm8)
    assert "list of suite numbers" in refused(cn.Connection, IDENTITY, PSK, suites="CCM_8")
    assert "not a suite number" in refused(cn.Connection, IDENTITY, PSK, suites=[str(ccm8)])
    assert "not a suite number" in refused(cn.Connection, IDENTITY, PSK, suites=[float(ccm8)])
    assert "not supported" in refused(cn.Connection, IDENTITY, PSK, suites=[0x1234])
    assert "must not be empty" in refused(cn.Connection, IDENTITY, PSK, suites=[])
    assert cn.Connection(IDENTITY, PSK, suites=(ccm8,)).suites == [ccm8]


def test_identity_and_psk():
    assert "identity" in refused(cn.Connection, None, PSK)
    assert "identity" in refused(cn.Connection, 42, PSK)
    assert "psk" in refused(cn.Connection, IDENTITY, "secretPSK")
    assert "psk" in refused(cn.Connection, IDENTITY, None)


def test_default_handshake_timeout_covers_the_timer_schedule():
    c = new_client()
    c.connect(0)
    t = None
    for _ in range(20):
        t = c.timer()
        if t is None:
            break
        c.handle_timer(t)
    # 1+2+4+8+16+32+60 s of retransmission timers, all of them: the deadline cuts nothing short
    assert c.stats.retransmissions == 6 and "handshake_timeout_ms" not in str(c.error)
    assert c.error is not None and c.stats.datagrams_sent == 7


def test_client_ports_and_bind():
    for port in (0, 65536, -1, 70000, "5684", 5684.0, True, None):
        msg = refused(DTLSClient, "127.0.0.1", port, IDENTITY, PSK, connect=False)
        assert "port must be an int in 1..65535" in msg, msg
    for bind in ("127.0.0.1", ("127.0.0.1",), ("127.0.0.1", 1, 2), 5684):
        msg = refused(DTLSClient, "127.0.0.1", _CLOSED_PORT, IDENTITY, PSK, bind=bind, connect=False)
        assert "bind must be a (host, port) pair" in msg, msg
    for bind in (("127.0.0.1", 65536), ("127.0.0.1", "0"), ("127.0.0.1", -1)):
        msg = refused(DTLSClient, "127.0.0.1", _CLOSED_PORT, IDENTITY, PSK, bind=bind, connect=False)
        assert "port must be an int in 0..65535" in msg, msg
    for host in (None, b"127.0.0.1", 127):
        msg = refused(DTLSClient, host, _CLOSED_PORT, IDENTITY, PSK, connect=False)
        assert "host must be a str" in msg, msg
    c = DTLSClient("127.0.0.1", _CLOSED_PORT, IDENTITY, PSK, bind=("127.0.0.1", 0), connect=False)
    c.close()
