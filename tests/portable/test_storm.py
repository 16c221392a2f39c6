# HelloVerifyRequest storms (issue 15 item 4), both runtimes, fake time: a server whose
# connection table is full answers every ClientHello with a HelloVerifyRequest and never a
# ServerHello, and (Californium) changes its cookie key every 60 s. One handshake ends with one
# error type, HelloVerifyStorm, at the 5th HelloVerifyRequest or when its timer gives up,
# whichever comes first; never after minutes, never as ProtocolError or HandshakeTimeout.
import struct

from dtls_lite import connection as cn
from dtls_lite import handshake as hs
from dtls_lite import record as rl
from dtls_lite.errors import HandshakeTimeout, HelloVerifyStorm
from fakeserver import FakeServer, records
from helpers import new_client

RTT = 40  # ms, the fake link's round trip


class FullServer(FakeServer):
    """Every ClientHello gets a HelloVerifyRequest whose cookie comes from a key that changes
    every rotate_ms of fake time (0: a new cookie every time); answer(n) says whether the n-th
    ClientHello (from 1) is answered at all."""

    now = 0

    def __init__(self, rotate_ms=60000, answer=None):
        FakeServer.__init__(self)
        self.rotate_ms = rotate_ms
        self.answer = answer
        self.hellos = 0
        self.cookies = []

    def _on_client_hello(self, msg, mseq, body):
        self.hellos += 1
        if self.answer is not None and not self.answer(self.hellos):
            return []
        key = self.hellos if not self.rotate_ms else self.now // self.rotate_ms
        cookie = bytes((key & 0xFF, key >> 8 & 0xFF)) * 8
        self.cookies.append(cookie)
        hvr = hs.whole_message(hs.HT_HELLO_VERIFY_REQUEST, mseq,
                               struct.pack(">HB", 0xFEFD, len(cookie)) + cookie)
        self.flight = [(self.write0, rl.CT_HANDSHAKE, hvr)]
        return self.records()


def run(c, srv, start=0, until=10 ** 7):
    """Fake time from start: the client's datagrams reach srv after RTT/2, its answers come
    back RTT/2 later; handle_timer() at each deadline. Returns now when the client closed."""
    c.connect(start)
    now = start
    due = []  # [(time, datagram)] on their way to the client
    out = c.datagrams_to_send()
    srv.sent = []  # every datagram the client sent
    for _ in range(100000):
        srv.sent += out
        for d in out:
            srv.now = now + RTT // 2
            for rec in srv.handle(d):
                due.append((now + RTT, rec))
        if c.state == cn.ST_CLOSED or now >= until:
            return now
        t = c.timer()
        nxt = min([x[0] for x in due]) if due else None
        if nxt is not None and (t is None or nxt <= t):
            now = nxt
            for x in [x for x in due if x[0] == now]:
                due.remove(x)
                c.receive(x[1], now)
        else:
            now = t
            c.handle_timer(now)
        out = c.datagrams_to_send()
    raise AssertionError("the handshake never ended")


def hvr_count(srv):
    return len(srv.cookies)


def test_full_server_ends_at_the_fifth_hello_verify_request():
    # The CLI's default timers (1 s doubling, 6 retransmissions: a 123 s schedule per flight,
    # 369 s deadline): the cookie key changes every 60 s, as Californium's does
    c, srv = new_client(), FullServer()
    end = run(c, srv)
    e = c.error
    assert isinstance(e, HelloVerifyStorm), e
    assert e.count == 5 and hvr_count(srv) == 5
    assert e.new_cookies == 1  # the key did not change within these few seconds
    msg = str(e)
    assert "keeps answering with HelloVerifyRequest" in msg and "connection table may be full" in msg, msg
    assert "5 HelloVerifyRequests, 1 of them with a new cookie" in msg, msg
    # first hello, its cookie hello, then the timer's retransmissions at 1, 3 and 7 s
    assert 7000 <= end <= 7000 + 2 * RTT, end
    # no fatal alert: the server holds no state for us, and epoch 0 proves nothing
    assert len(srv.sent) == 5 and all(r[0] == rl.CT_HANDSHAKE for d in srv.sent for r in records(d))


