"""Fuzz targets over the parsers (CPython, hypothesis), issue 7 item 6.

Each target is a plain function of keyword arguments drawn from its strategies; TARGETS maps
its name to (function, strategies). This file runs each with a modest number of examples (a
short run in CI); tools/fuzz.py runs the same targets long (`--examples N`). Targets:

  record_end        record.record_end over any bytes: the offset it returns is the one the
                    header's length field implies, or -1; never an exception.
  replay_window     record.ReadState's replay window against a plain model (RFC 6347 4.1.2.6).
  record_open       ReadState.open with a real cipher of every suite (CIDs too): genuine records
                    open once, replays and changed records never do, junk returns None.
  server_hello      handshake.ServerHello from structured and random bodies: ProtocolError or
  hello_verify      a value that satisfies the message's rules (likewise for
  key_exchange      parse_hello_verify_request, parse_server_key_exchange, pull_header).
  pull_header
  reassembly        a Connection in each handshake state (waiting for HelloVerifyRequest, for
                    ServerHello, ServerKeyExchange, ServerHelloDone, Finished, connected; and in
                    an abbreviated handshake, RFC 5246 7.3) fed genuine, forged,
                    mutated and random handshake fragments through receive(): receive() never
                    raises; afterwards the connection is either open without an error or closed
                    with a DTLSError; if the junk did not move it on, the server's genuine
                    retransmission still does.
  reassembly_order  the genuine server flight cut into random fragments, reordered, duplicated,
                    spread over datagrams: the client moves on without any retransmission.
  state_load        state.load on random bytes, on mutated genuine blobs and on mutated blobs
                    with a recomputed tag (so the parser, not only the tag, sees them): only
                    StateError; a blob that loads is the canonical dump() of what it loads to.
  state_round_trip  dump/load of arbitrary valid SavedStates preserves every field.
  ip_bytes          state.ip_bytes against socket.inet_pton on address-like text.
"""
import ipaddress
import os
import socket
import struct
import sys

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "portable"))

from dtls_lite import connection as cn  # noqa: E402
from dtls_lite import crypto  # noqa: E402
from dtls_lite import handshake as hs  # noqa: E402
from dtls_lite import record as rl  # noqa: E402
from dtls_lite import state as sm  # noqa: E402
from dtls_lite.errors import DTLSError, HelloVerifyStorm, ProtocolError, StateError, UsageError  # noqa: E402
from fakeserver import IDENTITY, PSK, FakeServer, Rng  # noqa: E402
from test_connection import events as _events  # noqa: E402

TARGETS = {}  # name -> (function, {argument: strategy})
COUNTS = {}  # name -> examples run (read by tools/fuzz.py)


def target(**strategies):
    def register(fn):
        name = fn.__name__[len("fuzz_"):]
        TARGETS[name] = (fn, strategies)
        COUNTS[name] = 0
        return fn
    return register


def hypothesis_test(name, max_examples, **options):
    """A hypothesis test running target `name` (max_examples inputs)."""
    fn, strategies = TARGETS[name]

    def run(args):
        COUNTS[name] += 1
        fn(**args)

    options.setdefault("deadline", None)
    options.setdefault("suppress_health_check", list(HealthCheck))
    return settings(max_examples=max_examples, **options)(given(args=st.fixed_dictionaries(strategies))(run))


# ---- mutations -----------------------------------------------------------------------------

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10 ** 6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10 ** 6), st.sampled_from([0, 1, 0x7F, 0x80, 0xFF])),
    st.tuples(st.just("truncate"), st.integers(0, 10 ** 6), st.just(0)),
    st.tuples(st.just("splice"), st.integers(0, 10 ** 6), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("cut"), st.integers(0, 10 ** 6), st.integers(1, 16)),
    st.tuples(st.just("append"), st.just(0), st.binary(min_size=1, max_size=8)),
)


def mutate(data, muts):
    for kind, pos, arg in muts:
        if kind == "append" or not data:
            if kind == "append" or kind == "splice":
                data += arg
            continue
        pos %= len(data)
        if kind == "flip" or kind == "set":
            b = bytearray(data)
            b[pos] = b[pos] ^ (1 << arg) if kind == "flip" else arg
            data = bytes(b)
        elif kind == "truncate":
            data = data[:pos]
        elif kind == "splice":
            data = data[:pos] + arg + data[pos:]
        else:
            data = data[:pos] + data[pos + arg:]
    return data


