# The asyncio client (dtls_lite/aio.py, issue 16) on all three runtimes: the wake scenarios
# over real loopback UDP against the scripted FakeServer in a thread (test_adaptive's
# UdpServer: a node's wakes are new clients on one store and port), a ticking task that keeps
# its slots while a handshake retransmits, cancellation, timeouts and misuse. Each test runs
# its own event loop (asyncio.run). The 32-bit MicroPython the tests build freezes no
# modules: asyncio comes from the MicroPython sources it was built from (tools/runtime.py).
import os
import sys

try:
    import asyncio
except ImportError:
    try:
        import uasyncio as asyncio  # MicroPython 1.16 (the emulated ESP32): the client refuses it
    except ImportError:
        for _d in os.listdir(".peers/mp32/src"):  # cwd: the repo root (tests/mp_runner.py)
            if _d.startswith("micropython-"):
                sys.path.append(".peers/mp32/src/" + _d + "/extmod")
        import asyncio

if sys.implementation.name == "micropython" and not hasattr(getattr(asyncio, "StreamReader", None), "readinto"):
    # MicroPython 1.16 (the emulated ESP32's firmware): AsyncDTLSClient refuses it, and what
    # follows would not even fit its heap; say why at once (tests/esp32emu: VERSION_BOUND)
    raise ImportError("AsyncDTLSClient needs MicroPython 1.17 or newer (Stream.readinto)")

from dtls_lite import record as rl
from dtls_lite.aio import AsyncDTLSClient
from dtls_lite.errors import HandshakeTimeout, UsageError
from dtls_lite.store import MemoryStore
from fakeserver import IDENTITY, PSK, FakeServer, Rng, records
from test_adaptive import UdpServer, _bound, _ms, _sleep_ms

CID = b"\xc1\xd0\x5e"


def _sleep(ms):
    return asyncio.sleep_ms(ms) if hasattr(asyncio, "sleep_ms") else asyncio.sleep(ms / 1000)


class Server(UdpServer):
    """test_adaptive's UdpServer as a server of many handshakes: a new ClientHello while an
    association exists starts a fresh FakeServer that keeps every session (resumable) and the
    CID it grants; lose_hs handshake datagrams from the client are lost first. Application
    records are read with the CID's length (tls12_cid, RFC 9146)."""

    lose_hs = 0
    cid = None

    def restart(self):
        UdpServer.restart(self)
        self.sessions = {}

    def _one(self, data, addr):
        if data[0] == rl.CT_HANDSHAKE:
            if self.lose_hs:
                self.lose_hs -= 1
                return
            old = self.srv
            if old.read is not None:  # an association exists: this ClientHello starts anew
                self.sessions[old.session_id] = old.master
                self.srv = FakeServer(cookie=b"", session_id=os.urandom(32))
                self.srv.sessions = self.sessions
        srv = self.srv
        srv.cid = self.cid
        n = len(srv.received)
        out = []
        answer = srv.handle(data)
        if answer:
            out.append(b"".join(answer))
        for ctype, plain in srv.received[n:]:
            if ctype != rl.CT_APPLICATION_DATA:
                continue
            self.app_seqs += [(id(srv), r[2]) for r in records(data, len(srv.cid_read)) if r[1] == 1]
            if self.drop_app:
                self.drop_app -= 1
                continue
            self.app_data.append(plain)
            out.append(srv.app(plain))
        if out and self.delay_ms:
            _sleep_ms(self.delay_ms)
        for d in out:
            self.sock.sendto(d, addr)


class Node:
    """One node's wakes: a store and a fixed local port, a new AsyncDTLSClient per wake."""

    def __init__(self, server, **options):
        self.server = server
        self.store = MemoryStore()
        s, self.port = _bound()
        s.close()
        self.n = 0
        self.options = options

    def client(self, port=None, **options):
        self.n += 1
        port = port or self.port
        kw = dict(self.options)
        kw.update(options)
        return AsyncDTLSClient("127.0.0.1", self.server.port, IDENTITY, PSK, bind=("127.0.0.1", port),
                               local=("127.0.0.1", port), store=self.store, rng=Rng(self.n),
                               wall_clock=lambda: 1000, **kw)

    async def wake(self, text, port=None, force=False):
        """One wake: connect, one request, suspend (no close_notify). The client."""
        c = self.client(port)
        if force:
            c.force_resume()
        await c.connect()
        reply = await c.request(text, 2000)
        c.suspend()
        assert reply == text, (reply, text)
        return c


def _seqs_unique(srv):
    # (server association, sequence number) of every application record: never a nonce twice
    assert len(set(srv.app_seqs)) == len(srv.app_seqs), srv.app_seqs


