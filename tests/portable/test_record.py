# Portable tests of dtls_lite/record.py (pytest on CPython, tests/mp_runner.py on both
# MicroPythons), without a Connection: WriteState and ReadState, sequence numbers, the replay
# window (RFC 6347 4.1.2.6), CCM/GCM/CBC records (RFC 6655, RFC 5288, RFC 5246 6.2.3, RFC
# 7366), tls12_cid records (RFC 9146) and record_end. Records are built or checked here from
# the RFCs with dtls_lite.crypto's primitives (themselves checked by vectors in test_crypto)
# and read with tests/support/wire.py. tests/portable/test_cid.py checks tls12_cid records
# against the fake server's independent construction and Mbed TLS's own records.
import struct

from dtls_lite import crypto
from dtls_lite import record as rl
from fakeserver import Rng
from support import wire

CCM_8, CCM, GCM, CBC = (rl.SUITE_PSK_AES_128_CCM_8, rl.SUITE_PSK_AES_128_CCM,
                        rl.SUITE_PSK_AES_128_GCM_SHA256, rl.SUITE_PSK_AES_128_CBC_SHA256)


def key_block(suite):
    return bytes((i * 7 + 3) & 0xFF for i in range(rl.key_block_len(suite)))


def pair(suite, etm=False, client_cid=b"", server_cid=b""):
    """(client write, server read) of epoch 1: what the client sends and the server opens."""
    kb = key_block(suite)
    w, _ = rl.epoch_states(1, suite, etm, kb, Rng(2), True, server_cid, client_cid)
    _, r = rl.epoch_states(1, suite, etm, kb, Rng(3), False, client_cid, server_cid)
    return w, r


def suites():
    out = [(CCM_8, False), (CCM, False), (CBC, True), (CBC, False)]
    if GCM in rl.supported_suites():
        out.append((GCM, False))
    return out


# ---- suites -----------------------------------------------------------------------------------

def test_suite_table():
    assert [rl.key_block_len(s) for s in (CCM_8, CCM, GCM, CBC)] == [40, 40, 40, 96]
    assert rl.suite_name(CCM_8) == "TLS_PSK_WITH_AES_128_CCM_8" and rl.suite_name(0x1234) == "0x1234"
    offered = rl.supported_suites()
    assert offered[:2] == [CCM_8, CCM] and offered[-1] == CBC  # CCM_8 first (RFC 7925)
    assert (GCM in offered) == crypto.HAS_GCM


# ---- epoch 0 and sequence numbers -------------------------------------------------------------

def test_epoch_0_records_are_plain_and_numbered():
    w = rl.WriteState(0)
    recs = [w.protect(rl.CT_HANDSHAKE, b"hello"), w.protect(rl.CT_ALERT, b"\x01\x00")]
    assert recs[0] == b"\x16\xfe\xfd" + bytes(8) + b"\x00\x05hello"
    parsed = [wire.records(r)[0] for r in recs]
    assert [(r[wire.CTYPE], r[wire.EPOCH], r[wire.SEQ], r[wire.FRAGMENT]) for r in parsed] == [
        (22, 0, 0, b"hello"), (21, 0, 1, b"\x01\x00")]
    assert w.seq == 2 and w.overhead() == rl.HEADER_LEN
    assert rl.record_epoch(recs[0]) == 0
    r = rl.ReadState(0)
    assert r.open(recs[0]) == b"hello" and r.open(recs[0]) == b"hello"  # no window in epoch 0


def test_sequence_numbers_carry_into_the_high_half_and_never_wrap():
    w = rl.WriteState(2, None, 2 ** 24 - 1)
    assert [wire.records(w.protect(23, b""))[0][wire.SEQ] for _ in range(3)] == [2 ** 24 - 1, 2 ** 24, 2 ** 24 + 1]
    w = rl.WriteState(2, None, 2 ** 48 - 3)
    for s in (2 ** 48 - 3, 2 ** 48 - 2):
        rec = w.protect(23, b"")
        assert rec[3:11] == struct.pack(">H", 2) + s.to_bytes(6, "big")
    try:
        w.protect(23, b"")  # 2**48 - 1 stays unused: the next one would wrap
    except OverflowError:
        pass
    else:
        raise AssertionError("no OverflowError at 2**48 - 1")
    w.seq = 12345678901
    assert w.seq == 12345678901