# ---- record layer --------------------------------------------------------------------------

@target(data=st.binary(min_size=1, max_size=120), off=st.integers(0, 130), cid_len=st.sampled_from([0, 0, 4, 20]))
def fuzz_record_end(data, off, cid_len):
    off %= len(data)  # callers pass an offset inside the datagram
    end = rl.record_end(data, off, cid_len)
    h = off + rl.HEADER_LEN + (cid_len if data[off] == rl.CT_TLS12_CID else 0)
    if h > len(data):
        assert end == -1
    else:
        want = h + ((data[h - 2] << 8) | data[h - 1])
        assert end == (want if want <= len(data) else -1), (end, want)


_seq48 = st.one_of(st.integers(0, 2 ** 48 - 1), st.integers(0, 300),
                   st.integers(0, 1000).map(lambda d: (1 << 24) + d - 500),
                   st.integers(0, 1000).map(lambda d: 2 ** 48 - 1 - d))


@target(start=_seq48, steps=st.lists(st.tuples(st.integers(-80, 80), st.integers(0, 2 ** 30), st.booleans()),
                                     max_size=40))
def fuzz_replay_window(start, steps):
    rs = rl.ReadState(1)
    top, seen = -1, set()  # the model: highest marked and every marked number
    seq = start
    for delta, far, jump in steps:
        seq = min(max(seq + (far if jump else delta), 0), 2 ** 48 - 1)
        want = seq <= top and (top - seq >= 64 or seq in seen)
        assert rs.is_replay(seq) == want, (seq, top)
        if not want:
            rs.mark(seq)
            seen.add(seq)
            top = max(top, seq)
        assert rs.max_seq == top
        w = sum(1 << (top - s) for s in seen if 0 <= top - s < 64)
        assert rs.window == w
    # what saved state restores: the same answers from max_seq and window alone
    back = rl.ReadState(1)
    back.max_seq, back.window = rs.max_seq, rs.window
    for s in range(max(top - 70, 0), top + 3):
        assert back.is_replay(s) == rs.is_replay(s), s


_KB = bytes(range(7, 7 + 96))


@target(suite=st.sampled_from(sorted(rl.SUITES)), etm=st.booleans(), cid=st.sampled_from([b"", b"", b"\x01\x02\x03\x04"]),
        ctype=st.sampled_from([rl.CT_HANDSHAKE, rl.CT_ALERT, rl.CT_APPLICATION_DATA, 0, 255]),
        seq=_seq48.map(lambda s: min(s, 2 ** 48 - 2)), plaintext=st.binary(max_size=80),
        muts=st.lists(mutation, max_size=3),
        junk=st.binary(max_size=120))
def fuzz_record_open(suite, etm, cid, ctype, seq, plaintext, muts, junk):
    kb = _KB[:rl.key_block_len(suite)]
    # client writes, server reads (the same client keys); a CID the server named for itself
    w = rl.epoch_states(1, suite, etm, kb, Rng(5), client=True, write_cid=cid)[0]
    readers = [rl.epoch_states(1, suite, etm, kb, Rng(6), client=False, read_cid=cid)[1] for _ in range(3)]
    w.seq = seq
    rec = w.protect(ctype, plaintext)
    r = readers[0]
    got = r.open(rec)
    if cid:
        # DTLSInnerPlaintext: content || real type || zero padding (RFC 9146 4); a type 0 is
        # padding, so the last non-zero byte is the type (none: the record is dropped)
        inner = (plaintext + bytes((ctype,))).rstrip(b"\x00")
        assert got == (inner or None)
    else:
        assert got == plaintext
    assert r.open(rec) is None  # a replay
    bad = mutate(rec, muts)
    out = readers[1].open(bad) if bad and rl.record_end(bad, 0, len(cid)) == len(bad) else None
    # The header's version and length fields are not MAC input (length is implied): only
    # changes elsewhere must make the record fail.
    h = rl.HEADER_LEN + (len(cid) if rec[0] == rl.CT_TLS12_CID else 0)
    if len(bad) != len(rec) or any(bad[i] != rec[i] for i in range(len(rec)) if i not in (1, 2, h - 2, h - 1)):
        assert out is None, "a changed record authenticated"
    elif out is not None:
        assert out == got
    fake = struct.pack(">BHHHIH", rl.CT_TLS12_CID if cid else rl.CT_APPLICATION_DATA, 0xFEFD, 1, 0, 7,
                       len(junk) + len(cid))
    fake = fake[:11] + cid + fake[11:] + junk
    assert readers[2].open(fake) is None