# ---- the wake scenarios ------------------------------------------------------------------------

def test_full_continued_abbreviated_forced_and_restarted_wakes():
    srv = Server()

    async def main():
        node = Node(srv)
        c = await node.wake(b"first")
        assert (c.wake_action, c.stats.handshake_kind) == ("full", "full")
        c = await node.wake(b"second")
        assert (c.wake_action, c.stats.handshake_kind) == ("continue", "continued")
        assert c.wire["handshake_datagrams"] == 0 and c.wire["datagrams_sent"] == 1
        fs = srv.srv
        s, other = _bound()
        s.close()
        c = await node.wake(b"moved", port=other)  # a new local port: resume
        assert (c.wake_action, c.stats.handshake_kind) == ("abbreviated", "abbreviated")
        assert c.wake_reason == "local address or port changed" and srv.srv.resumed
        assert srv.srv is not fs  # a new association
        c = await node.wake(b"back", port=other)
        assert c.stats.handshake_kind == "continued"
        fs = srv.srv
        c = await node.wake(b"forced", port=other, force=True)
        assert (c.wake_action, c.stats.handshake_kind) == ("abbreviated", "abbreviated")
        assert srv.srv.resumed and srv.srv is not fs
        srv.restart()  # forgets every connection and session: silence, then the fallback
        t0 = _ms()
        c = await node.wake(b"after the restart", port=other)
        took = _ms() - t0
        assert c.stats.handshake_kind == "full" and c.wake_reason == "the continued connection got no reply"
        assert c.retries == 1 and took < 1500, (c.retries, took)  # 3 RTO, not the 2 s timeout
        c = await node.wake(b"then continued", port=other)
        assert c.stats.handshake_kind == "continued"

    try:
        asyncio.run(main())
    finally:
        srv.close()


def test_connection_id_continues_from_a_new_port():
    srv = Server()
    srv.cid = CID

    async def main():
        node = Node(srv)
        c = await node.wake(b"first")
        assert c.stats.handshake_kind == "full" and c.conn.write_cid == CID
        s, other = _bound()
        s.close()
        c = await node.wake(b"elsewhere", port=other)
        assert c.wake_action == "continue" and c.stats.handshake_kind == "continued"
        assert c.wake_reason == "address changed, but the server gave a connection ID"
        assert c.wire["handshake_datagrams"] == 0
        assert srv.srv.cid_violations == 0 and srv.srv.cid_seen and srv.srv.cid_seen[-1][2] == CID

    try:
        asyncio.run(main())
    finally:
        srv.close()


# ---- other tasks keep running --------------------------------------------------------------------

def test_a_ticking_task_gets_its_slots_while_a_handshake_retransmits():
    srv = Server()
    srv.lose_hs = 3  # the ClientHello and two retransmissions of it are lost
    ticks = []

    async def tick():
        while True:
            await _sleep(10)
            ticks.append(_ms())

    async def main():
        t = asyncio.create_task(tick())
        node = Node(srv, initial_timeout_ms=100)
        c = node.client()
        t0 = _ms()
        await c.connect()
        took = _ms() - t0
        assert await c.request(b"after the loss", 2000) == b"after the loss"
        c.suspend()
        t.cancel()
        st = c.stats
        assert st.retransmissions >= 3 and took >= 100 + 200 + 400, (st.retransmissions, took)
        during = [x for x in ticks if t0 <= x <= t0 + took]
        # a tick every 10 ms: at least a third of them, however loaded the host
        assert len(during) >= took // 30, (len(during), took)
        gaps = [b - a for a, b in zip(during, during[1:])]
        assert gaps and max(gaps) < 150, gaps  # never blocked for a retransmission timeout

    try:
        asyncio.run(main())
    finally:
        srv.close()


# ---- cancellation ------------------------------------------------------------------------------

def test_a_cancelled_request_leaves_the_connection_usable():
    srv = Server()

    async def main():
        node = Node(srv)
        c = node.client()
        await c.connect()
        assert await c.request(b"warm", 2000) == b"warm"
        srv.delay_ms = 300
        task = asyncio.create_task(c.request(b"slow", 2000))
        await _sleep(50)
        task.cancel()
        try:
            await task
            raise AssertionError("not cancelled")
        except asyncio.CancelledError:
            pass
        srv.delay_ms = 0
        # the record went out before the cancel: its late reply is still delivered, in order
        assert await c.recv(2000) == b"slow"
        assert await c.request(b"next", 2000) == b"next"
        assert c.stats.handshake_kind == "full" and c.wire["handshake_datagrams"] > 0
        c.suspend()
        assert srv.app_data[-3:] == [b"warm", b"slow", b"next"][-3:]
        _seqs_unique(srv)
        seqs = [s for e, s in srv.app_seqs]
        assert seqs == sorted(seqs)

    try:
        asyncio.run(main())
    finally:
        srv.close()


