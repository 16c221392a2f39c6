# Saved-state blobs (dtls_lite/state.py): round trips, size bound, every refusal reason.
# Runs under pytest and under the MicroPython unix port (plain asserts, no fixtures).
import struct

from dtls_lite import crypto
from dtls_lite import record as rl
from dtls_lite import state as sm
from dtls_lite.errors import DTLSError, StateError, UsageError
from helpers import raises

PSK = b"secretPSK"
IDENTITY = b"Client_identity"
KEY = sm.state_key(PSK, IDENTITY)
SERVER6 = (sm.ip_bytes("2001:db8::1"), 5684)
SERVER4 = (sm.ip_bytes("127.0.0.1"), 5684)
FIELDS = ("session_id", "master_secret", "suite", "ems", "etm", "server", "has_connection",
          "epoch", "key_block", "write_seq", "read_max_seq", "read_window", "write_cid",
          "read_cid", "local", "last_exchange_s", "srtt_ms", "rttvar_ms", "rto_backoff",
          "app_counter", "app_data")
# big_state() as the version 1 code (before the rtt field) wrote it: old blobs must still load
V1_BLOB = ("644c0100fa01fdc0a820000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
           "6465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c"
           "8d8e8f90919293163420010db80000000000000000000000019c40fe8000000000000000000000000000"
           "026955b900000100000012d68700000000004d1fffffffffffffff14c1c1c1c1c1c1c1c1c1c1c1c1c1"
           "c1c1c1c1c1c1c114c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2000102030405060708090a0b0c"
           "0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627853114558e46bacf31c9fdd0e991"
           "9138")
# big_state() as the version 2 code (before app_counter, app_data) wrote it
V2_BLOB = ("644c0200ff03fdc0a820000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
           "6465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d"
           "8e8f90919293163420010db80000000000000000000000019c40fe800000000000000000000000000002"
           "6955b90004d2014102000100000012d68700000000004d1fffffffffffffff14c1c1c1c1c1c1c1c1c1c1"
           "c1c1c1c1c1c1c1c1c1c114c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2000102030405060708090a"
           "0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627789230f26965c72fc462d5b759"
           "031290")


def big_state(suite=rl.SUITE_PSK_AES_128_CCM_8):
    """The largest CCM_8 state the issue names: IPv6 both ends, 32-byte ID, 20-byte CIDs."""
    return sm.SavedState(
        session_id=bytes(range(32)), master_secret=bytes(range(100, 148)), suite=suite,
        ems=True, etm=suite == rl.SUITE_PSK_AES_128_CBC_SHA256, server=SERVER6,
        has_connection=True, epoch=1, key_block=bytes(range(rl.key_block_len(suite))),
        write_seq=1234567, read_max_seq=77, read_window=0xFFFFFFFFFFFFFFFF >> 3,
        write_cid=b"\xc1" * 20, read_cid=b"\xc2" * 20, local=(sm.ip_bytes("fe80::2"), 40000),
        last_exchange_s=1767225600, srtt_ms=1234, rttvar_ms=321, rto_backoff=2)


def session_state():
    return sm.SavedState(session_id=b"\x5a" * 32, master_secret=b"\x01" * 48,
                         suite=rl.SUITE_PSK_AES_128_CCM_8, ems=True, server=SERVER4)


def same(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, (bytes, bytearray)):
            x = bytes(x)
        assert x == y and type(x) is type(y), (name, x, y)


def refused(blob, key=KEY, server=SERVER6):
    e = raises(StateError, sm.load, key, blob, server)
    assert isinstance(e, DTLSError) and isinstance(e.reason, str) and e.reason in str(e)
    return e.reason


def retag(blob, key=KEY):
    """blob with a valid tag over whatever it now says: what a buggy writer could produce."""
    return blob[:-16] + crypto.hmac_sha256(key, blob[:-16])[:16]


def patched(blob, off, fmt, *values):
    b = bytearray(blob)
    struct.pack_into(fmt, b, off, *values)
    return retag(bytes(b))


def test_round_trip_preserves_every_field():
    for suite in rl.SUITES:
        st = big_state(suite)
        same(st, sm.load(KEY, sm.dump(KEY, st), SERVER6))
    st = session_state()
    back = sm.load(KEY, sm.dump(KEY, st), SERVER4)
    same(st, back)
    assert back.has_connection is False and back.local is None and back.last_exchange_s is None
    assert back.srtt_ms is None and back.rttvar_ms == 0 and back.rto_backoff == 0


