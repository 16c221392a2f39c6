# dtls_lite/keeper.py: the facts a wake gives the policy, the sequence reservation written
# before a record past it leaves, probing (a failed connection saves nothing), the fallback of
# a continued connection. Both runtimes; a Connection driven by the scripted FakeServer.
from dtls_lite import connection as cn
from dtls_lite import state
from dtls_lite import wake
from dtls_lite.keeper import RESERVE, Keeper
from dtls_lite.store import MemoryStore
from fakeserver import IDENTITY, PSK, FakeServer, Rng
from helpers import handshake, new_client

SERVER = (b"\x7f\x00\x00\x01", 5684)
LOCAL = (b"\x7f\x00\x00\x02", 40000)


def keeper(store=None, session_store=None, idle_s=None, now=1000):
    return Keeper(IDENTITY, PSK, SERVER, store if store is not None else MemoryStore(), session_store,
                  idle_s, lambda: now)


def connected():
    c = new_client()
    handshake(c, FakeServer(cookie=b""))
    assert c.state == cn.ST_CONNECTED
    return c


def saved_blob(k, c, local=LOCAL, last=990):
    k.persist(c, local, last)
    return k.store.load()


def test_facts_of_each_wake():
    k = keeper()
    suites = new_client().suites
    assert k.facts(None, suites, LOCAL, False) == 0
    assert k.facts(None, suites, LOCAL, True) == wake.FORCED
    blob = saved_blob(k, connected())
    saved = keeper(MemoryStore(blob)).load()
    assert k.facts(saved, suites, LOCAL, False) == wake.SESSION | wake.CONNECTION | wake.SAME_LOCAL
    assert k.facts(saved, suites, (LOCAL[0], 40001), False) == wake.SESSION | wake.CONNECTION
    assert k.facts(saved, suites, None, True) == wake.SESSION | wake.CONNECTION | wake.FORCED
    assert k.facts(saved, [s for s in suites if s != saved.suite], LOCAL, False) == 0  # suite off
    idle = keeper(idle_s=5, now=996)
    assert idle.facts(saved, suites, LOCAL, False) & wake.IDLE  # 996 - 990 > 5
    assert not keeper(idle_s=6, now=996).facts(saved, suites, LOCAL, False) & wake.IDLE
    assert keeper(idle_s=6, now=980).facts(saved, suites, LOCAL, False) & wake.IDLE  # clock went back
    saved.write_cid = b"\x01\x02"
    assert k.facts(saved, suites, None, False) & wake.SERVER_CID


def test_refused_blob_is_no_state_with_a_reason():
    k = keeper(MemoryStore(b"dL\x01junk"))
    assert k.load() is None and "truncated" in str(k.state_error)

    class Broken:
        def load(self):
            raise OSError(5, "EIO")

        def save(self, data):
            raise OSError(5, "EIO")

    k = keeper(Broken())
    assert k.load() is None and "could not be read" in str(k.state_error)


def test_reservation_is_saved_before_a_record_past_it_leaves():
    k = keeper()
    c = connected()
    saved = state.load(k.key, saved_blob(k, c), SERVER)
    assert saved.write_seq == c.next_write_seq[1] + RESERVE and k.reserved
    # a new process continues it: its numbers start at the reservation, none may leave unsaved
    c2 = cn.Connection(IDENTITY, PSK, rng=Rng(9))
    c2.restore(saved, 0)
    k2 = keeper(k.store)
    k2.restored(c2)
    c2.send(b"reading")
    out = c2.datagrams_to_send()
    assert k2.guard(c2, out, LOCAL, 995) == out  # it may leave: a new reservation is stored
    record_seq = int.from_bytes(out[0][5:11], "big")
    stored = state.load(k.key, k.store.load(), SERVER)
    assert record_seq == saved.write_seq and stored.write_seq == record_seq + 1 + RESERVE
    blob = k.store.load()
    for _ in range(RESERVE):  # numbered below the reservation: no store write
        c2.send(b"x")
        k2.guard(c2, c2.datagrams_to_send(), LOCAL, 995)
    assert k.store.load() is blob
    c2.send(b"past it")
    k2.guard(c2, c2.datagrams_to_send(), LOCAL, 995)
    assert state.load(k.key, k.store.load(), SERVER).write_seq == stored.write_seq + 1 + RESERVE


def test_failed_connection_keeps_its_records_and_the_store():
    k = keeper()
    c = connected()
    blob = saved_blob(k, c)
    c.write_state.left = 0  # the reservation ends here
    c.fail(cn.DTLSError("test: failed"), 80)  # a fatal alert is queued
    assert k.guard(c, c.datagrams_to_send(), LOCAL, 995) == ()
    assert k.store.load() == blob  # probing: the older state stays


def test_session_store_gets_the_session_once():
    class Counting(MemoryStore):
        saves = 0

        def save(self, data):
            Counting.saves += 1
            MemoryStore.save(self, data)

    ss = Counting()
    k = keeper(session_store=ss)
    c = connected()
    k.persist(c, LOCAL, 990)
    k.persist(c, LOCAL, 991)
    assert Counting.saves == 1
    assert not state.load(k.key, ss.load(), SERVER).has_connection  # never a reservation


def test_fallback_of_a_continued_connection():
    k = keeper()
    c = connected()
    assert k.fallback(c) == (c.session, "abbreviated")
    c.session.ems = False  # RFC 7627 5.3: not resumable
    assert k.fallback(c) == (c.session, "full")