# ---- the replay window ------------------------------------------------------------------------

def test_replay_window():
    r = rl.ReadState(1)
    assert r.max_seq == -1 and r.window == 0
    for s in (5, 3, 70, 7):
        assert not r.is_replay(s)
        r.mark(s)
    assert r.is_replay(5)  # 70 - 5 = 65: left the window, too old to tell, so dropped
    assert r.is_replay(3) and r.is_replay(70) and r.is_replay(7) and r.is_replay(6)
    assert not r.is_replay(8) and not r.is_replay(71) and not r.is_replay(2 ** 48 - 2)
    assert r.max_seq == 70 and r.window == 1 | 1 << 63  # 70 and 7 (= 70 - 63)


def test_replay_window_across_the_halves_and_far_jumps():
    r = rl.ReadState(1)
    r.mark(2 ** 24 - 2)
    r.mark(2 ** 24 + 1)  # the high half moves
    assert r.is_replay(2 ** 24 - 2) and not r.is_replay(2 ** 24 - 1) and not r.is_replay(2 ** 24)
    assert r.window == 1 | 1 << 3
    r.mark(2 ** 40)  # far ahead: the window starts afresh
    assert r.window == 1 and r.is_replay(2 ** 24 + 1) and r.is_replay(2 ** 40 - 64)
    assert not r.is_replay(2 ** 40 - 63) and r.is_replay(2 ** 40)


def test_saved_window_restores_the_same_answers():
    r = rl.ReadState(1)
    for s in (1000, 998, 990, 1003, 940):
        r.mark(s)
    saved = (r.max_seq, r.window)
    for order in (0, 1):  # either attribute first
        t = rl.ReadState(1)
        if order:
            t.max_seq, t.window = saved
        else:
            t.window, t.max_seq = saved[1], saved[0]
        assert (t.max_seq, t.window) == saved
        assert [t.is_replay(s) for s in range(930, 1010)] == [r.is_replay(s) for s in range(930, 1010)]


# ---- protected records ------------------------------------------------------------------------

def test_ccm_8_record_is_rfc_6655():
    """The record from the RFCs: explicit nonce = epoch||seq, nonce = client IV || it,
    additional data = seq_num || type || version || plaintext length (RFC 5246 6.2.3.3)."""
    kb = key_block(CCM_8)
    w, _ = rl.epoch_states(1, CCM_8, False, kb, Rng(1))
    w.seq = 0x0102030405
    rec = w.protect(rl.CT_APPLICATION_DATA, b"ping")
    seq_num = b"\x00\x01\x00\x01\x02\x03\x04\x05"
    key, iv = kb[0:16], kb[32:36]  # client write key, client write IV (RFC 5246 6.3)
    body = crypto.AesCcm(key, 8).seal(iv + seq_num, seq_num + b"\x17\xfe\xfd\x00\x04", b"ping")
    assert rec == b"\x17\xfe\xfd" + seq_num + struct.pack(">H", 8 + len(body)) + seq_num + body
    assert len(rec) == len(b"ping") + w.overhead() == 4 + 29


def test_cbc_encrypt_then_mac_record_is_rfc_7366():
    kb = key_block(CBC)
    w, _ = rl.epoch_states(1, CBC, True, kb, Rng(1))
    rec = w.protect(rl.CT_APPLICATION_DATA, b"x" * 20)
    mac_key, key = kb[0:32], kb[64:80]
    frag = rec[13:]
    assert len(frag) == 16 + 32 + 32  # IV, 20 bytes padded to 32, MAC
    seq_num = rec[3:11]
    mac = crypto.hmac_sha256(mac_key, seq_num + b"\x17\xfe\xfd" + struct.pack(">H", 48) + frag[:48])
    assert frag[48:] == mac
    plain = crypto.aes_cbc_decrypt(key, frag[:16], frag[16:48])
    assert plain == b"x" * 20 + bytes([11]) * 12


