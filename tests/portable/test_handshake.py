# Portable tests of dtls_lite/handshake.py's message codecs and key schedule (pytest on
# CPython, tests/mp_runner.py on both MicroPythons), without a Connection: what the client
# writes is read back with tests/support/wire.py (written from the RFCs, apart from the
# client), what it parses is built here byte by byte, and the key schedule is checked against
# values computed by OpenSSL 3.0's own TLS 1.2 PRF (see KEY SCHEDULE below).
import struct

from dtls_lite import crypto
from dtls_lite import handshake as hs
from dtls_lite.errors import ProtocolError, UsageError
from support import wire
from helpers import raises

CCM_8, CBC = 0xC0A8, 0x00AE
RANDOM = bytes(range(32))
SCSV = 0x00FF  # TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 3.3)


def alert_of(fn, *args):
    """The alert of the ProtocolError fn(*args) raises."""
    return raises(ProtocolError, fn, *args).alert


# ---- headers ---------------------------------------------------------------------------------

def test_handshake_header_round_trip():
    h = hs.push_header(hs.HT_SERVER_HELLO, 0x012345, 0xBEEF, 0x00ABCD, 0x000102)
    assert h == bytes.fromhex("02012345beef00abcd000102")
    assert hs.pull_header(b"xx" + h, 2) == (hs.HT_SERVER_HELLO, 0x012345, 0xBEEF, 0xABCD, 0x0102)


def test_whole_message_is_one_fragment_of_itself():
    msg = hs.whole_message(hs.HT_FINISHED, 7, b"v" * 12)
    assert msg == hs.push_header(hs.HT_FINISHED, 12, 7, 0, 12) + b"v" * 12
    (m,) = wire.messages(msg)
    assert m[:4] == (hs.HT_FINISHED, 7, 0, 12) and wire.whole(m) and m[wire.BODY] == b"v" * 12


# ---- ClientHello -----------------------------------------------------------------------------

def test_client_hello_body_fields():
    body = hs.client_hello_body(RANDOM, b"", b"", [CCM_8], False)
    h = wire.client_hello(body)
    assert h["version"] == b"\xfe\xfd" and h["random"] == RANDOM
    assert h["session_id"] == b"" and h["cookie"] == b""
    assert h["suites"] == [CCM_8, SCSV]  # the renegotiation SCSV instead of an extension
    assert h["compression"] == b"\x00"
    assert h["extensions"] == [(hs.EXT_EXTENDED_MASTER_SECRET, b"")]
    # 2 version + 32 random + 1 + 1 + 2 + 4 suites + 2 compression + 6 extensions
    assert len(body) == 50


def test_client_hello_offers_encrypt_then_mac_with_cbc():
    h = wire.client_hello(hs.client_hello_body(RANDOM, b"", b"", [CCM_8, CBC], True))
    assert h["suites"] == [CCM_8, CBC, SCSV]
    assert h["extensions"] == [(hs.EXT_EXTENDED_MASTER_SECRET, b""), (hs.EXT_ENCRYPT_THEN_MAC, b"")]


def test_client_hello_session_id_and_cookie():
    sid, cookie = b"\x5a" * 32, b"\x42" * 20
    h = wire.client_hello(hs.client_hello_body(RANDOM, sid, cookie, [CCM_8], False))
    assert h["session_id"] == sid and h["cookie"] == cookie and h["random"] == RANDOM


def test_client_hello_connection_id_offer():
    for cid in (b"", b"\xc1", b"\x01" * 255):
        body = hs.client_hello_body(RANDOM, b"", b"", [CCM_8], False, cid=cid)
        h = wire.client_hello(body)
        # RFC 9146 3: struct { opaque cid<0..2^8-1>; }, after extended_master_secret
        assert h["extensions"] == [(hs.EXT_EXTENDED_MASTER_SECRET, b""),
                                   (hs.EXT_CONNECTION_ID, bytes((len(cid),)) + cid)], cid
    empty = hs.client_hello_body(RANDOM, b"", b"", [CCM_8], False, cid=b"")
    assert len(empty) == len(hs.client_hello_body(RANDOM, b"", b"", [CCM_8], False)) + 5
    e = raises(UsageError, hs.client_hello_body, RANDOM, b"", b"", [CCM_8], False, b"\x01" * 256)
    assert "255" in str(e)