# ---- handshake decoders --------------------------------------------------------------------

_OFFERED = [rl.SUITE_PSK_AES_128_CCM_8, rl.SUITE_PSK_AES_128_CBC_SHA256]
_ext = st.tuples(st.sampled_from([0xFF01, 23, 22, 54, 0, 13, 0xFFFF]),
                 st.one_of(st.just(b""), st.just(b"\x00"), st.just(b"\x04abcd"), st.binary(max_size=8)))
_server_hello_parts = st.tuples(
    st.sampled_from([0xFEFD] * 4 + [0xFEFF, 0x0303]), st.binary(min_size=32, max_size=32),
    st.binary(max_size=40), st.sampled_from(_OFFERED * 3 + [rl.SUITE_PSK_AES_128_CCM, 0x00FF, 0]),
    st.sampled_from([0, 0, 1]), st.one_of(st.none(), st.lists(_ext, max_size=5)),
    st.sampled_from([b"", b"", b"", b"\x00", b"\x00\x00", b"\x00\x00\x00\x00"]))


def _server_hello_body(parts):
    version, random, sid, suite, compression, exts, tail = parts
    body = struct.pack(">H32sB", version, random, len(sid)) + sid + struct.pack(">HB", suite, compression)
    if exts is not None:
        e = b"".join(struct.pack(">HH", t, len(d)) + d for t, d in exts)
        body += struct.pack(">H", len(e)) + e
    return body + tail


@target(parts=_server_hello_parts, muts=st.lists(mutation, max_size=2),
        raw=st.sampled_from([None, None, None]) | st.binary(max_size=120),
        offered_etm=st.booleans(), offered_cid=st.booleans())
def fuzz_server_hello(parts, muts, raw, offered_etm, offered_cid):
    body = raw if raw is not None else mutate(_server_hello_body(parts), muts)
    try:
        sh = hs.ServerHello(body, _OFFERED, offered_etm, offered_cid)
    except ProtocolError as e:
        assert isinstance(e.alert, int)
        return
    assert body[:2] == b"\xfe\xfd" and len(sh.server_random) == 32
    end = 38 + body[34]  # version, random, session_id, suite, compression
    if len(body) > end:  # then an extensions block, and nothing after it
        assert len(body) == end + 2 + struct.unpack_from(">H", body, end)[0], "trailing bytes accepted"
    else:
        assert len(body) == end
    assert len(sh.session_id) <= 32 and sh.suite in _OFFERED
    assert sh.ems in (True, False) and sh.etm in (True, False)
    assert offered_etm or not sh.etm
    assert sh.cid is None or (offered_cid and len(sh.cid) <= 255)


@target(body=st.one_of(st.binary(max_size=300),
                       st.tuples(st.sampled_from([0xFEFD, 0xFEFF, 0x0303]), st.binary(max_size=260),
                                 st.lists(mutation, max_size=2)).map(
                           lambda t: mutate(struct.pack(">HB", t[0], len(t[1]) & 0xFF) + t[1], t[2]))))
def fuzz_hello_verify(body):
    try:
        cookie = hs.parse_hello_verify_request(body)
    except ProtocolError:
        return
    assert body[:2] in (b"\xfe\xfd", b"\xfe\xff") and body[3:] == cookie and body[2] == len(cookie)


@target(body=st.one_of(st.binary(max_size=100),
                       st.binary(max_size=80).map(lambda h: struct.pack(">H", len(h)) + h),
                       st.tuples(st.binary(max_size=80), st.lists(mutation, max_size=2)).map(
                           lambda t: mutate(struct.pack(">H", len(t[0])) + t[0], t[1]))))