def test_cookie_changing_every_time_ends_at_the_fifth_too():
    # before: ProtocolError (exit 4) after 5 new cookies, or 252 s of a 60 s key rotation
    c, srv = new_client(), FullServer(rotate_ms=0)
    end = run(c, srv)
    e = c.error
    assert isinstance(e, HelloVerifyStorm), e
    assert e.count == 5 and e.new_cookies == 5, (e.count, e.new_cookies)
    assert "5 of them with a new cookie" in str(e)
    assert end <= 5 * RTT, end  # each new cookie is answered at once: five round trips


def test_rotation_that_restarts_the_schedule_meets_the_deadline():
    # Answers only every 4th ClientHello, each time with a cookie of a new key: every new
    # cookie starts the flight's schedule over, so only the count or the deadline can end it.
    c = new_client(initial_timeout_ms=1000, max_retransmits=3, handshake_timeout_ms=20000)
    srv = FullServer(rotate_ms=0, answer=lambda n: n % 4 == 1)
    end = run(c, srv)
    e = c.error
    assert isinstance(e, HelloVerifyStorm), e
    assert e.count < 5 and e.new_cookies == e.count >= 2, (e.count, e.new_cookies)
    assert "handshake_timeout_ms (20000) reached" in str(e), str(e)
    assert 20000 <= end <= 20000 + RTT, end


def test_timer_giving_up_after_a_repeated_hello_verify_request_is_a_storm():
    # before: HandshakeTimeout (exit 3) with --retransmits 3; the same fault, now one answer
    c = new_client(initial_timeout_ms=1000, max_retransmits=1)
    srv = FullServer(answer=lambda n: n <= 2)  # the hello and its cookie hello, then silence
    run(c, srv)
    e = c.error
    assert isinstance(e, HelloVerifyStorm), e
    assert e.count == 2 and e.new_cookies == 1


def test_silence_after_the_cookie_is_still_a_timeout():
    # one HelloVerifyRequest, then nothing: loss or a dead server, not a storm
    c = new_client(initial_timeout_ms=1000, max_retransmits=2)
    srv = FullServer(answer=lambda n: n == 1)
    run(c, srv)
    assert isinstance(c.error, HandshakeTimeout), c.error
    assert "HelloVerifyRequest" not in str(c.error), str(c.error)


def test_a_cookie_key_change_mid_handshake_still_connects():
    # two new cookies (the key changed between the HelloVerifyRequest and our answer), then
    # the server takes the second: well below the count
    c, srv = new_client(), FakeServer()
    c.connect(0)
    out = c.datagrams_to_send()
    for i in range(20):
        if c.state in (cn.ST_CONNECTED, cn.ST_CLOSED):
            break
        if i == 1:
            srv.cookie = b"\x43" * 16  # the key changed: our first cookie is refused
        answer = []
        for d in out:
            answer += srv.handle(d)
        for r in answer:
            c.receive(r, i)
        out = c.datagrams_to_send()
    assert c.state == cn.ST_CONNECTED, c.error
    assert len(srv.client_hellos) == 3 and c.stats.hello_verify


def test_node_defaults_bound_the_radio_time():
    # ports/node.py's timers: a full server that answers every hello costs about 7 s; a
    # server that restarts the schedule with new cookies at most HANDSHAKE_TIMEOUT_MS
    import sys
    i = __file__.rfind("tests/portable/")
    root = __file__[:i - 1] if i > 0 else "."
    if root + "/ports" not in sys.path:
        sys.path.append(root + "/ports")
    import node
    kw = {"initial_timeout_ms": node._DEFAULTS["INITIAL_TIMEOUT_MS"],
          "max_retransmits": node._DEFAULTS["MAX_RETRANSMITS"],
          "handshake_timeout_ms": node._DEFAULTS["HANDSHAKE_TIMEOUT_MS"]}
    limit = node._DEFAULTS["HANDSHAKE_TIMEOUT_MS"]
    c = new_client(**kw)
    end = run(c, FullServer())
    assert isinstance(c.error, HelloVerifyStorm) and end <= 7000 + 2 * RTT, (c.error, end)
    c = new_client(**kw)
    end = run(c, FullServer(rotate_ms=0, answer=lambda n: n % 4 == 1))
    assert isinstance(c.error, HelloVerifyStorm) and end <= limit + RTT, (c.error, end)
    assert limit <= 30000