def test_client_hello_with_cookie_is_the_hello_rebuilt_with_it():
    for sid, cid in ((b"", None), (b"\x5a" * 32, b"\xc1\xc2")):
        first = hs.whole_message(hs.HT_CLIENT_HELLO, 0, hs.client_hello_body(
            RANDOM, sid, b"", [CCM_8, CBC], True, cid=cid))
        for cookie in (b"\x42" * 16, b"", b"\x07" * 255):
            assert hs.client_hello_with_cookie(first, cookie) == hs.client_hello_body(
                RANDOM, sid, cookie, [CCM_8, CBC], True, cid=cid), (sid, cookie)


# ---- HelloVerifyRequest ----------------------------------------------------------------------

def hvr(version, cookie):
    return struct.pack(">HB", version, len(cookie)) + cookie


def test_hello_verify_request_cookie_in_either_version():
    # RFC 6347 4.2.1: a server may answer with DTLS 1.0 (FEFF) whatever it negotiates later
    for version in (0xFEFD, 0xFEFF):
        assert hs.parse_hello_verify_request(hvr(version, b"\x42" * 16)) == b"\x42" * 16
    assert hs.parse_hello_verify_request(hvr(0xFEFD, b"")) == b""
    assert hs.parse_hello_verify_request(hvr(0xFEFD, b"c" * 255)) == b"c" * 255


def test_hello_verify_request_refusals():
    assert alert_of(hs.parse_hello_verify_request, hvr(0x0303, b"c")) == hs.ALERT_PROTOCOL_VERSION
    assert alert_of(hs.parse_hello_verify_request, hvr(0xFEFD, b"c") + b"x") == hs.ALERT_DECODE_ERROR
    for cut in range(len(hvr(0xFEFD, b"cookie"))):
        assert alert_of(hs.parse_hello_verify_request, hvr(0xFEFD, b"cookie")[:cut]) == hs.ALERT_DECODE_ERROR


# ---- ServerHello -----------------------------------------------------------------------------

def ext(t, data=b""):
    return struct.pack(">HH", t, len(data)) + data


def server_hello(extensions=None, version=0xFEFD, sid=b"\x5a" * 32, suite=CCM_8, compression=0):
    """A ServerHello body built from RFC 5246 7.4.1.3; extensions: None (no block) or a list."""
    body = struct.pack(">H32sB", version, b"\x33" * 32, len(sid)) + sid + struct.pack(">HB", suite, compression)
    if extensions is not None:
        block = b"".join(extensions)
        body += struct.pack(">H", len(block)) + block
    return body


EMS = ext(hs.EXT_EXTENDED_MASTER_SECRET)
ETM = ext(hs.EXT_ENCRYPT_THEN_MAC)
RENEGOTIATION = ext(hs.EXT_RENEGOTIATION_INFO, b"\x00")


def test_server_hello_fields_and_extensions():
    sh = hs.ServerHello(server_hello([RENEGOTIATION, EMS]), [CCM_8], False)
    assert sh.server_random == b"\x33" * 32 and sh.session_id == b"\x5a" * 32
    assert sh.suite == CCM_8 and sh.ems is True and sh.etm is False and sh.cid is None
    bare = hs.ServerHello(server_hello(), [CCM_8], False)  # no extensions block at all
    assert bare.ems is False and bare.etm is False and bare.cid is None
    empty = hs.ServerHello(server_hello([], sid=b""), [CCM_8], False)
    assert empty.session_id == b"" and empty.ems is False
    etm = hs.ServerHello(server_hello([ETM, EMS], suite=CBC), [CCM_8, CBC], True)
    assert etm.etm is True and etm.ems is True and etm.suite == CBC