def fuzz_key_exchange(body):
    try:
        hint = hs.parse_server_key_exchange(body)
    except ProtocolError:
        return
    assert body == struct.pack(">H", len(hint)) + hint


@target(data=st.binary(min_size=12, max_size=40), off=st.integers(0, 28))
def fuzz_pull_header(data, off):
    off %= len(data) - 11  # callers check that a whole header is there
    f = hs.pull_header(data, off)
    assert hs.push_header(*f) == data[off:off + 12]
    assert 0 <= f[0] <= 255 and all(0 <= v < 1 << 24 for v in (f[1], f[3], f[4])) and 0 <= f[2] < 1 << 16


# ---- reassembly through Connection.receive() -----------------------------------------------

STAGES = ("hello_verify", "server_hello", "key_exchange", "hello_done", "finished", "connected",
          "resume_hello", "resume_finished", "resume_connected")
_SESSION = []  # a resumable session, made once


def _resume_stage(name):
    """Abbreviated handshake (RFC 5246 7.3): the server answers the ClientHello with ServerHello,
    ChangeCipherSpec and Finished."""
    if not _SESSION:
        c, srv = _stage("connected")
        _SESSION.append(c.session)
    session = _SESSION[0]
    c = cn.Connection(IDENTITY, PSK, rng=Rng(5), session=session)
    srv = FakeServer(cookie=b"")
    srv.sessions = {session.session_id: session.master_secret}
    c.connect(0)
    recs = srv.handle(c.datagrams_to_send()[0])
    if name == "resume_finished":
        c.receive(recs[0], 1)  # the ServerHello only
    elif name == "resume_connected":
        c.receive(b"".join(recs), 1)
        for d in c.datagrams_to_send():
            srv.handle(d)  # our CCS + Finished
    return c, srv


def _stage(name):
    """(client, server) with the client in handshake stage `name`; the server's flight that
    the client expects next is srv.flight (for key_exchange/hello_done: partly delivered)."""
    if name.startswith("resume_"):
        return _resume_stage(name)
    c = cn.Connection(IDENTITY, PSK, rng=Rng(3))
    srv = FakeServer(hint=b"hint")
    c.connect(0)
    out = c.datagrams_to_send()
    if name == "hello_verify":
        srv.handle(out[0])  # now srv.flight is the HelloVerifyRequest the client waits for
        return c, srv
    c.receive(b"".join(srv.handle(out[0])), 1)  # HelloVerifyRequest
    recs = srv.handle(c.datagrams_to_send()[0])  # ServerHello, ServerKeyExchange, ServerHelloDone
    part = {"server_hello": 0, "key_exchange": 1, "hello_done": 2}.get(name)
    if part is not None:
        if part:
            c.receive(b"".join(recs[:part]), 2)
        return c, srv
    c.receive(b"".join(recs), 2)
    answer = []
    for d in c.datagrams_to_send():
        answer += srv.handle(d)  # server's CCS + Finished
    if name == "connected":
        c.receive(b"".join(answer), 3)
    return c, srv


# stage -> (state it is in, state it moves on to once the expected flight is in)
_STAGE_STATES = {
    "hello_verify": (cn.ST_WAIT_SERVER_HELLO, None),  # moves on: a ClientHello with the cookie
    "server_hello": (cn.ST_WAIT_SERVER_HELLO, cn.ST_WAIT_FINISHED),
    "key_exchange": (cn.ST_WAIT_SERVER_KEY_EXCHANGE, cn.ST_WAIT_FINISHED),
    "hello_done": (cn.ST_WAIT_SERVER_HELLO_DONE, cn.ST_WAIT_FINISHED),
    "finished": (cn.ST_WAIT_FINISHED, cn.ST_CONNECTED),
    "connected": (cn.ST_CONNECTED, None),  # nothing to move on to: application data must work
    "resume_hello": (cn.ST_WAIT_SERVER_HELLO, cn.ST_CONNECTED),
    "resume_finished": (cn.ST_WAIT_FINISHED, cn.ST_CONNECTED),
    "resume_connected": (cn.ST_CONNECTED, None),
}


