# The application counter kept with the keys (keeper.Keeper.take, DTLSClient.reserve_counter):
# CoAP message IDs and tokens (dtls_lite/coap.py) come from it, so a value is never handed out
# twice across deep sleep, crashes, power cuts during a save and new handshakes. Both runtimes:
# the keeper with a Connection restored from a made-up state (no handshake: its code and the
# scripted server would not fit the emulated ESP32's heap beside this module). DTLSClient's
# counter over loopback UDP: test_counter_client.py.
from dtls_lite import connection as cn
from dtls_lite import record as rl
from dtls_lite import state
from dtls_lite.errors import ConnectionClosed
from dtls_lite.keeper import COUNTER_RESERVE, Keeper
from dtls_lite.store import MemoryStore

IDENTITY = b"Client_identity"
PSK = b"secretPSK"
SERVER = (b"\x7f\x00\x00\x01", 5684)
LOCAL = (b"\x7f\x00\x00\x02", 40000)


def Rng(seed):
    """A deterministic stand-in for os.urandom (this module's own: fakeserver's is heavier)."""
    return lambda n: bytes((seed * 37 + i) & 0xFF for i in range(n))


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def keeper(store=None):
    return Keeper(IDENTITY, PSK, SERVER, store if store is not None else MemoryStore(), None, None,
                  lambda: 1000)


def connected():
    """A connected Connection: the keeper needs only its session and epoch."""
    suite = rl.SUITE_PSK_AES_128_CCM_8
    st = state.SavedState(session_id=b"\x5a" * 32, master_secret=b"\x01" * 48, suite=suite, ems=True,
                          has_connection=True, epoch=1, key_block=bytes(rl.key_block_len(suite)))
    c = cn.Connection(IDENTITY, PSK, rng=Rng(3))
    c.restore(st, 0)
    assert c.state == cn.ST_CONNECTED
    return c


def stored(k):
    return state.load(k.key, k.store.load(), SERVER)


class FailingStore(MemoryStore):
    """A store whose next save fails (a power cut or a full flash: nothing is written)."""
    fail = False

    def save(self, data):
        if self.fail:
            raise OSError(28, "test: no space")
        MemoryStore.save(self, data)


def test_first_boot_is_random_then_consecutive_and_reserved_first():
    k = keeper()
    c = connected()
    first = k.take(1, Rng(7), c, LOCAL, 990)
    assert first == int.from_bytes(Rng(7)(4), "big")  # RFC 7252 4.4: a random start
    assert k.take(3, Rng(8), c, LOCAL, 990) == (first + 1) & 0xFFFFFFFF
    assert k.take(1, Rng(9), c, LOCAL, 990) == (first + 4) & 0xFFFFFFFF
    # stored before being handed out: the store's reservation is above every value given
    assert stored(k).app_counter == (first + 1 + COUNTER_RESERVE) & 0xFFFFFFFF
    assert keeper().take(1, Rng(8), connected(), LOCAL, 990) != first  # another boot, another start


def test_values_inside_the_reservation_cost_no_store_write():
    k = keeper()
    c = connected()
    k.take(1, Rng(1), c, LOCAL, 990)
    blob = k.store.load()
    for _ in range(COUNTER_RESERVE):  # the first value's save reserved these too
        k.take(1, Rng(1), c, LOCAL, 990)
    assert k.store.load() is blob
    k.take(1, Rng(1), c, LOCAL, 990)  # past it: a new reservation first
    assert k.store.load() is not blob


def test_a_crash_after_take_never_repeats_a_value():
    k = keeper()
    c = connected()
    given = [k.take(1, Rng(3), c, LOCAL, 990) for _ in range(40)]
    # the process dies here: nothing saved after the last take
    k2 = keeper(k.store)
    assert k2.load() is not None
    more = [k2.take(1, Rng(4), connected(), LOCAL, 990) for _ in range(40)]
    assert len(set(given + more)) == 80
    assert min(more) > max(given) or (max(given) - min(more)) > 0x7FFFFFFF  # onwards (mod 2**32)


def test_the_counter_goes_on_across_saves_and_new_connections():
    k = keeper()
    a = k.take(1, Rng(5), connected(), LOCAL, 990)
    k.persist(connected(), LOCAL, 991)  # a new full handshake's keys, the same counter
    k2 = keeper(k.store)
    k2.load()
    b = k2.take(1, Rng(6), connected(), LOCAL, 992)
    assert b == (a + 1 + COUNTER_RESERVE) & 0xFFFFFFFF  # the reservation, not a random start


def test_a_failed_save_hands_out_nothing():
    s = FailingStore()
    k = keeper(s)
    c = connected()
    a = k.take(1, Rng(2), c, LOCAL, 990)
    for _ in range(COUNTER_RESERVE):
        k.take(1, Rng(2), c, LOCAL, 990)
    s.fail = True
    raises(OSError, k.take, 1, Rng(2), c, LOCAL, 990)
    raises(OSError, k.take, 1, Rng(2), c, LOCAL, 990)
    s.fail = False
    assert k.take(1, Rng(2), c, LOCAL, 990) == (a + COUNTER_RESERVE + 1) & 0xFFFFFFFF  # none skipped


def test_a_failed_connection_hands_out_nothing():
    from dtls_lite import connection as cn
    k = keeper()
    c = connected()
    a = k.take(1, Rng(2), c, LOCAL, 990)
    k.take(COUNTER_RESERVE, Rng(2), c, LOCAL, 990)  # the reservation used up
    c.fail(cn.DTLSError("test: failed"), 80)
    e = raises(ConnectionClosed, k.take, 1, Rng(2), c, LOCAL, 990)
    assert "counter" in str(e)
    assert k.counter == a + 1 + COUNTER_RESERVE


def test_wraps_at_32_bits_and_session_store_keeps_no_counter():
    ss = MemoryStore()
    k = Keeper(IDENTITY, PSK, SERVER, MemoryStore(), ss, None, lambda: 1000)
    c = connected()
    top = b"\xff\xff\xff\xfe"
    vals = [k.take(1, lambda n: top[:n], c, LOCAL, 990) for _ in range(4)]
    assert vals == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1]
    assert stored(k).app_counter == (0xFFFFFFFE + 1 + COUNTER_RESERVE) & 0xFFFFFFFF
    d = state.load(k.key, ss.load(), SERVER)
    assert d.app_counter is None and d.app_data == b"" and not d.has_connection
    # only the session store left (RTC memory lost): a random start, never the stale copy
    k2 = Keeper(IDENTITY, PSK, SERVER, MemoryStore(), ss, None, lambda: 1000)
    assert k2.load() is not None and k2.counter is None


def test_without_a_store_the_counter_lives_in_memory():
    k = Keeper(IDENTITY, PSK, SERVER, None, MemoryStore(), None, lambda: 1000)
    c = connected()
    a = k.take(2, Rng(1), c, LOCAL, 990)
    assert k.take(1, Rng(1), c, LOCAL, 990) == a + 2