def test_records_open_once_and_only_unchanged():
    for suite, etm in suites():
        w, r = pair(suite, etm)
        for n in (0, 1, 15, 16, 200):
            data = bytes(range(n))
            rec = w.protect(rl.CT_APPLICATION_DATA, data)
            assert r.open(rec) == data, (suite, etm, n)
            assert r.open(rec) is None  # replay
        old, new = w.protect(23, b"old"), w.protect(23, b"new")
        assert r.open(new) == b"new" and r.open(old) == b"old"  # older but unseen: accepted
        rec = w.protect(rl.CT_APPLICATION_DATA, b"tamper me")
        # any byte but the version's first (1: the caller checks it is 0xFE, with the epoch)
        # and the length field (11, 12: the caller cuts records with record_end; open()
        # authenticates the length it is given); a protected record must say 0xFEFD
        for i in (0, 2, 3, 4, 5, 10, 13, 20, len(rec) // 2, len(rec) - 1):
            bad = bytearray(rec)
            bad[i] ^= 0x01
            assert r.open(bytes(bad)) is None, (suite, etm, i)
        assert r.open(rec[:-1]) is None and r.open(rec[:13]) is None
        assert r.open(rec) == b"tamper me"  # the failures left the window alone


def test_overhead():
    assert [pair(s, e)[0].overhead() for s, e in ((CCM_8, False), (CCM, False), (CBC, True))] == [
        13 + 8 + 8, 13 + 8 + 16, 13 + 16 + 16 + 32]
    w, _ = pair(CCM_8, server_cid=b"\xbe\xef\x01\x02\x03\x04")
    assert w.overhead() == 29 + 6 + 1  # the CID and the inner content type


# ---- tls12_cid records (RFC 9146) ------------------------------------------------------------

def test_cid_records_carry_the_cid_and_hide_the_type():
    for suite, etm in suites():
        w, r = pair(suite, etm, client_cid=b"\xc1", server_cid=b"\xbe\xef\x01")
        rec = w.protect(rl.CT_HANDSHAKE, b"finished")
        (p,) = wire.records(rec, 3)
        assert p[wire.CTYPE] == rl.CT_TLS12_CID and p[wire.CID] == b"\xbe\xef\x01" and p[wire.EPOCH] == 1
        assert rl.record_end(rec, 0, 3) == len(rec)
        assert r.open(rec) == b"finished" + bytes((rl.CT_HANDSHAKE,)), (suite, etm)  # content || type


def test_cid_records_without_our_cid_are_dropped():
    w, r = pair(CCM_8, server_cid=b"\xbe\xef\x01")
    plain_w, _ = pair(CCM_8)  # the same keys, no CID: an RFC 6347 record
    assert r.open(plain_w.protect(23, b"no cid")) is None
    other, _ = pair(CCM_8, server_cid=b"\xbe\xef\x02")
    assert r.open(other.protect(23, b"other cid")) is None
    # and a reader without a negotiated CID drops tls12_cid records
    _, plain_r = pair(CCM_8)
    assert plain_r.open(w.protect(23, b"cid")) is None
    assert r.open(w.protect(23, b"ok")) == b"ok\x17"


def test_all_zero_inner_plaintext_is_dropped():
    w, r = pair(CCM_8, server_cid=b"\x01")
    # sealed by hand (seal() appends the type byte, here 0): a DTLSInnerPlaintext of zeros
    # only has no content type (RFC 9146 4); zero padding after the type is stripped
    rec = w.cipher.seal(0, b"\x00\x01\x00\x00\x00\x00\x00\x09", b"\x00\x00\x00")
    assert r.open(rec) is None
    padded = w.cipher.seal(0, b"\x00\x01\x00\x00\x00\x00\x00\x0a", b"data\x17\x00")
    assert r.open(padded) == b"data\x17"


# ---- record_end --------------------------------------------------------------------------------

def test_record_end():
    plain = bytes([23, 0xFE, 0xFD]) + bytes(8) + b"\x00\x02ab"
    cid = bytes([25, 0xFE, 0xFD]) + bytes(8) + b"\xc1\xc2" + b"\x00\x01z"
    assert rl.record_end(plain + cid, 0, 2) == 15
    assert rl.record_end(plain + cid, 15, 2) == 31
    assert rl.record_end(cid, 0, 3) == -1  # with a wrong CID length the length field is off
    assert rl.record_end(plain, 0, 5) == 15  # the CID length matters only for tls12_cid
    for cut in range(len(plain)):
        assert rl.record_end(plain[:cut] or b"\x17", 0) == -1, cut