def _progressed(name, c, hvr_before):
    if name == "hello_verify":
        return c.stats.hello_verify and not hvr_before
    return c.state == _STAGE_STATES[name][1]


def _check_clean(c, events):
    """After any input: open with no error, or closed with a DTLSError (or None) and an event."""
    if c.state == cn.ST_CLOSED:
        assert events and events[-1][0] == cn.EVENT_CLOSED, events
        assert c.error is None or isinstance(c.error, DTLSError), repr(c.error)
        # receive() turns an unexpected exception into a close with "internal error ...":
        # that is its safety net, not a result; here it is a bug
        assert "internal error" not in str(c.error), repr(c.error)
        assert c.timer() is None
    else:
        assert c.error is None, repr(c.error)


def _genuine_messages(srv):
    """[(epoch, whole message)] of the server's current flight (its handshake messages)."""
    return [(ws.epoch, payload) for ws, ctype, payload in srv.flight if ctype == rl.CT_HANDSHAKE]


def _fragment(msg, start, length):
    """A fragment of the whole message msg (header included) covering [start, start+length)."""
    t, n, mseq, _, _ = hs.pull_header(msg, 0)
    start = start % (n + 1)
    length = min(length, n - start)
    return hs.push_header(t, n, mseq, start, length) + msg[12 + start:12 + start + length]


class _Wire:
    """Records from pieces: epoch 0 in the clear, epoch 1 under the server's keys."""

    def __init__(self, srv):
        self.srv = srv
        self.w0 = rl.WriteState(0, seq=1000)

    def record(self, epoch, ctype, payload):
        ws = self.w0 if epoch == 0 or getattr(self.srv, "write1", None) is None else self.srv.write1
        return ws.protect(ctype, payload)


def _feed(c, datagrams, now):
    for d in datagrams:
        c.receive(d, now)  # must never raise
        c.datagrams_to_send()


_piece = st.one_of(
    # a slice of one of the genuine messages of the expected flight, maybe changed
    st.tuples(st.just("genuine"), st.integers(0, 7), st.integers(0, 200),
              st.one_of(st.integers(0, 200), st.just(10 ** 6)), st.lists(mutation, max_size=1)),
    # a whole message made from a genuine one: maybe another type or message_seq, maybe a
    # changed body (the header says the new length)
    st.tuples(st.just("whole"), st.integers(0, 7), st.sampled_from([None, None, 2, 3, 12, 14, 20]),
              st.sampled_from([None, None, -1, 0, 1, 2, 3]), st.lists(mutation, max_size=2)),
    # a forged fragment: header fields near the expected ones, any body
    st.tuples(st.just("forged"), st.sampled_from([0, 1, 2, 3, 12, 14, 16, 20, 99]),
              st.one_of(st.integers(0, 64), st.integers(0, 5000), st.integers(0, 2 ** 24 - 1)),
              st.integers(-3, 12), st.one_of(st.integers(0, 64), st.integers(0, 2 ** 24 - 1)),
              st.binary(max_size=48), st.booleans()),
    # anything as a handshake record's payload
    st.tuples(st.just("raw"), st.binary(max_size=60)),
    # the server's ChangeCipherSpec (or a wrong one)
    st.tuples(st.just("ccs"), st.sampled_from([b"\x01", b"\x01", b"", b"\x02", b"\x01\x01"])),
)
_placed = st.tuples(_piece, st.sampled_from(["same record", "new record", "new datagram"]),
                    st.sampled_from([None, None, None, 0, 1]))


