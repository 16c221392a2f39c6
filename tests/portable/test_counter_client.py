# DTLSClient.reserve_counter and app_data (the application counter kept with the keys; its
# keeper side is test_counter.py): wakes over loopback UDP against test_adaptive's threaded
# FakeServer. Both runtimes. A module of its own so that test_counter's keeper tests start from
# a fresh heap on the emulated ESP32: these tests leave test_adaptive's code loaded there.
from dtls_lite.errors import UsageError
from dtls_lite.store import MemoryStore
from fakeserver import IDENTITY, PSK, Rng
from helpers import raises
from test_adaptive import Node, UdpServer


class CountingStore(MemoryStore):
    def __init__(self):
        MemoryStore.__init__(self)
        self.saves = 0

    def save(self, data):
        self.saves += 1
        MemoryStore.save(self, data)


def test_client_counter_across_wakes_restart_and_no_extra_store_write():
    srv = UdpServer()
    try:
        node = Node(srv)
        node.store = CountingStore()
        c = node.wake()
        assert c.wake_action == "full"
        given = [c.reserve_counter() for _ in range(3)]
        node.request(c, b"one")
        c = node.wake()
        assert c.wake_action == "continue"
        saves = node.store.saves
        v = c.reserve_counter()  # the continued wake's one save (the sequence reservation too)
        assert node.store.saves == saves + 1
        node.request(c, b"two")  # its record needs no second save before it leaves
        assert node.store.saves == saves + 2  # and suspend()'s
        given.append(v)
        srv.restart()  # the server forgot everything: the fallback handshake
        c = node.wake()
        given.append(c.reserve_counter())
        reply = c.request(b"three", 2000)
        assert reply == b"three" and c.conn.stats.handshake_kind in ("full", "abbreviated")
        given.append(c.reserve_counter())
        c.suspend()
        c = node.wake()
        given += [c.reserve_counter(2), c.reserve_counter()]
        c.suspend()
        assert len(set(given)) == len(given), given
        for a, b in zip(given, given[1:]):
            assert 0 < (b - a) & 0xFFFFFFFF < 0x10000, (a, b)  # onwards, never back
    finally:
        srv.close()


def test_client_app_data_and_misuse():
    srv = UdpServer()
    try:
        node = Node(srv)
        c = node.wake()
        for bad in (0, -1, 0x10001, True, 1.0, "1"):
            raises(UsageError, c.reserve_counter, bad)
        c.app_data = b"\x01\x02"
        raises(UsageError, setattr, c, "app_data", bytes(65))
        raises(UsageError, setattr, c, "app_data", "text")
        c.suspend()
        c = node.wake()
        assert c.app_data == b"\x01\x02"
        c.suspend()
        from dtls_lite.client import DTLSClient
        c = DTLSClient("127.0.0.1", srv.port, IDENTITY, PSK, connect=False, store=MemoryStore())
        try:
            e = raises(UsageError, c.reserve_counter)
            assert "connect() first" in str(e)
        finally:
            c.close()
        srv.restart()  # FakeServer serves one client at a time
        c = DTLSClient("127.0.0.1", srv.port, IDENTITY, PSK, rng=Rng(11))  # no store: in memory
        try:
            a = c.reserve_counter()
            assert c.reserve_counter() == a + 1
            raises(UsageError, setattr, c, "app_data", b"x")
            assert c.app_data == b""
        finally:
            c.close()
    finally:
        srv.close()
