# DTLS 1.2 PSK handshake messages (client side): encoders, decoders and the key schedule.
# Pure functions over bytes; decoders raise ProtocolError(decode_error) on malformed input.
import struct

from dtls_lite import crypto
from dtls_lite.compat import const
from dtls_lite.errors import ProtocolError, UsageError

HT_HELLO_REQUEST = const(0)
HT_CLIENT_HELLO = const(1)
HT_SERVER_HELLO = const(2)
HT_HELLO_VERIFY_REQUEST = const(3)
HT_SERVER_KEY_EXCHANGE = const(12)
HT_SERVER_HELLO_DONE = const(14)
HT_CLIENT_KEY_EXCHANGE = const(16)
HT_FINISHED = const(20)

HS_HEADER_LEN = const(12)  # msg_type, length(24), message_seq, fragment_offset(24), fragment_length(24)

ALERT_CLOSE_NOTIFY = const(0)
ALERT_UNEXPECTED_MESSAGE = const(10)
ALERT_HANDSHAKE_FAILURE = const(40)
ALERT_ILLEGAL_PARAMETER = const(47)
ALERT_DECODE_ERROR = const(50)
ALERT_DECRYPT_ERROR = const(51)
ALERT_PROTOCOL_VERSION = const(70)
ALERT_INTERNAL_ERROR = const(80)
ALERT_NO_RENEGOTIATION = const(100)
ALERT_UNSUPPORTED_EXTENSION = const(110)

EXT_ENCRYPT_THEN_MAC = const(22)  # RFC 7366
EXT_EXTENDED_MASTER_SECRET = const(23)  # RFC 7627
EXT_CONNECTION_ID = const(54)  # RFC 9146 (53 was the drafts' code point, with another AAD)
EXT_RENEGOTIATION_INFO = const(0xFF01)  # RFC 5746
_SCSV_RENEGOTIATION = const(0x00FF)  # RFC 5746 3.3: 2 bytes instead of a 5-byte extension

_DTLS12 = const(0xFEFD)
_DTLS10 = const(0xFEFF)
# The ClientHello's extensions block (with its length): empty extended_master_secret, and
# empty encrypt_then_mac when a CBC suite is offered.
_EXTENSIONS_EMS = b"\x00\x04\x00\x17\x00\x00"
_EXTENSIONS_EMS_ETM = b"\x00\x08\x00\x17\x00\x00\x00\x16\x00\x00"