def test_a_request_cancelled_in_its_fallback_handshake_finishes_it_next_time():
    srv = Server()

    async def main():
        node = Node(srv, initial_timeout_ms=200)
        c = await node.wake(b"first")
        srv.restart()
        srv.lose_hs = 2  # the fallback's ClientHello and its first retransmission are lost
        c = node.client()
        await c.connect()
        assert c.wake_action == "continue"
        task = asyncio.create_task(c.request(b"lost", 2000))
        for _ in range(200):  # until the fallback's handshake is under way
            await _sleep(10)
            if c.conn.handshake_in_flight:
                break
        assert c.conn.handshake_in_flight and c.wake_reason == "the continued connection got no reply"
        task.cancel()
        try:
            await task
            raise AssertionError("not cancelled")
        except asyncio.CancelledError:
            pass
        # the next call finishes the handshake first, then sends under the new keys
        assert await c.request(b"again", 2000) == b"again"
        assert c.stats.handshake_kind == "full" and c.stats.retransmissions >= 2
        c.suspend()
        c = await node.wake(b"continued")  # what was saved is the new connection
        assert c.stats.handshake_kind == "continued"
        _seqs_unique(srv)

    try:
        asyncio.run(main())
    finally:
        srv.close()


# ---- timeouts and misuse -----------------------------------------------------------------------

def test_timeouts():
    srv = Server()

    async def main():
        c = Node(srv).client()
        await c.connect()
        t0 = _ms()
        assert await c.recv(100) is None
        took = _ms() - t0
        assert 95 <= took < 600, took
        srv.drop_app = 1
        t0 = _ms()
        assert await c.request(b"dropped", 150) is None  # not continued: no fallback
        assert 145 <= _ms() - t0 < 700 and c.stats.handshake_kind == "full"
        assert await c.request(b"kept", 1000) == b"kept"
        await c.send(b"sent")  # send() and recv() apart
        assert await c.recv(1000) == b"sent"
        await c.close()

    # a server that never answers: HandshakeTimeout once the retransmissions are spent
    silent, port = _bound()

    async def unanswered():
        c = AsyncDTLSClient("127.0.0.1", port, IDENTITY, PSK, initial_timeout_ms=50, max_retransmits=2)
        t0 = _ms()
        try:
            await c.connect()
            raise AssertionError("connected to nobody")
        except HandshakeTimeout:
            pass
        took = _ms() - t0
        assert 50 + 100 + 200 <= took < 2000, took
        assert c.stats.retransmissions == 2
        await c.close()
        c = AsyncDTLSClient("127.0.0.1", port, IDENTITY, PSK, initial_timeout_ms=50, max_retransmits=1)
        try:
            async with c:
                raise AssertionError("connected to nobody")
        except HandshakeTimeout:
            pass
        assert c._sock is None  # the failed entry let the socket go (no __aexit__ follows)
        assert await c.recv(10) == b""  # closed

    try:
        asyncio.run(main())
        asyncio.run(unanswered())
    finally:
        srv.close()
        silent.close()


def test_async_with_closes_and_one_task_at_a_time():
    srv = Server()

    async def main():
        node = Node(srv)
        async with node.client() as c:
            assert c.stats.handshake_kind == "full"
            waiter = asyncio.create_task(c.recv(500))
            await _sleep(20)
            try:
                await c.recv(100)
                raise AssertionError("two tasks waited on one socket")
            except UsageError:
                pass
            waiter.cancel()
            try:
                await waiter
            except asyncio.CancelledError:
                pass
            assert await c.request(b"still fine", 2000) == b"still fine"
        for _ in range(100):  # the server's thread reads it when it gets there
            if (rl.CT_ALERT, b"\x01\x00") in srv.srv.received:
                break
            await _sleep(10)
        assert (rl.CT_ALERT, b"\x01\x00") in srv.srv.received  # close_notify (warning)
        assert await c.recv(10) == b""  # closed
        c2 = node.client()
        await c2.connect()  # the store kept the session only: resumed, not continued
        assert c2.wake_action == "abbreviated" and c2.stats.handshake_kind == "abbreviated"
        await c2.close()

    try:
        asyncio.run(main())
    finally:
        srv.close()


def test_client_module_does_not_import_aio():
    # the blocking client never loads the asyncio client (nor asyncio): see tests/test_layout.py
    # for the module graph; here, what a fresh import of dtls_lite.client would pull in
    import dtls_lite.client as cl
    assert not hasattr(cl, "AsyncDTLSClient") and not hasattr(cl, "asyncio")
