"""Hostile input never surprises the client (CPython, hypothesis).

Real server flights from the scripted server, mutated (bit flips, truncation, splicing,
random bytes), are fed to the client at each handshake stage and after it. receive() must never
raise; the connection either goes on (the bad records were dropped and counted) or closes with
a DTLSError in .error and an EVENT_CLOSED. Nothing else: no IndexError, no struct error.
"""
import sys
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "portable"))

from dtls_lite import connection as cn  # noqa: E402
from dtls_lite.errors import DTLSError  # noqa: E402
from fakeserver import IDENTITY, PSK, FakeServer, Rng  # noqa: E402


def _stage(n):
    """A client and the server datagram it expects next, after n lossless steps."""
    c = cn.Connection(IDENTITY, PSK, rng=Rng(3))
    srv = FakeServer()
    c.connect(0)
    out = c.datagrams_to_send()
    answer = b""
    for _ in range(n + 1):
        recs = []
        for d in out:
            recs += srv.handle(d)
        answer = b"".join(recs)
        if _ == n:
            break
        c.receive(answer, 1)
        out = c.datagrams_to_send()
    if c.state == cn.ST_CONNECTED:
        answer = srv.app(b"application data") + srv.alert(1, 0)
    return c, answer


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10 ** 6), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 10 ** 6), st.just(0)),
    st.tuples(st.just("splice"), st.integers(0, 10 ** 6), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("random"), st.just(0), st.binary(max_size=300)),
)


def _mutate(data, m):
    kind, pos, arg = m
    if kind == "random":
        return arg
    if not data:
        return data
    pos %= len(data)
    if kind == "flip":
        b = bytearray(data)
        b[pos] ^= 1 << arg
        return bytes(b)
    if kind == "truncate":
        return data[:pos]
    return data[:pos] + arg + data[pos:]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stage=st.integers(0, 3), mutations=st.lists(mutation, min_size=1, max_size=4),
       also_original=st.booleans())
def test_mutated_server_flights_never_raise(stage, mutations, also_original):
    c, answer = _stage(stage)
    bad = answer
    for m in mutations:
        bad = _mutate(bad, m)
    c.receive(bad, 10)  # must not raise
    if also_original and c.state != cn.ST_CLOSED:
        c.receive(answer, 11)  # the genuine flight still works after garbage, or closes cleanly
    events = []
    while True:
        e = c.next_event()
        if e is None:
            break
        events.append(e)
    c.datagrams_to_send()
    if c.state == cn.ST_CLOSED:
        assert events[-1][0] == cn.EVENT_CLOSED
        assert c.error is None or isinstance(c.error, DTLSError), repr(c.error)
        assert c.timer() is None
    else:
        assert c.error is None
    c.handle_timer(10 ** 9)  # and the timer path still behaves
    assert c.state in (cn.ST_CLOSED, cn.ST_CONNECTED) or c.timer() is not None