def _build(srv, pieces):
    """Datagrams from placed pieces: (piece, placement, epoch override)."""
    msgs = _genuine_messages(srv)
    base = hs.pull_header(msgs[0][1], 0)[2]
    wire = _Wire(srv)
    datagrams, recs, cur = [], [], None  # cur: [epoch, ctype, payload] of the open record
    for piece, place, epoch in pieces:
        kind = piece[0]
        ctype = rl.CT_HANDSHAKE
        if kind == "genuine":
            e, msg = msgs[piece[1] % len(msgs)]
            payload = mutate(_fragment(msg, piece[2], piece[3]), piece[4])
        elif kind == "whole":
            _, i, t, dseq, muts = piece
            e, msg = msgs[i % len(msgs)]
            body = mutate(msg[12:], muts)[:4000]
            mseq = hs.pull_header(msg, 0)[2] if dseq is None else max(base + dseq, 0)
            payload = hs.push_header(msg[0] if t is None else t, len(body), mseq, 0, len(body)) + body
        elif kind == "forged":
            _, t, n, dseq, foff, body, consistent = piece
            e = 0
            flen = len(body) if consistent else foff % 97
            payload = hs.push_header(t, n, max(base + dseq, 0) & 0xFFFF, foff & 0xFFFFFF, flen) + body
        elif kind == "raw":
            e, payload = 0, piece[1]
        else:
            e, ctype, payload = 0, rl.CT_CHANGE_CIPHER_SPEC, piece[1]
        if epoch is not None:
            e = epoch
        if cur is not None and place == "same record" and cur[0] == e and cur[1] == ctype:
            cur[2] += payload
            continue
        if cur is not None:
            recs.append(wire.record(*cur))
        if place == "new datagram" and recs:
            datagrams.append(b"".join(recs))
            recs = []
        cur = [e, ctype, payload]
    if cur is not None:
        recs.append(wire.record(*cur))
    if recs:
        datagrams.append(b"".join(recs))
    return datagrams


@target(stage=st.sampled_from(STAGES), pieces=st.lists(_placed, min_size=1, max_size=12))
def fuzz_reassembly(stage, pieces):
    c, srv = _stage(stage)
    hvr_before = c.stats.hello_verify
    assert c.state == _STAGE_STATES[stage][0]
    _feed(c, _build(srv, pieces), 10)
    events = _events(c)
    _check_clean(c, events)
    if c.state == cn.ST_CLOSED or _progressed(stage, c, hvr_before) or c.state != _STAGE_STATES[stage][0]:
        event("junk closed the connection" if c.state == cn.ST_CLOSED else "junk moved the client on")
        return
    event("retransmission after junk")
    # The junk did not move the client on: the server's retransmission must (RFC 6347 4.2.4).
    _feed(c, [b"".join(srv.records())], 20)
    events = _events(c)
    _check_clean(c, events)
    if _STAGE_STATES[stage][0] == cn.ST_CONNECTED:
        if c.state == cn.ST_CONNECTED:
            _feed(c, [srv.app(b"ping")], 30)
            events = _events(c)
            assert (cn.EVENT_DATA, b"ping") in events, events
    else:
        assert c.state == cn.ST_CLOSED or _progressed(stage, c, hvr_before), (c.state, events)


@target(stage=st.sampled_from([s for s in STAGES if _STAGE_STATES[s][0] != cn.ST_CONNECTED]),
        cuts=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 200), st.integers(1, 200)), max_size=12),
        order=st.randoms(use_true_random=False), per_datagram=st.integers(1, 4), dup=st.booleans())
def fuzz_reassembly_order(stage, cuts, order, per_datagram, dup):
    c, srv = _stage(stage)
    hvr_before = c.stats.hello_verify
    msgs = _genuine_messages(srv)
    frags = [(e, _fragment(msg, s, n)) for i, s, n in cuts for e, msg in [msgs[i % len(msgs)]]]
    for e, msg in msgs:  # cover every byte of every message: cut the rest at random points
        n = len(msg) - 12
        pos = 0
        while pos < n or (n == 0 and pos == 0):
            step = order.randint(1, max(n - pos, 1))
            frags.append((e, _fragment(msg, pos, step)))
            pos += step
            if n == 0:
                break
    if dup:
        frags += order.sample(frags, len(frags) // 2)
    order.shuffle(frags)
    # Any order within an epoch; epoch-1 fragments after the ChangeCipherSpec that switches to
    # it (the client keeps only a few records that overtake it).
    wire = _Wire(srv)
    recs = [wire.record(e, rl.CT_HANDSHAKE, f) for e, f in frags if e == 0]
    if any(e == 1 for e, f in frags):
        recs.append(wire.record(0, rl.CT_CHANGE_CIPHER_SPEC, b"\x01"))
    recs += [wire.record(e, rl.CT_HANDSHAKE, f) for e, f in frags if e == 1]
    datagrams = [b"".join(recs[i:i + per_datagram]) for i in range(0, len(recs), per_datagram)]
    _feed(c, datagrams, 10)
    events = _events(c)
    _check_clean(c, events)
    if stage == "hello_verify" and isinstance(c.error, HelloVerifyStorm):
        # Copies of the one HelloVerifyRequest, five of them whole: the client cannot tell
        # them from a full server answering each ClientHello with the same cookie, and ends
        # at the 5th as a storm by design (client_handshake._on_hello_verify_request)
        assert c.error.count >= 5 and (dup or cuts), (c.error, cuts, dup)
        return
    assert c.state != cn.ST_CLOSED, (c.error, events)
    assert _progressed(stage, c, hvr_before), (c.state, c.stats.records_dropped)


# ---- saved state ---------------------------------------------------------------------------

KEY = sm.state_key(PSK, IDENTITY)
_ip = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))