def test_round_trip_extremes():
    st = big_state()
    for w, m, win in ((0, -1, 0), (2 ** 48 - 1, 2 ** 48 - 1, 2 ** 64 - 1), (2 ** 32, 2 ** 32 + 5, 2 ** 63 + 1),
                      (1, 0, 1), (5, 62, 2 ** 63 - 1), (6, 63, 2 ** 64 - 1)):
        st.write_seq, st.read_max_seq, st.read_window = w, m, win
        st.epoch = 65535
        st.session_id = b""
        st.write_cid = b""
        st.read_cid = b"\xff" * 255
        st.last_exchange_s = 0
        same(st, sm.load(KEY, sm.dump(KEY, st), SERVER6))
    st.server = None
    st.local = ("10.1.2.3", 0)  # text is accepted and stored as bytes
    back = sm.load(KEY, sm.dump(KEY, st), None)
    assert back.server is None and back.local == (b"\x0a\x01\x02\x03", 0)


def test_input_may_be_bytearray_or_memoryview():
    blob = sm.dump(KEY, big_state())
    same(big_state(), sm.load(KEY, bytearray(blob), SERVER6))
    same(big_state(), sm.load(KEY, memoryview(blob), SERVER6))
    # the server may be given as text too
    assert sm.load(KEY, blob, ("2001:0db8:0:0::1", 5684)).epoch == 1


def test_size_bound():
    blob = sm.dump(KEY, big_state())
    assert len(blob) <= 256, len(blob)
    assert len(blob) == 255  # 250 in version 1, without rtt
    st = big_state()
    st.app_counter, st.app_data = 0xFFFFFFFF, b"\xa5" * 64
    assert len(sm.dump(KEY, st)) == 324
    assert len(sm.dump(KEY, session_state())) == 10 + 32 + 48 + 6 + 16


def test_refusal_no_state_and_garbage():
    assert refused(None) == "no saved state"
    assert refused(b"") == "no saved state"
    assert refused(bytearray()) == "no saved state"
    assert "not bytes" in refused("dL\x01")
    assert "not bytes" in refused(12345)
    assert "wrong magic" in refused(b"x")
    assert "wrong magic" in refused(b"\x00" * 250)
    assert "too long" in refused(b"dL" + bytes(2000))


def test_refusal_every_truncation_length():
    blob = sm.dump(KEY, big_state())
    for n in range(1, len(blob)):
        r = refused(blob[:n])
        assert "truncated" in r, (n, r)
    assert "header says" in refused(blob + b"\x00")


def test_refusal_unknown_version():
    blob = bytearray(sm.dump(KEY, big_state()))
    blob[2] = 4
    assert refused(bytes(blob)) == "unknown version 4 (this is version 3)"
    blob[2] = 0
    assert "unknown version 0" in refused(retag(bytes(blob)))


def test_version_1_blob_loads_without_rtt():
    from binascii import unhexlify  # MicroPython 1.16 has no bytes.fromhex
    v1 = unhexlify(V1_BLOB)
    back = sm.load(KEY, v1, SERVER6)
    assert back.srtt_ms is None and back.rttvar_ms == 0 and back.rto_backoff == 0
    st = big_state()
    st.srtt_ms, st.rttvar_ms, st.rto_backoff = None, 0, 0
    same(st, back)
    assert sm.dump(KEY, back)[2] == 3 and len(sm.dump(KEY, back)) == 250  # written as version 3
    # version 1 knew no rtt flag: a v1 blob that has it is refused, not half-read
    flags = struct.unpack_from(">H", v1, 5)[0]
    assert "flags" in refused(patched(v1, 5, ">H", flags | 0x200))
    # and a version 2 blob with the flag cleared under it has 5 bytes left over
    blob = sm.dump(KEY, big_state())
    assert "bad lengths" in refused(patched(blob, 5, ">H", struct.unpack_from(">H", blob, 5)[0] & ~0x200))


def test_version_2_blob_loads_without_app_fields():
    from binascii import unhexlify
    v2 = unhexlify(V2_BLOB)
    back = sm.load(KEY, v2, SERVER6)
    assert back.app_counter is None and back.app_data == b""
    same(big_state(), back)
    d = sm.dump(KEY, back)
    assert d[2] == 3 and d[3:-16] == v2[3:-16]  # the same bytes, as version 3
    # version 2 knew no app flags: a v2 blob that has one is refused, not half-read
    flags = struct.unpack_from(">H", v2, 5)[0]
    for bit in (0x400, 0x800):
        assert "flags" in refused(patched(v2, 5, ">H", flags | bit))


