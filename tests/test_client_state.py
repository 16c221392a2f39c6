"""The stateful adapter against a real server (pion, loopback): every record that leaves under
stored keys is below the reservation the store holds at that moment (DESIGN.md section 4),
probing keeps the old state when a handshake fails, and misuse is refused. CPython; the same
flows run on MicroPython through tools/wake.py in test_wake_scenarios.py."""
import pytest

import peers
from dtls_lite import state
from dtls_lite.client import DTLSClient
from dtls_lite.errors import HandshakeTimeout, UsageError
from dtls_lite.store import MemoryStore

pytestmark = pytest.mark.interop
PSK = bytes.fromhex(peers.PSK_HEX)
ID = peers.IDENTITY.encode()


class WatchedStore(MemoryStore):
    """Remembers the write_seq reservation of every save."""

    def __init__(self, server):
        super().__init__()
        self.server = server
        self.reservations = []

    def save(self, data):
        super().save(data)
        st = state.load(state.state_key(PSK, ID), data, self.server)
        self.reservations.append(st.write_seq if st.has_connection else None)


class _Watched:
    """The client's socket, noting each epoch-1 record's sequence number and the reservation
    the store held when it left."""

    def __init__(self, sock, store, sent):
        self._s, self._store, self._sent = sock, store, sent

    def send(self, d):
        if d[0] != 22 and (d[3] << 8 | d[4]) == 1:  # an epoch-1 record (one per datagram here)
            r = self._store.reservations
            self._sent.append((int.from_bytes(d[5:11], "big"), r[-1] if r else None))
        return self._s.send(d)

    def __getattr__(self, name):
        return getattr(self._s, name)


def watch_sends(client, store, sent):
    client._sock = _Watched(client._sock, store, sent)


def test_records_never_pass_the_stored_reservation():
    with peers.pion_server(cookie=False) as srv:
        bind = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
        key = (state.ip_bytes(srv.host), srv.port)
        store = WatchedStore(key)
        c = DTLSClient(srv.host, srv.port, ID, PSK, bind=bind, store=store)
        assert c.wake_action == "full" and store.reservations  # saved once the handshake finished
        sent = []
        watch_sends(c, store, sent)
        for i in range(150):  # more than two reservations' worth (64 each)
            assert c.request(b"r%d" % i, 2000) == b"r%d" % i
        c.suspend()
        assert len(sent) == 150 and len(store.reservations) >= 3
        for seq, reserved in sent:
            assert reserved is not None and seq < reserved, (seq, reserved)
        # the next wake continues from the reservation, above everything sent
        c2 = DTLSClient(srv.host, srv.port, ID, PSK, bind=bind, store=store)
        assert c2.wake_action == "continue"
        sent2 = []
        watch_sends(c2, store, sent2)
        assert c2.request(b"after", 2000) == b"after"
        assert sent2[0][0] > max(s for s, _ in sent) and sent2[0][0] < sent2[0][1]
        c2.suspend()


def test_failed_handshake_keeps_the_stored_state():
    with peers.pion_server(cookie=False) as srv:
        bind = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
        store = MemoryStore()
        c = DTLSClient(srv.host, srv.port, ID, PSK, bind=bind, store=store)
        c.suspend()
        before = store.load()
        port = srv.port
    # the server is gone: a forced resumption times out, and the state is still there
    c = DTLSClient("127.0.0.1", port, ID, PSK, bind=bind, store=store, connect=False,
                   initial_timeout_ms=50, max_retransmits=2)
    c.force_resume()
    with pytest.raises(HandshakeTimeout):
        c.connect()
    c.suspend()
    c.close()
    assert store.load() == before


def test_misuse_is_refused():
    with peers.pion_server(cookie=False) as srv:
        with pytest.raises(UsageError):
            DTLSClient(srv.host, srv.port, ID, PSK, store=object())
        with pytest.raises(UsageError):
            DTLSClient(srv.host, srv.port, ID, PSK, auto_handshake_timeout_s=-1)
        c = DTLSClient(srv.host, srv.port, ID, PSK)
        with pytest.raises(UsageError):
            c.save()  # no store
        c.close()


def test_unreadable_store_means_full_handshake():
    class Broken(MemoryStore):
        def load(self):
            raise OSError(5, "I/O error")

    with peers.pion_server(cookie=False) as srv:
        c = DTLSClient(srv.host, srv.port, ID, PSK, store=Broken())
        assert c.wake_action == "full" and "could not be read" in str(c.state_error)
        c.close()


def test_close_notify_at_the_reservation_edge_drops_the_keys_first():
    """close() when the next record is past the reservation: the store then holds only the
    session (the keys can never be continued), so the close_notify may leave."""
    with peers.pion_server(cookie=False) as srv:
        bind = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
        key = (state.ip_bytes(srv.host), srv.port)
        store = WatchedStore(key)
        c = DTLSClient(srv.host, srv.port, ID, PSK, bind=bind, store=store)
        c.conn.write_state.left = 0  # as if the reservation ended right here
        sent = []
        watch_sends(c, store, sent)
        c.close()
        assert store.reservations[-1] is None  # session only
        assert len(sent) == 1  # the close_notify went out after that save
        assert state.load(state.state_key(PSK, ID), store.load(), key).has_connection is False


def test_failed_connection_never_sends_past_the_reservation():
    """A connection that failed (nothing more is saved) keeps records at or above the stored
    reservation to itself: a later continued wake would number records from there."""
    from dtls_lite.errors import ProtocolError
    with peers.pion_server(cookie=False) as srv:
        bind = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
        key = (state.ip_bytes(srv.host), srv.port)
        store = WatchedStore(key)
        c = DTLSClient(srv.host, srv.port, ID, PSK, bind=bind, store=store)
        saved = store.load()
        c.conn.write_state.left = 0  # the reservation ends right here
        sent = []
        watch_sends(c, store, sent)
        c.conn.fail(ProtocolError(10, "test: a fatal alert is queued"), 10)
        c._transmit()
        assert sent == [] and store.load() == saved
        c.suspend()
        assert store.load() == saved


def test_session_store_is_written_only_when_the_session_changes():
    class Counting(MemoryStore):
        saves = 0

        def save(self, data):
            self.saves += 1
            super().save(data)

    with peers.pion_server(cookie=False) as srv:
        bind = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
        rtc, flash = MemoryStore(), Counting()
        c = DTLSClient(srv.host, srv.port, ID, PSK, bind=bind, store=rtc, session_store=flash)
        assert c.request(b"1") == b"1"
        c.suspend()
        assert flash.saves == 1 and rtc.load() is not None
        for i in range(3):  # continued wakes: RTC memory rewritten, flash left alone
            c = DTLSClient(srv.host, srv.port, ID, PSK, bind=bind, store=rtc, session_store=flash)
            assert c.wake_action == "continue" and c.request(b"x") == b"x"
            c.suspend()
        assert flash.saves == 1
        rtc.clear()  # power loss: RTC memory gone, the session comes from flash
        c = DTLSClient(srv.host, srv.port, ID, PSK, bind=bind, store=rtc, session_store=flash)
        assert c.wake_action == "abbreviated" and c.wake_reason == "only the session was saved"
        assert c.request(b"y") == b"y"
        c.suspend()
        assert flash.saves == 1  # a resumed session is the same session
