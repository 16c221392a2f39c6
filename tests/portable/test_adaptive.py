# The adaptive wait of a continued wake (issue 15 item 3), both runtimes: the keeper's RTT
# estimate (RFC 6298) and RTO with fake numbers, then DTLSClient over real loopback UDP against
# the scripted FakeServer run in a thread (a server that restarts, is slow, or loses a record).
# Each wake is a new DTLSClient on the same store and local port, as a node's wakes are.
import os

import _thread

from dtls_lite import keeper as kp
from dtls_lite import record as rl
from dtls_lite.client import DTLSClient
from dtls_lite.store import MemoryStore
from fakeserver import IDENTITY, PSK, FakeServer, Rng, records
from test_keeper import LOCAL, SERVER, keeper
from udp import bound as _bound, ms as _ms, sleep_ms as _sleep_ms  # test_aio imports them from here too

TIMEOUT_MS = 2000  # the application's timeout: what a continued wake waited before


# ---- the estimate, fake numbers ----------------------------------------------------------------

def test_first_sample_and_smoothing_follow_rfc_6298():
    k = keeper()
    assert k.srtt is None and k.rto(1000, 5000) == 1000  # RFC 6298 2.1: nothing measured yet
    assert k.rto(1000, 300) == 300  # the caller's timeout bounds it
    k.sample(100)
    assert (k.srtt, k.rttvar) == (100, 50)  # 2.2: SRTT = R, RTTVAR = R/2
    assert k.rto(1000, 5000) == 100 + 4 * 50
    k.sample(180)
    assert (k.srtt, k.rttvar) == ((7 * 100 + 180) // 8, (3 * 50 + 80) // 4)  # 2.3
    for _ in range(60):
        k.sample(100)
    assert k.srtt == 100 and k.rttvar <= 1
    assert k.rto(1000, 5000) == 200  # RTTVAR near 0: SRTT + SRTT, never SRTT alone


def test_bounds_and_back_off():
    k = keeper()
    k.sample(2)  # loopback
    assert k.rto(1000, 5000) == kp.RTO_MIN_MS
    k.sample(2)
    k.backed_off()
    assert k.backoff == 1 and k.srtt == 2  # Karn: no sample from the ambiguous reply
    k = keeper()
    k.sample(100)
    k.backed_off()
    assert k.rto(1000, 5000) == 600  # RFC 6298 5.5: doubled
    for _ in range(10):
        k.backed_off()
    assert k.backoff == 3 and k.rto(1000, 100000) == 300 * 8
    assert k.rto(1000, 1000) == 1000  # never above the caller's timeout
    k.sample(100)
    assert k.backoff == 0  # 5.7: a valid sample ends the back-off
    k = keeper()
    k.sample(10 ** 6)
    assert k.srtt == 0xFFFF  # what the blob holds


def test_estimate_is_saved_with_the_keys():
    from test_keeper import connected
    k = keeper()
    k.sample(120)
    k.sample(80)
    k.backed_off()
    k.persist(connected(), LOCAL, 990)
    k2 = keeper(k.store)
    assert k2.load() is not None
    assert (k2.srtt, k2.rttvar, k2.backoff) == (k.srtt, k.rttvar, 1)
    k3 = keeper()  # nothing measured: nothing written, and a load gives the default
    k3.persist(connected(), LOCAL, 990)
    k4 = keeper(k3.store)
    assert k4.load().srtt_ms is None and k4.srtt is None and k4.rto(700, 5000) == 700


# ---- over a real socket ------------------------------------------------------------------------

class UdpServer:
    """FakeServer behind a loopback UDP socket, in a thread: answers handshakes and echoes
    application data, every answer delay_ms late; drops the next drop_app application
    records; restart() forgets every connection and session (a server process restarted)."""

    def __init__(self):
        self.sock, self.port = _bound()
        self.sock.settimeout(0.02)
        self.restart()
        self.delay_ms = 0
        self.drop_app = 0
        self.drop_reply = 0
        self.app_data = []  # every application payload that arrived
        self.app_seqs = []  # (epoch, seq) of every application record that arrived
        self.done = False
        self.stopped = False
        _thread.start_new_thread(self._serve, ())

    def restart(self):
        self.srv = FakeServer(cookie=b"", session_id=os.urandom(32))

    def _serve(self):
        try:
            while not self.done:
                try:
                    data, addr = self.sock.recvfrom(2048)
                except OSError:
                    continue
                self._one(data, addr)
        finally:
            self.stopped = True

    def _one(self, data, addr):
        srv = self.srv
        n = len(srv.received)
        answer = srv.handle(data)
        out = []
        if answer:
            out.append(b"".join(answer))
        for ctype, plain in srv.received[n:]:
            if ctype != rl.CT_APPLICATION_DATA:
                continue
            self.app_seqs += [(r[1], r[2]) for r in records(data) if r[1] == 1]
            if self.drop_app:
                self.drop_app -= 1
                continue
            self.app_data.append(plain)
            reply = srv.app(plain)
            if self.drop_reply:
                self.drop_reply -= 1
                continue
            out.append(reply)
        if out and self.delay_ms:
            _sleep_ms(self.delay_ms)
        for d in out:
            self.sock.sendto(d, addr)

    def close(self):
        self.done = True
        for _ in range(100):
            if self.stopped:
                break
            _sleep_ms(10)
        self.sock.close()


class Node:
    """One node's wakes: a store and a fixed local port, a new DTLSClient per wake."""

    def __init__(self, server):
        self.server = server
        self.store = MemoryStore()
        s, self.port = _bound()
        s.close()
        self.n = 0

    def wake(self):
        self.n += 1
        return DTLSClient("127.0.0.1", self.server.port, IDENTITY, PSK, bind=("127.0.0.1", self.port),
                          local=("127.0.0.1", self.port), store=self.store, rng=Rng(self.n),
                          wall_clock=lambda: 1000)

    def request(self, c, text):
        t0 = _ms()
        reply = c.request(text, TIMEOUT_MS)
        took = _ms() - t0
        c.suspend()
        assert reply == text, (reply, text)
        return took


def _learn(node, wakes):
    """A first wake (full handshake), then continued ones: the estimate of this server."""
    c = node.wake()
    assert c.wake_action == "full"
    node.request(c, b"first")
    for i in range(wakes):
        c = node.wake()
        assert c.wake_action == "continue"
        node.request(c, b"learn")
        assert c.stats.handshake_kind == "continued" and c.retries == 0


def test_restarted_server_costs_three_rto_and_a_handshake():
    srv = UdpServer()
    try:
        node = Node(srv)
        _learn(node, 2)
        srv.restart()
        c = node.wake()
        assert c.wake_action == "continue"
        took = node.request(c, b"after the restart")
        st = c.stats
        assert st.handshake_kind == "full" and c.wake_reason == "the continued connection got no reply"
        assert c.retries == 1 and c.rto_ms < TIMEOUT_MS // 4, c.rto_ms
        # 3 RTO of silence, the handshake, one exchange; 100 ms for the host (loaded cores, GC)
        assert took <= 3 * c.rto_ms + st.handshake_ms + 100, (took, c.rto_ms, st.handshake_ms)
        assert took < TIMEOUT_MS // 2, took  # it waited TIMEOUT_MS before
    finally:
        srv.close()


def test_slow_but_live_server_needs_no_handshake():
    srv = UdpServer()
    try:
        srv.delay_ms = 40
        node = Node(srv)
        _learn(node, 3)
        k = kp.Keeper(IDENTITY, PSK, None, node.store, None, None, lambda: 1000)
        k.load()
        assert 35 <= k.srtt <= 200, k.srtt  # about the delay (plus the server's crypto)
        srv.delay_ms = 3 * k.srtt  # the server gets three times slower
        c = node.wake()
        node.request(c, b"slow")
        assert c.stats.handshake_kind == "continued" and c.wire["handshake_datagrams"] == 0
        assert c.wake_action == "continue"
    finally:
        srv.close()


def test_no_timeout_still_waits_rto_then_resumes():
    # request(data, None): no bound from the caller; the RTO rule alone decides the fallback
    srv = UdpServer()
    try:
        node = Node(srv)
        _learn(node, 1)
        srv.restart()
        c = node.wake()
        assert c.request(b"unbounded", None) == b"unbounded"
        assert c.stats.handshake_kind == "full" and c.retries == 1 and c.rto_ms < 1000, c.rto_ms
        c.suspend()
    finally:
        srv.close()


def test_silence_after_an_answer_this_wake_is_loss_not_a_forgotten_connection():
    # a second request of a continued wake whose record is lost: the server already answered
    # this wake, so no fallback handshake; request() returns None and the connection goes on
    srv = UdpServer()
    try:
        node = Node(srv)
        _learn(node, 1)
        c = node.wake()
        assert c.request(b"one", TIMEOUT_MS) == b"one"
        srv.drop_app = 1
        assert c.request(b"lost", 300) is None
        assert c.request(b"three", TIMEOUT_MS) == b"three"
        assert c.stats.handshake_kind == "continued" and c.wire["handshake_datagrams"] == 0
        assert c.wake_action == "continue" and c.retries == 0
        c.suspend()
    finally:
        srv.close()


def test_lost_record_costs_a_retry_with_a_new_sequence_number():
    srv = UdpServer()
    try:
        node = Node(srv)
        _learn(node, 1)
        srv.drop_app = 1  # the link loses the first record of the next wake
        seen = len(srv.app_seqs)
        c = node.wake()
        node.request(c, b"lossy")
        assert c.stats.handshake_kind == "continued" and c.retries == 1
        first, retry = srv.app_seqs[seen:seen + 2]
        assert first[0] == retry[0] == 1 and retry[1] > first[1]  # never the same nonce
        k = kp.Keeper(IDENTITY, PSK, None, node.store, None, None, lambda: 1000)
        k.load()
        assert k.backoff == 1  # Karn: the next wake waits twice as long first, then measures
        c = node.wake()
        node.request(c, b"clean")
        assert c.retries == 0
        k.load()
        assert k.backoff == 0
    finally:
        srv.close()


def test_lost_reply_costs_a_retry_and_delivers_the_data_twice():
    # the price the README names: the server got the first copy, only its reply was lost
    srv = UdpServer()
    try:
        node = Node(srv)
        _learn(node, 1)
        srv.drop_reply = 1
        seen = len(srv.app_data)
        c = node.wake()
        node.request(c, b"reply lost")
        assert c.stats.handshake_kind == "continued" and c.retries == 1
        assert srv.app_data[seen:] == [b"reply lost", b"reply lost"]
    finally:
        srv.close()