@st.composite
def saved_states(draw):
    suite = draw(st.sampled_from(sorted(rl.SUITES)))
    s = sm.SavedState(
        session_id=draw(st.binary(max_size=32)), master_secret=draw(st.binary(min_size=48, max_size=48)),
        suite=suite, ems=draw(st.booleans()), etm=draw(st.booleans()),
        server=draw(st.none() | st.tuples(_ip, st.integers(1, 65535))),
        local=draw(st.none() | st.tuples(_ip, st.integers(0, 65535))),
        last_exchange_s=draw(st.none() | st.integers(0, 2 ** 32 - 1)))
    if draw(st.booleans()):
        s.has_connection = True
        s.epoch = draw(st.integers(1, 65535))
        s.key_block = draw(st.binary(min_size=rl.key_block_len(suite), max_size=rl.key_block_len(suite)))
        s.write_seq = draw(_seq48)
        s.read_max_seq = draw(st.just(-1) | _seq48)
        w = draw(st.integers(0, 2 ** 64 - 1))
        s.read_window = 0 if s.read_max_seq < 0 else w & ((1 << min(s.read_max_seq + 1, 64)) - 1)
        s.write_cid = draw(st.binary(max_size=20) | st.binary(max_size=255))
        s.read_cid = draw(st.binary(max_size=20))
    return s


_FIELDS = ("session_id", "master_secret", "suite", "ems", "etm", "server", "has_connection", "epoch",
           "key_block", "write_seq", "read_max_seq", "read_window", "write_cid", "read_cid", "local",
           "last_exchange_s")


def _field_offsets(s):
    """{field: (offset, width)} in the blob of s (layout version 1, see dtls_lite/state.py)."""
    out = {"flags": (5, 2), "suite": (7, 2), "session_id length": (9, 1)}
    p = 10 + len(s.session_id) + 48
    for addr in (s.server, s.local):
        p += 2 + len(addr[0]) if addr is not None else 0
    p += 4 if s.last_exchange_s is not None else 0
    if s.has_connection:
        out.update({"epoch": (p, 2), "write_seq": (p + 2, 6), "read_max_seq": (p + 8, 6),
                    "read_window": (p + 14, 8), "write_cid length": (p + 22, 1)})
    return out


_FIELD_NAMES = ["flags", "suite", "session_id length", "epoch", "write_seq", "read_max_seq",
                "read_window", "write_cid length"]


@target(state=saved_states(), muts=st.lists(mutation, max_size=3), retag=st.booleans(),
        field=st.none() | st.tuples(st.sampled_from(_FIELD_NAMES), st.sampled_from([bytes(8), b"\xff" * 8])
                                    | st.binary(min_size=8, max_size=8)),
        raw=st.none() | st.binary(max_size=300), server_choice=st.sampled_from(["own", "none", "other"]))