def test_server_hello_connection_id():
    for cid in (b"", b"\xbe\xef\x01", b"\x07" * 255):
        sh = hs.ServerHello(server_hello([EMS, ext(hs.EXT_CONNECTION_ID, bytes((len(cid),)) + cid)]),
                            [CCM_8], False, True)
        assert sh.cid == cid
    # not offered: an unrequested extension (RFC 5246 7.4.1.4)
    assert alert_of(hs.ServerHello, server_hello([ext(hs.EXT_CONNECTION_ID, b"\x00")]), [CCM_8],
                    False) == hs.ALERT_UNSUPPORTED_EXTENSION
    # malformed: the vector's length disagrees with the extension's
    for data in (b"", b"\x02\x01", b"\x01\x01\x01"):
        assert alert_of(hs.ServerHello, server_hello([ext(hs.EXT_CONNECTION_ID, data)]), [CCM_8],
                        False, True) == hs.ALERT_DECODE_ERROR, data


def test_server_hello_refusals():
    cases = [
        (server_hello(version=0xFEFF), hs.ALERT_PROTOCOL_VERSION),
        (server_hello(sid=b"s" * 33), hs.ALERT_ILLEGAL_PARAMETER),
        (server_hello(suite=CBC), hs.ALERT_ILLEGAL_PARAMETER),  # not offered
        (server_hello(compression=1), hs.ALERT_ILLEGAL_PARAMETER),
        (server_hello([ETM]), hs.ALERT_UNSUPPORTED_EXTENSION),  # encrypt_then_mac not offered
        (server_hello([ext(0x1234)]), hs.ALERT_UNSUPPORTED_EXTENSION),
        (server_hello([EMS, EMS]), hs.ALERT_DECODE_ERROR),
        (server_hello([ext(hs.EXT_EXTENDED_MASTER_SECRET, b"x")]), hs.ALERT_DECODE_ERROR),
        (server_hello([ext(hs.EXT_RENEGOTIATION_INFO, b"\x01\x00")]), hs.ALERT_HANDSHAKE_FAILURE),
        (server_hello([EMS]) + b"\x00", hs.ALERT_DECODE_ERROR),  # trailing bytes
        (server_hello([EMS])[:-1], hs.ALERT_DECODE_ERROR),  # the block is cut short
    ]
    for body, alert in cases:
        assert alert_of(hs.ServerHello, body, [CCM_8], False) == alert, body
    full = server_hello([RENEGOTIATION, EMS])
    for cut in range(len(full)):
        if cut != len(server_hello()):  # without the block it is a valid ServerHello
            assert alert_of(hs.ServerHello, full[:cut], [CCM_8], False) == hs.ALERT_DECODE_ERROR, cut


# ---- ServerKeyExchange, ClientKeyExchange ----------------------------------------------------

def test_server_key_exchange_identity_hint():
    assert hs.parse_server_key_exchange(b"\x00\x00") == b""
    assert hs.parse_server_key_exchange(b"\x00\x04hint") == b"hint"
    assert alert_of(hs.parse_server_key_exchange, b"\x00\x04hin") == hs.ALERT_DECODE_ERROR
    assert alert_of(hs.parse_server_key_exchange, b"\x00\x04hints") == hs.ALERT_DECODE_ERROR
    assert alert_of(hs.parse_server_key_exchange, b"\x00") == hs.ALERT_DECODE_ERROR


def test_client_key_exchange_is_the_identity():
    # RFC 4279 2: opaque psk_identity<0..2^16-1>
    assert hs.client_key_exchange_body(b"Client_identity") == b"\x00\x0fClient_identity"
    assert hs.client_key_exchange_body(b"") == b"\x00\x00"


