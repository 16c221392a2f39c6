# What the tests read off the wire: DTLS 1.2 records (RFC 6347 4.1, RFC 9146 4 for tls12_cid),
# handshake messages (RFC 6347 4.2.2) and the two hellos (RFC 5246 7.4.1, RFC 6347 4.2.1).
# Portable (CPython and both MicroPythons): the fake server, the relay, the key-log checker and
# the interop tests all parse with this one copy. Written from the RFCs and independently of
# dtls_lite, so a parsing bug in the client cannot hide itself in a test's view of the wire.
# Nothing here decrypts.
import struct

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CT_TLS12_CID = 25
HT_CLIENT_HELLO = 1
HT_SERVER_HELLO = 2
HT_HELLO_VERIFY_REQUEST = 3
HT_SERVER_KEY_EXCHANGE = 12
HT_SERVER_HELLO_DONE = 14
HT_CLIENT_KEY_EXCHANGE = 16
HT_FINISHED = 20
EXT_EXTENDED_MASTER_SECRET = 23
EXT_CONNECTION_ID = 54
HEADER_LEN = 13  # a record header without CID
MAX_RECORDS = 64  # per datagram: more is garbage

# A record is a tuple (ctype, epoch, seq, cid, fragment, raw): cid is None but in tls12_cid
# records; fragment is what follows the length field; raw is the whole record.
CTYPE, EPOCH, SEQ, CID, FRAGMENT, RAW = 0, 1, 2, 3, 4, 5


def records(datagram, cid_len=0, partial=False):
    """[(ctype, epoch, seq, cid, fragment, raw)] of a datagram. A tls12_cid record's header has
    cid_len bytes of CID before the length (the reader must know it, as a DTLS peer does). A
    datagram that does not split into whole records raises ValueError; with partial=True the
    list ends before the first record that does not fit."""
    out = []
    off = 0
    n = len(datagram)
    while off < n:
        h = off + 11
        cid = None
        if h + 2 <= n and datagram[off] == CT_TLS12_CID:
            cid = bytes(datagram[h:h + cid_len])
            h += cid_len
        if h + 2 > n or len(out) >= MAX_RECORDS:
            break
        end = h + 2 + ((datagram[h] << 8) | datagram[h + 1])
        if end > n:
            break
        ctype, _, _, epoch, hi, lo = struct.unpack_from(">BBBHHI", datagram, off)
        out.append((ctype, epoch, (hi << 32) | lo, cid, bytes(datagram[h + 2:end]),
                    bytes(datagram[off:end])))
        off = end
    if off < n and not partial:
        raise ValueError("datagram of %d bytes: garbage at %d" % (n, off))
    return out


def cid_of(datagram, cid_len):
    """The CID of the datagram's first record if it is a tls12_cid record, else None."""
    if len(datagram) >= HEADER_LEN + cid_len and datagram[0] == CT_TLS12_CID:
        return bytes(datagram[11:11 + cid_len])
    return None


# A message is a tuple (msg_type, message_seq, fragment_offset, length, body, raw): body is the
# fragment's bytes, raw the fragment with its 12-byte header (the whole message when
# fragment_offset is 0 and the fragment has all `length` bytes).
MSG_TYPE, MSG_SEQ, FRAG_OFFSET, LENGTH, BODY, MSG_RAW = 0, 1, 2, 3, 4, 5


def messages(payload, partial=False):
    """[(msg_type, message_seq, fragment_offset, length, body, raw)] of a handshake record's
    payload; a fragment that does not fit raises ValueError (partial=True: the list ends)."""
    out = []
    off = 0
    n = len(payload)
    while off < n:
        if off + 12 > n:
            break
        t = payload[off]
        length = int.from_bytes(payload[off + 1:off + 4], "big")
        mseq = (payload[off + 4] << 8) | payload[off + 5]
        foff = int.from_bytes(payload[off + 6:off + 9], "big")
        flen = int.from_bytes(payload[off + 9:off + 12], "big")
        if off + 12 + flen > n:
            break
        out.append((t, mseq, foff, length, bytes(payload[off + 12:off + 12 + flen]),
                    bytes(payload[off:off + 12 + flen])))
        off += 12 + flen
    if off < n and not partial:
        raise ValueError("handshake payload of %d bytes: garbage at %d" % (n, off))
    return out


def whole(message):
    """True if a message tuple holds the whole message (not a fragment of it)."""
    return message[FRAG_OFFSET] == 0 and len(message[BODY]) == message[LENGTH]


def handshake_messages(datagram, epoch=0, cid_len=0, partial=True):
    """Every handshake message of a datagram's records of `epoch` (default 0, in the clear)."""
    out = []
    for r in records(datagram, cid_len, partial):
        if r[CTYPE] == CT_HANDSHAKE and r[EPOCH] == epoch:
            out += messages(r[FRAGMENT], partial)
    return out


def _vector(b, off, width):
    if off + width > len(b):
        raise ValueError("vector length at %d past the end (%d)" % (off, len(b)))
    n = int.from_bytes(b[off:off + width], "big")
    if off + width + n > len(b):
        raise ValueError("vector of %d bytes at %d past the end (%d)" % (n, off, len(b)))
    return bytes(b[off + width:off + width + n]), off + width + n


def extensions(b, off):
    """[(type, data)] of the extensions block at b[off:] ([] if the message ends before it)."""
    out = []
    if off >= len(b):
        return out
    block, _ = _vector(b, off, 2)
    p = 0
    while p + 4 <= len(block):
        t, n = struct.unpack_from(">HH", block, p)
        if p + 4 + n > len(block):
            raise ValueError("extension %d longer than its block" % t)
        out.append((t, block[p + 4:p + 4 + n]))
        p += 4 + n
    return out


def client_hello(body):
    """A ClientHello body: {"version", "random", "session_id", "cookie", "suites" (list of
    ints), "compression" (bytes), "extensions" ([(type, data)])}."""
    h = {"version": bytes(body[0:2]), "random": bytes(body[2:34])}
    h["session_id"], off = _vector(body, 34, 1)
    h["cookie"], off = _vector(body, off, 1)
    suites, off = _vector(body, off, 2)
    h["suites"] = [(suites[i] << 8) | suites[i + 1] for i in range(0, len(suites) - 1, 2)]
    h["compression"], off = _vector(body, off, 1)
    h["extensions"] = extensions(body, off)
    return h


def server_hello(body):
    """A ServerHello body: {"version", "random", "session_id", "suite", "compression" (int),
    "extensions" ([(type, data)])}."""
    h = {"version": bytes(body[0:2]), "random": bytes(body[2:34])}
    h["session_id"], off = _vector(body, 34, 1)
    if off + 3 > len(body):
        raise ValueError("ServerHello ends before its suite")
    h["suite"] = (body[off] << 8) | body[off + 1]
    h["compression"] = body[off + 2]
    h["extensions"] = extensions(body, off + 3)
    return h


def extension(hello, ext_type):
    """The data of a hello's extension of that type, or None."""
    for t, data in hello["extensions"]:
        if t == ext_type:
            return data
    return None


def server_hello_cid(datagram):
    """The CID a whole ServerHello in this datagram's epoch-0 records asks for (RFC 9146 3:
    the connection_id extension, a one-byte-length vector), or None."""
    try:
        for m in handshake_messages(datagram):
            if m[MSG_TYPE] == HT_SERVER_HELLO and whole(m):
                data = extension(server_hello(m[BODY]), EXT_CONNECTION_ID)
                if data:
                    return _vector(data, 0, 1)[0]
    except ValueError:
        return None
    return None