def test_app_counter_and_app_data_round_trip():
    for counter, data in ((0, b""), (0xFFFFFFFF, b"x"), (12345, bytes(range(64))), (None, b"\x00\x01")):
        st = big_state()
        st.app_counter, st.app_data = counter, data
        blob = sm.dump(KEY, st)
        back = sm.load(KEY, blob, SERVER6)
        same(st, back)
        assert len(blob) == 255 + (0 if counter is None else 4) + (1 + len(data) if data else 0)
        st = session_state()  # without a connection too
        st.app_counter, st.app_data = counter, data
        same(st, sm.load(KEY, sm.dump(KEY, st), SERVER4))
    for counter in (-1, 1 << 32, "1", 1.0):
        st = session_state()
        st.app_counter = counter
        assert "app_counter" in str(raises(UsageError, sm.dump, KEY, st))
    for data in (bytes(65), "text", None):
        st = session_state()
        st.app_data = data
        assert "app_data" in str(raises(UsageError, sm.dump, KEY, st))


def test_refusal_app_fields_that_do_not_add_up():
    st = session_state()
    st.app_counter, st.app_data = 7, b"abc"
    blob = sm.dump(KEY, st)
    p = 10 + 32 + 48 + 6 + 4  # the app_data length byte
    assert blob[p] == 3
    assert "bad lengths" in refused(patched(blob, p, ">B", 4), KEY, SERVER4)
    assert "bad lengths" in refused(patched(blob, p, ">B", 2), KEY, SERVER4)
    assert "empty app_data" in refused(patched(blob, p, ">B", 0), KEY, SERVER4)
    # 65 bytes of app_data where the layout allows 64: refused as inconsistent
    big = bytearray(blob[:p]) + bytes([65]) + bytes(65) + bytes(16)
    struct.pack_into(">H", big, 3, len(big))
    assert "app_data" in refused(retag(bytes(big)), KEY, SERVER4)


def test_refusal_other_psk_identity_or_server():
    blob = sm.dump(KEY, big_state())
    for key in (sm.state_key(b"secretPSk", IDENTITY), sm.state_key(PSK, b"Client_identitY"),
                sm.state_key(PSK + b"\x00", IDENTITY), sm.state_key(PSK, IDENTITY + b"\x00")):
        assert refused(blob, key) == "tag mismatch: made for another PSK or identity, or corrupt"
    for server in ((SERVER6[0], 5685), SERVER4, (sm.ip_bytes("2001:db8::2"), 5684)):
        assert "made for another server" in refused(blob, KEY, server)
    blob = sm.dump(KEY, session_state())
    assert "another server" in refused(blob, KEY, (sm.ip_bytes("::ffff:127.0.0.1"), 5684))
    st = session_state()
    st.server = None
    assert "another server (none" in refused(sm.dump(KEY, st), KEY, SERVER4)


def test_refusal_every_bit_flip():
    blob = sm.dump(KEY, big_state())
    for i in range(len(blob)):
        for bit in range(8):
            b = bytearray(blob)
            b[i] ^= 1 << bit
            refused(bytes(b))


def test_refusal_inconsistent_fields_behind_a_valid_tag():
    blob = sm.dump(KEY, big_state())
    suite_off, flags_off, conn_off = 7, 5, 10 + 32 + 48 + 18 + 18 + 4 + 5  # 5: rtt
    assert "unknown suite 0x1234" in refused(patched(blob, suite_off, ">H", 0x1234))
    # another known suite implies another key_block length
    assert "bad lengths" in refused(patched(blob, suite_off, ">H", rl.SUITE_PSK_AES_128_CBC_SHA256))
    assert "epoch must be 1..65535" in refused(patched(blob, conn_off, ">H", 0))
    flags = struct.unpack_from(">H", blob, flags_off)[0]
    assert "flags" in refused(patched(blob, flags_off, ">H", flags | 0x8000))
    assert "flags" in refused(patched(blob, flags_off, ">H", flags & ~0x008))  # IPv6 but no server
    session = sm.dump(KEY, session_state())
    assert "read_max_seq without a connection" in refused(patched(session, flags_off, ">H", 0x109), KEY, SERVER4)
    assert "unknown suite 0x1234" in refused(patched(session, suite_off, ">H", 0x1234), KEY, SERVER4)
    assert "replay window without read_max_seq" in refused(patched(blob, flags_off, ">H", flags & ~0x100))
    assert "below sequence 0" in refused(patched(blob, conn_off + 8, ">HI", 0, 3))  # max_seq 3, bits up to 60
    # a CID length that runs past the end
    assert "bad lengths" in refused(patched(blob, conn_off + 22, ">B", 200))
    # a shorter session_id leaves bytes over
    assert "bad lengths" in refused(patched(blob, 9, ">B", 31))
    assert "bad lengths" in refused(patched(blob, 9, ">B", 255))


