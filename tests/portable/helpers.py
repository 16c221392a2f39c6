# Helpers of the portable tests that drive a Connection against the scripted FakeServer.
# A module of their own, not test_connection's: a test module that imports them then does not
# load test_connection's tests too (bytecode is heap on MicroPython: on the emulated ESP32 that
# was the difference between a CID handshake fitting in the heap or not).
from dtls_lite import connection as cn
from dtls_lite import record as rl
from fakeserver import IDENTITY, PSK, Rng, records


_DROP = [cn.Connection.drop_handshake_code]


def keep_handshake_code():
    """setup_module of a test module that holds dtls_lite.handshake (or patches it): on
    MicroPython a completed handshake deletes its modules, so the next one would load a second
    copy beside the module's (heap: the ESP32's test_cid ran out) and miss its patches. The drop
    itself: test_connection and the board's wakes."""
    cn.Connection.drop_handshake_code = False


def drop_handshake_code_as_before():
    """teardown_module of such a module."""
    cn.Connection.drop_handshake_code = _DROP[0]


def new_client(**kw):
    kw.setdefault("rng", Rng(3))
    return cn.Connection(IDENTITY, PSK, **kw)


def events(c):
    out = []
    while True:
        e = c.next_event()
        if e is None:
            return out
        out.append(e)


def deliver(c, recs, now):
    """Hand records to the client, one datagram each; return what the client sent back."""
    for r in recs:
        c.receive(r, now)
    return c.datagrams_to_send()


def handshake(c, srv, now=0):
    """Run a lossless handshake; returns the client's datagrams of each flight."""
    c.connect(now)
    flights = []
    out = c.datagrams_to_send()
    while out:
        flights.append(out)
        answer = []
        for d in out:
            answer += srv.handle(d)
        if not answer:
            break
        out = deliver(c, [b"".join(answer)], now)
    return flights


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def sent_alerts(datagrams):
    return [frag for d in datagrams for ctype, epoch, _, frag in records(d) if ctype == rl.CT_ALERT]