class Reader:
    """Bounds-checked reads over bytes; any overrun is a decode_error."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        p = self.pos
        if n < 0 or p + n > len(self.data):
            raise ProtocolError(ALERT_DECODE_ERROR, "truncated handshake message")
        self.pos = p + n
        return p

    def pull(self, fmt, size):
        """The fields of struct format fmt (size bytes long) at the current position."""
        return struct.unpack_from(fmt, self.data, self._take(size))

    def pull_uint8(self):
        return self.data[self._take(1)]

    def pull_uint16(self):
        return struct.unpack_from(">H", self.data, self._take(2))[0]

    def pull_bytes(self, n):
        p = self._take(n)
        return self.data[p:p + n]

    def pull_vector8(self):
        return self.pull_bytes(self.pull_uint8())

    def pull_vector16(self):
        return self.pull_bytes(self.pull_uint16())

    def eof(self):
        return self.pos == len(self.data)

    def expect_eof(self):
        if self.pos != len(self.data):
            raise ProtocolError(ALERT_DECODE_ERROR, "trailing bytes in handshake message")


def push_header(msg_type, length, message_seq, frag_offset, frag_length):
    return struct.pack(">BBHHBHBH", msg_type, length >> 16, length & 0xFFFF, message_seq,
                       frag_offset >> 16, frag_offset & 0xFFFF, frag_length >> 16, frag_length & 0xFFFF)


def pull_header(data, off):
    """(msg_type, length, message_seq, fragment_offset, fragment_length) at off."""
    h = struct.unpack_from(">BBHHBHBH", data, off)
    return h[0], (h[1] << 16) | h[2], h[3], (h[4] << 16) | h[5], (h[6] << 16) | h[7]


def whole_message(msg_type, message_seq, body):
    """The message as one fragment: the form both sent and hashed (RFC 6347 4.2.6)."""
    n = len(body)
    # push_header(msg_type, n, message_seq, 0, n) in fewer fields: msg_type and length as one
    # uint32, then fragment_offset 0 and fragment_length n as a uint16 and a uint32.
    return struct.pack(">IHHI", (msg_type << 24) | n, message_seq, 0, n) + body


def client_hello_body(client_random, session_id, cookie, suites, offer_etm, cid=None):
    """cid: None offers no connection_id; bytes (b"" too) offer it with that CID (RFC 9146 3)."""
    n = len(suites) + 1  # + the renegotiation SCSV
    ext = _EXTENSIONS_EMS_ETM if offer_etm else _EXTENSIONS_EMS
    if cid is not None:
        if len(cid) > 255:
            raise UsageError("cid must be at most 255 bytes")
        # connection_id: struct { opaque cid<0..2^8-1>; }, 5 bytes when empty
        ext = struct.pack(">H", len(ext) + 3 + len(cid)) + ext[2:] + struct.pack(
            ">HHB", EXT_CONNECTION_ID, len(cid) + 1, len(cid)) + cid
    return b"".join((struct.pack(">H32sB", _DTLS12, client_random, len(session_id)), session_id,
                     bytes((len(cookie),)), cookie,
                     struct.pack(">%dH" % (n + 1), *([2 * n] + list(suites) + [_SCSV_RENEGOTIATION])),  # f(*a, x): 1.16 rejects it
                     b"\x01\x00",  # compression methods: null only
                     ext))


def client_hello_with_cookie(msg, cookie):
    """The body of ClientHello msg (whole, header included) with cookie in place of its own:
    the hello repeated after a HelloVerifyRequest (RFC 6347 4.2.1), without rebuilding it."""
    p = HS_HEADER_LEN + 35 + msg[HS_HEADER_LEN + 34]  # after version, random, session_id
    return b"".join((msg[HS_HEADER_LEN:p], bytes((len(cookie),)), cookie, msg[p + 1 + msg[p]:]))


def parse_hello_verify_request(body):
    r = Reader(body)
    version = r.pull_uint16()
    cookie = r.pull_vector8()
    r.expect_eof()
    # RFC 6347 4.2.1: servers may answer with DTLS 1.0 here whatever they negotiate later.
    if version not in (_DTLS12, _DTLS10):
        raise ProtocolError(ALERT_PROTOCOL_VERSION, "HelloVerifyRequest version 0x%04X" % version)
    if len(cookie) > 255:
        raise ProtocolError(ALERT_ILLEGAL_PARAMETER, "cookie too long")
    return cookie


class ServerHello:
    ems = False  # class defaults: an instance stores only the extensions it saw
    etm = False
    cid = None  # RFC 9146: the server's CID (what we put in records we send), b"" = none wanted

    def __init__(self, body, offered_suites, offered_etm, offered_cid=False):
        r = Reader(body)
        version, self.server_random, n = r.pull(">H32sB", 35)
        self.session_id = r.pull_bytes(n)
        self.suite, compression = r.pull(">HB", 3)
        if not r.eof():
            self._extensions(Reader(r.pull_vector16()), offered_etm, offered_cid)
        r.expect_eof()
        if version != _DTLS12:
            raise ProtocolError(ALERT_PROTOCOL_VERSION, "server chose version 0x%04X, not DTLS 1.2" % version)
        if len(self.session_id) > 32:
            raise ProtocolError(ALERT_ILLEGAL_PARAMETER, "session_id longer than 32 bytes")
        if self.suite not in offered_suites:
            raise ProtocolError(ALERT_ILLEGAL_PARAMETER, "server chose suite 0x%04X we did not offer" % self.suite)
        if compression != 0:
            raise ProtocolError(ALERT_ILLEGAL_PARAMETER, "server chose compression %d" % compression)

    def _extensions(self, exts, offered_etm, offered_cid):
        seen = []
        while not exts.eof():
            ext_type, n = exts.pull(">HH", 4)
            data = exts.pull_bytes(n)
            if ext_type in seen:
                raise ProtocolError(ALERT_DECODE_ERROR, "duplicate extension %d" % ext_type)
            seen.append(ext_type)
            if ext_type == EXT_CONNECTION_ID and offered_cid:
                self.cid = _connection_id(data)
            else:
                self._extension(ext_type, data, offered_etm)

    def _extension(self, ext_type, data, offered_etm):
        if ext_type == EXT_RENEGOTIATION_INFO:
            # RFC 5746 3.4: on an initial handshake renegotiated_connection must be empty.
            if data != b"\x00":
                raise ProtocolError(ALERT_HANDSHAKE_FAILURE, "non-empty renegotiation_info")
        elif ext_type == EXT_EXTENDED_MASTER_SECRET:
            if data:
                raise ProtocolError(ALERT_DECODE_ERROR, "extended_master_secret with data")
            self.ems = True
        elif ext_type == EXT_ENCRYPT_THEN_MAC and offered_etm:
            if data:
                raise ProtocolError(ALERT_DECODE_ERROR, "encrypt_then_mac with data")
            self.etm = True
        else:  # RFC 5246 7.4.1.4: only extensions the client asked for may come back
            raise ProtocolError(ALERT_UNSUPPORTED_EXTENSION, "server sent unrequested extension %d" % ext_type)


def _connection_id(data):
    """The CID of a connection_id extension (RFC 9146 3: opaque cid<0..2^8-1>)."""
    r = Reader(data)
    cid = r.pull_vector8()
    r.expect_eof()
    return cid


def parse_server_key_exchange(body):
    """The PSK identity hint (RFC 4279 2); we have one identity, so it is informational."""
    r = Reader(body)
    hint = r.pull_vector16()
    r.expect_eof()
    return hint


def client_key_exchange_body(identity):
    return struct.pack(">H", len(identity)) + identity


def psk_premaster(psk):
    """RFC 4279 2: uint16 N, N zero bytes, uint16 N, psk."""
    n = len(psk)
    z = struct.pack(">H", n)
    return z + bytes(n) + z + psk


def master_secret(premaster, transcript_hash, client_random, server_random):
    """RFC 7627 4 when transcript_hash (session_hash) is given, else RFC 5246 8.1."""
    if transcript_hash is not None:
        return crypto.prf(premaster, b"extended master secret", transcript_hash, 48)
    return crypto.prf(premaster, b"master secret", client_random + server_random, 48)


def key_block(master, client_random, server_random, length):
    return crypto.prf(master, b"key expansion", server_random + client_random, length)


def finished_verify_data(master, label, transcript):
    """RFC 5246 7.4.9: 12 bytes of PRF(master, label, SHA-256(handshake messages))."""
    return verify_data(master, label, crypto.sha256(transcript))


def verify_data(master, label, transcript_hash):
    """finished_verify_data() from the transcript's SHA-256 (it doubles as RFC 7627's session_hash)."""
    return crypto.prf(master, label, transcript_hash, 12)