def test_dump_refuses_values_that_do_not_fit():
    bad = (("session_id", b"\x00" * 33), ("master_secret", b"\x00" * 47), ("suite", 0x1234),
           ("suite", None), ("epoch", 0), ("epoch", 65536), ("key_block", b"\x00" * 41),
           ("write_seq", 2 ** 48), ("write_seq", -1), ("read_max_seq", -2), ("read_max_seq", 2 ** 48),
           ("read_window", 2 ** 64), ("read_window", -1), ("write_cid", b"\x00" * 256),
           ("read_cid", None), ("last_exchange_s", -1), ("last_exchange_s", 2 ** 32),
           ("last_exchange_s", 1.5), ("server", ("127.0.0.1", 0)), ("server", ("127.0.0.1", 65536)),
           ("server", ("localhost", 5684)), ("server", (b"\x7f\x00\x00", 5684)), ("server", 5684),
           ("local", ("::1", -1)), ("local", ("::1", "80")), ("srtt_ms", -1), ("srtt_ms", 65536),
           ("srtt_ms", 1.5), ("rttvar_ms", None), ("rttvar_ms", 65536), ("rto_backoff", 9),
           ("rto_backoff", -1))
    for name, value in bad:
        st = big_state()
        setattr(st, name, value)
        raises(UsageError, sm.dump, KEY, st)
    st = big_state()
    st.read_max_seq, st.read_window = -1, 1
    assert "below sequence 0" in str(raises(UsageError, sm.dump, KEY, st))
    # without a connection the connection fields are not looked at
    st = session_state()
    st.epoch, st.key_block = 0, b"x"
    sm.dump(KEY, st)
    raises(UsageError, sm.dump, KEY[:31], st)
    raises(UsageError, sm.load, b"k", sm.dump(KEY, st), SERVER4)
    raises(UsageError, lambda: sm.SavedState(sesion_id=b""))


def test_state_key_binds_psk_and_identity():
    assert len(KEY) == 32
    assert sm.state_key(PSK, "Client_identity") == KEY
    keys = [KEY, sm.state_key(PSK, b"other"), sm.state_key(b"other", IDENTITY)]
    assert len(set(keys)) == 3
    raises(UsageError, sm.state_key, None, IDENTITY)


IP_GOOD = (
    ("127.0.0.2", "7f000002"), ("0.0.0.0", "00000000"), ("255.255.255.255", "ffffffff"),
    ("::1", "0" * 31 + "1"), ("::", "0" * 32), ("1::", "0001" + "0" * 28),
    ("2001:db8::ff00:42:8329", "20010db8000000000000ff0000428329"),
    ("2001:0DB8:0000:0000:0000:ff00:0042:8329", "20010db8000000000000ff0000428329"),
    ("::ffff:10.0.0.1", "00000000000000000000ffff0a000001"),
    ("1:2:3:4:5:6:7:8", "00010002000300040005000600070008"),
    ("1:2:3:4:5:6:7::", "00010002000300040005000600070000"),
    ("::2:3:4:5:6:7:8", "00000002000300040005000600070008"),
    ("1:2:3:4:5:6:1.2.3.4", "00010002000300040005000601020304"),
    ("fe80::1:2.3.4.5", "fe800000000000000000000102030405"),
)
IP_BAD = ("", "1", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", " 1.2.3.4", "1.2.3.4 ",
          "+1.2.3.4", "1_0.1.1.1", "1.2.3.", ":", ":::", "1:::2", "::1::", "1::2::3", ":1::", "1:2:3:4:5:6:7",
          "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "12345::", "g::", "::1%eth0",
          "1.2.3.4::", "::1.2.3.4:1", "::1.2.3", "::256.1.1.1", "[::1]", "localhost", "1:2:3:4:5:6:7:1.2.3.4")


def test_ip_bytes():
    for text, want in IP_GOOD:
        assert sm.ip_bytes(text) == bytes.fromhex(want), text
    for text in IP_BAD:
        raises(UsageError, sm.ip_bytes, text)
    for v in (None, 1, b"\x01\x02\x03", ("::1",)):
        raises(UsageError, sm.ip_bytes, v)
    assert sm.ip_bytes(bytearray(4)) == bytes(4) and sm.ip_bytes(b"\x01" * 16) == b"\x01" * 16


def test_ip_bytes_agrees_with_inet_pton():
    import socket
    if not hasattr(socket, "inet_pton"):  # ESP32: the table above is the whole check there
        return
    for text, _ in IP_GOOD:
        fam = socket.AF_INET6 if ":" in text else socket.AF_INET
        assert sm.ip_bytes(text) == socket.inet_pton(fam, text), text
