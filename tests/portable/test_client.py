# The blocking adapter over a real loopback UDP socket (both runtimes).
from dtls_lite.client import DTLSClient
from dtls_lite.errors import HandshakeTimeout, UsageError
from fakeserver import IDENTITY, PSK

_CLOSED_PORT = 1  # tcpmux: nothing listens on UDP port 1 of the loopback


def test_no_server_times_out_and_says_port_unreachable():
    import sys
    # the emulated ESP32 runs far slower than a chip (a loop of the client can outlast a 20 ms
    # timer): there the timers are longer and the deadline far, so that the test counts
    # retransmissions, not emulation
    esp32 = sys.platform == "esp32"
    c = DTLSClient("127.0.0.1", _CLOSED_PORT, IDENTITY, PSK, connect=False,
                   initial_timeout_ms=1000 if esp32 else 20, max_retransmits=2,
                   handshake_timeout_ms=60000 if esp32 else None)
    try:
        c.connect()
        raise AssertionError("connected to nothing")
    except HandshakeTimeout as e:
        if sys.platform == "esp32":
            # lwIP answers a datagram to a closed local port with no ICMP port unreachable
            # (ports/README.md): a plain timeout, nothing counted
            assert "port unreachable" not in str(e) and c.port_unreachable == 0, str(e)
        else:
            assert "port unreachable" in str(e) and "127.0.0.1 port 1" in str(e), str(e)
            assert c.port_unreachable >= 1
        st = c.stats
        assert st.retransmissions == 2 and st.datagrams_sent == 3, (st.retransmissions, st.datagrams_sent, str(e))
    finally:
        c.close()


def test_misuse_is_a_usage_error():
    for bad in ((b"", PSK), (IDENTITY, b"k" * 65)):
        try:
            DTLSClient("127.0.0.1", _CLOSED_PORT, bad[0], bad[1], connect=False)
            raise AssertionError("accepted %r" % (bad,))
        except UsageError:
            pass


def test_the_handshake_timers_start_after_its_code_is_loaded():
    # From a slow flash (the emulated ESP32) loading the handshake takes longer than the first
    # flight's timer: the clock read that starts the handshake must come after the load.
    import sys
    import dtls_lite
    from dtls_lite import connection as cn
    from dtls_lite.compat import drop_modules
    names = cn.HANDSHAKE_MODULES
    kept = [(n, sys.modules.get(n)) for n in names]  # put back after (CPython keeps them)

    class Clock:
        def now(self):  # 0 before the handshake code is loaded, 5000 once it is
            return 5000 if names[0] in sys.modules else 0

    c = DTLSClient("127.0.0.1", _CLOSED_PORT, IDENTITY, PSK, connect=False)
    c._clock = Clock()
    drop_modules(names)
    try:
        assert c._start() and c.conn.handshake is not None  # no store: a full handshake started
        assert c.conn.handshake.started_ms == 5000, c.conn.handshake.started_ms
        assert c.conn.timer() == 5000 + c.conn.handshake.flight.timeout  # first flight's timer
    finally:
        c.close()
        drop_modules(names)
        for n, m in kept:
            if m is not None:
                sys.modules[n] = m
                setattr(dtls_lite, n.split(".")[1], m)