def fuzz_state_load(state, muts, retag, field, raw, server_choice):
    good = sm.dump(KEY, state)
    if raw is not None:
        blob = raw
    else:
        blob = good
        if field is not None and field[0] in _field_offsets(state):  # one field set to anything
            off, width = _field_offsets(state)[field[0]]
            blob = blob[:off] + field[1][:width] + blob[off + width:]
        blob = mutate(blob, muts)
        if retag and len(blob) > 16:
            blob = blob[:-16] + crypto.hmac_sha256(KEY, blob[:-16])[:16]
    server = {"own": state.server, "none": None, "other": (b"\x7f\x00\x00\x09", 9)}[server_choice]
    try:
        got = sm.load(KEY, blob, server)
    except StateError as e:
        assert isinstance(e.reason, str) and e.reason
        return
    assert server is None or got.server == server
    blob = bytes(blob)
    if blob[2] < sm._VERSION:  # an older version's blob is saved again as the current one
        blob = blob[:2] + bytes([sm._VERSION]) + blob[3:-16]
        blob += crypto.hmac_sha256(KEY, blob)[:16]
    assert sm.dump(KEY, got) == blob  # canonical: one blob per state
    # and what it loaded is consistent (checked here independently of state.py's own checks)
    assert got.suite in rl.SUITES and len(got.session_id) <= 32 and len(got.master_secret) == 48
    for addr in (got.server, got.local):
        assert addr is None or (len(addr[0]) in (4, 16) and 0 <= addr[1] <= 65535)
    if got.has_connection:
        assert 1 <= got.epoch <= 65535 and len(got.key_block) == rl.key_block_len(got.suite)
        assert 0 <= got.write_seq < 2 ** 48 and -1 <= got.read_max_seq < 2 ** 48
        assert 0 <= got.read_window < 2 ** 64
        assert got.read_window >> max(got.read_max_seq + 1, 0) == 0 or got.read_max_seq >= 63


@target(state=saved_states())
def fuzz_state_round_trip(state):
    got = sm.load(KEY, sm.dump(KEY, state), state.server)
    for name in _FIELDS:
        assert getattr(got, name) == getattr(state, name), name


@target(text=st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF:.", max_size=45),
    st.binary(min_size=16, max_size=16).map(lambda b: str(ipaddress.IPv6Address(b))),
    st.binary(min_size=16, max_size=16).map(lambda b: ipaddress.IPv6Address(b).exploded),
    st.binary(min_size=4, max_size=4).map(lambda b: "::ffff:" + str(ipaddress.IPv4Address(b))),
    st.binary(min_size=4, max_size=4).map(lambda b: str(ipaddress.IPv4Address(b)))))
def fuzz_ip_bytes(text):
    try:
        want = socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError:
        want = None
    try:
        got = sm.ip_bytes(text)
    except UsageError:
        got = None
    assert got == want, (text, got, want)


# ---- the short run (CI) --------------------------------------------------------------------

test_record_end = hypothesis_test("record_end", 500)
test_replay_window = hypothesis_test("replay_window", 400)
test_record_open = hypothesis_test("record_open", 400)
test_server_hello = hypothesis_test("server_hello", 600)
test_hello_verify = hypothesis_test("hello_verify", 400)
test_key_exchange = hypothesis_test("key_exchange", 400)
test_pull_header = hypothesis_test("pull_header", 300)
test_reassembly = hypothesis_test("reassembly", 800)
test_reassembly_order = hypothesis_test("reassembly_order", 400)
test_state_load = hypothesis_test("state_load", 800)
test_state_round_trip = hypothesis_test("state_round_trip", 300)
test_ip_bytes = hypothesis_test("ip_bytes", 500)


def test_state_load_older_version_blob():
    # Found by CI: a version 2 (or 1) blob of the same fields loads and saves again as version 3
    s = sm.SavedState(session_id=b"\x01" * 32, master_secret=bytes(48), suite=sorted(rl.SUITES)[0],
                      ems=True, etm=False, server=(b"\x7f\x00\x00\x01", 5684), local=None,
                      last_exchange_s=None)
    for version in (1, 2):
        fuzz_state_load(s, [("set", 2, version)], True, None, None, "own")


def test_every_target_has_a_ci_run():
    ci = [n[len("test_"):] for n in globals() if n.startswith("test_")
          and n not in ("test_every_target_has_a_ci_run", "test_state_load_older_version_blob")]
    assert sorted(ci) == sorted(TARGETS)
