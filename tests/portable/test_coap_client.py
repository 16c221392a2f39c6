# dtls_lite/coap.py over the real DTLSClient and AsyncDTLSClient with a store, against
# fakeserver.FakeServer over loopback UDP in a thread (coapfake.Server), on all three runtimes:
# the counter across a continued wake, the fallback of a forgotten connection, a lost request
# retransmitted (the exchange itself: test_coap.py).
import os
import sys

from coapfake import Server, answer, block2_server, bound
from dtls_lite import coap
from dtls_lite.client import DTLSClient
from dtls_lite.errors import UsageError
from dtls_lite.store import MemoryStore
from fakeserver import IDENTITY, PSK, Rng

BODY = bytes(range(256)) * 2


# ---- over the real DTLSClient and AsyncDTLSClient ----------------------------------------------
# coapfake.Server: FakeServer behind loopback UDP in a thread, answering the CoAP requests
# inside its records with the same scripted servers.

class Wakes:
    """A node's wakes: one store and local port, a new DTLSClient (or AsyncDTLSClient) each."""

    def __init__(self, server):
        self.server = server
        self.store = MemoryStore()
        s, self.port = bound()
        s.close()
        self.n = 0

    def client(self, cls=DTLSClient):
        self.n += 1
        return cls("127.0.0.1", self.server.port, IDENTITY, PSK, bind=("127.0.0.1", self.port),
                   local=("127.0.0.1", self.port), store=self.store, rng=Rng(self.n), wall_clock=lambda: 1000)


def _tokens(srv):
    return [int.from_bytes(coap.decode(p).token, "big") for p in srv.app_data]


def test_over_dtlsclient_wakes_and_the_saved_counter():
    srv = Server(block2_server(BODY[:300], 4))  # 256-byte blocks: 2 messages
    try:
        node = Wakes(srv)
        d = node.client()
        assert d.wake_action == "full"
        cc = coap.Client(d)
        r = cc.get("/big", timeout_ms=5000)
        assert r.payload == BODY[:300] and r.code == 0x45
        d.suspend()
        d = node.client()  # deep sleep, then a continued wake: the counter goes on from the store
        assert d.wake_action == "continue"
        r = coap.Client(d).get("/big", block_size=64, timeout_ms=5000)
        assert r.payload == BODY[:300] and d.stats.handshake_kind == "continued"
        d.suspend()
        t = _tokens(srv)
        assert len(t) == 2 + 5 and len(set(t)) == len(t), t  # never a token (or MID) twice
        assert [coap.decode(p).mid for p in srv.app_data] == [v & 0xFFFF for v in t]
        assert t[1] == t[0] + 1 and t[6] == t[2] + 4  # consecutive within a wake
        d = node.client()  # a block's request lost on a continued connection: a CoAP
        srv.drop = (len(srv.app_data) + 1,)  # retransmission, not a DTLS fallback
        cc = coap.Client(d, ack_timeout_ms=200)
        r = cc.get("/big", timeout_ms=5000)
        assert r.payload == BODY[:300] and cc.retransmissions == 1
        assert d.wake_action == "continue" and d.stats.handshake_kind == "continued"
        d.suspend()
        t = _tokens(srv)
        srv.restart()  # the server forgot us: request() resumes and sends the same bytes again
        d = node.client()
        assert d.wake_action == "continue"
        seen = len(srv.app_data)
        r = coap.Client(d).get("/big", timeout_ms=5000)
        assert r.payload == BODY[:300] and d.stats.handshake_kind == "full"
        assert len(srv.app_data) - seen == 2 and _tokens(srv)[-2] not in t  # a new counter value
        d.close()
    finally:
        srv.close()


def test_over_dtlsclient_lost_request_retransmitted():
    srv = Server(lambda link, m: answer(link, m, 0x44, [], b"ok"))
    try:
        d = Wakes(srv).client()
        srv.drop_app = 1
        cc = coap.Client(d, ack_timeout_ms=200)
        r = cc.post("/x", b"v", timeout_ms=5000)
        assert r.payload == b"ok" and cc.retransmissions == 1 and cc.sent == 2
        assert srv.app_data[0] == srv.app_data[1]  # the same message: same MID and token
        d.close()
    finally:
        srv.close()


def _asyncio():
    try:
        import asyncio
    except ImportError:
        try:
            import uasyncio as asyncio  # MicroPython 1.16 (the emulated ESP32)
        except ImportError:
            for d in os.listdir(".peers/mp32/src"):  # cwd: the repo root (tests/mp_runner.py)
                if d.startswith("micropython-"):
                    sys.path.append(".peers/mp32/src/" + d + "/extmod")
            import asyncio
    return asyncio


def test_over_asyncdtlsclient():
    asyncio = _asyncio()
    from dtls_lite.aio import AsyncDTLSClient
    srv = Server(block2_server(BODY[:100], 2))
    try:
        node = Wakes(srv)
        try:
            d = node.client(AsyncDTLSClient)
        except UsageError as e:  # the firmware's asyncio is too old: AsyncDTLSClient says so
            assert "needs MicroPython 1.17" in str(e) and not hasattr(asyncio.StreamReader, "readinto"), e
            return

        async def main(d):
            await d.connect()
            cc = coap.AsyncClient(d)
            r = await cc.get("/big", timeout_ms=5000)
            assert r.payload == BODY[:100] and len(srv.app_data) == 2
            d.suspend()
            d = node.client(AsyncDTLSClient)
            await d.connect()
            assert d.wake_action == "continue"
            srv.drop = (len(srv.app_data) + 1,)  # the second block's request is lost once
            cc = coap.AsyncClient(d, ack_timeout_ms=200)
            r = await cc.fetch("/big", b"{}", timeout_ms=5000)
            assert r.payload == BODY[:100] and coap.decode(srv.app_data[-1]).payload == b"{}"
            assert cc.retransmissions == 1 and d.stats.handshake_kind == "continued"  # no fallback
            await d.close()

        asyncio.run(main(d))
        t = _tokens(srv)
        assert len(set(t)) == len(t) - 1 == 4, t  # the retransmission: the same message
    finally:
        srv.close()