# ---- KEY SCHEDULE ----------------------------------------------------------------------------
# Expected values from OpenSSL 3.0.19's TLS 1.2 PRF, not from dtls_lite, e.g. the master secret:
#   openssl kdf -keylen 48 -kdfopt digest:SHA256 -kdfopt hexsecret:<PREMASTER>
#       -kdfopt hexseed:<hex of "extended master secret"><SESSION_HASH> TLS1-PRF
# (the seed is the label followed by the seed, RFC 5246 5). Inputs: the PSK b"secretPSK",
# client_random 00..1f, server_random 20..3f, session_hash = SHA-256(bytes 0..199), Finished
# transcript hash = SHA-256((bytes 0..255) twice).

PSK = b"secretPSK"
PREMASTER = bytes.fromhex("0009000000000000000000000973656372657450534b")  # RFC 4279 2
CLIENT_RANDOM, SERVER_RANDOM = bytes(range(32)), bytes(range(32, 64))
SESSION_HASH = bytes.fromhex("1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f")
EMS_MASTER = bytes.fromhex("801289aec2f9513483f05b1dd6e87e2e7d8d4617b3da456d"
                           "5ee54498b411175216ea704f9170e32f373676e43a987108")
CLASSIC_MASTER = bytes.fromhex("03441a59e769d3f530fba3141d8158fdbc544e1124dacdcd"
                               "7de93c37d5416f0dc68bde589731008aaf5c66858dc72fbd")
KEY_BLOCK = bytes.fromhex("c20e1fafb3635276064fc8ccfa7cbdc5abbda7290de6ffe1a04124d95601ce7b"
                          "7e97efa6566333ce8d39d5b41b4473ac168479aa480abe0bd89102980ff3bc18"
                          "dcf096129030b5fc6ef543e103b501d2ff4123ba44829b205f6ec8ac56efd40c")
FINISHED_HASH = bytes.fromhex("110009dcee21620b166f3abfecb5eff7a873be729d1c2d53822e7acc5f34eb9b")
CLIENT_VERIFY = bytes.fromhex("6aabcd4ba3eb437144e945ea")
SERVER_VERIFY = bytes.fromhex("9998c2b19e390272b59cd4eb")


def test_psk_premaster_secret():
    assert hs.psk_premaster(PSK) == PREMASTER
    assert hs.psk_premaster(b"\x01" * 64) == b"\x00\x40" + bytes(64) + b"\x00\x40" + b"\x01" * 64


def test_master_secret_extended_and_classic():
    assert crypto.sha256(bytes(range(200))) == SESSION_HASH
    assert hs.master_secret(PREMASTER, SESSION_HASH, CLIENT_RANDOM, SERVER_RANDOM) == EMS_MASTER  # RFC 7627 4
    assert hs.master_secret(PREMASTER, None, CLIENT_RANDOM, SERVER_RANDOM) == CLASSIC_MASTER  # RFC 5246 8.1


def test_key_block():
    # RFC 5246 6.3: seed server_random + client_random (the reverse of the master secret's)
    assert hs.key_block(EMS_MASTER, CLIENT_RANDOM, SERVER_RANDOM, 96) == KEY_BLOCK  # CBC_SHA256
    assert hs.key_block(EMS_MASTER, CLIENT_RANDOM, SERVER_RANDOM, 40) == KEY_BLOCK[:40]  # CCM_8


def test_finished_verify_data():
    transcript = bytes(range(256)) * 2
    assert crypto.sha256(transcript) == FINISHED_HASH
    assert hs.verify_data(EMS_MASTER, b"client finished", FINISHED_HASH) == CLIENT_VERIFY
    assert hs.verify_data(EMS_MASTER, b"server finished", FINISHED_HASH) == SERVER_VERIFY
    assert hs.finished_verify_data(EMS_MASTER, b"client finished", transcript) == CLIENT_VERIFY
