# Saved state of a session (and optionally its live connection) as a small, versioned,
# authenticated blob, so a node can resume or continue after deep sleep (DESIGN.md section 4).
# Pure functions over bytes: never does I/O (stores live in dtls_lite/store.py), never decides
# what to do with a state (the wake policy does), never raises on a bad blob anything but
# StateError. Also maps a SavedState to and from the live Session and Epoch
# (dtls_lite/session.py) for Connection.snapshot()/restore(), so that a client without a
# store never loads that code.
#
# Layout, version 3 (big-endian; [flag] = present only when that flag bit is set):
#
#   size  field
#   2     magic b"dL"
#   1     version = 3 (load() also takes 2: without bits 10-11; and 1: without bits 9-11)
#   2     total length of the blob, tag included
#   2     flags: 0 ems, 1 etm, 2 connection, 3 server, 4 server is IPv6, 5 local,
#                6 local is IPv6, 7 last_exchange_s, 8 read_max_seq >= 0, 9 rtt, 10 app_counter,
#                11 app_data; others zero
#   2     suite (record.SUITE_*)
#   1+n   session_id (n <= 32)
#   48    master_secret
#   [3]   server: port(2), address(4 or 16 by bit 4)
#   [5]   local:  port(2), address(4 or 16 by bit 6)
#   [7]   last_exchange_s: uint32 (caller's wall clock, seconds)
#   [9]   rtt: srtt_ms(2), rttvar_ms(2), rto_backoff(1): the server's smoothed round-trip time,
#         its variation (RFC 6298 2) and the doublings of the retransmission timeout since the
#         last valid sample (RFC 6298 5.5, Karn); dtls_lite/keeper.py keeps them
#   [4]   [10] app_counter: uint32, a reservation like write_seq: no value at or above it was
#         handed out (CoAP message IDs and tokens, dtls_lite/coap.py; keeper.Keeper.take)
#   [1+n] [11] app_data: n <= 64 bytes the application keeps with the keys
#   [2]   connection: epoch(2), write_seq(6), read_max_seq(6, 0 unless bit 8),
#         read_window(8), write_cid(1+n), read_cid(1+n), key_block(record.key_block_len(suite))
#   16    tag: HMAC-SHA256(state_key(psk, identity), every byte before it), first 16 bytes
#
# CCM_8, both addresses IPv6, a 32-byte session ID, 20-byte CIDs, last_exchange_s and rtt set:
# 255 bytes; with app_counter and 64 bytes of app_data, 324.
#
# Compatibility: a new optional field gets a flag bit and a new version; load() takes every
# older version (the fields it lacks keep their defaults: a version 1 blob has no rtt) and
# refuses a newer one with StateError (a full handshake follows, never a crash). write_seq is a reservation (the caller stored current + N, DESIGN.md 4); the
# blob says nothing about whether it was already restored once, so never load one twice
# without saving a higher reservation first.
import struct

from dtls_lite import crypto
from dtls_lite import record as rl
from dtls_lite.compat import const, need
from dtls_lite.errors import StateError, UsageError
from dtls_lite.session import Epoch, Session

_MAGIC = b"dL"
_VERSION = const(3)
_HEADER = const(7)  # magic, version, length, flags
_TAG = const(16)
_MIN_LEN = const(74)  # header, suite, empty session_id, master_secret, tag
_MAX_LEN = const(1024)  # above anything dump() writes (850 at most)
_MAX_SEQ = const(0xFFFFFFFFFFFF)  # sequence numbers are 48-bit (RFC 6347 4.1)
_MAX_U32 = const(0xFFFFFFFF)
_KEY_LABEL = b"dtls-lite saved state key"

_F_EMS = const(0x001)
_F_ETM = const(0x002)
_F_CONN = const(0x004)
_F_SERVER = const(0x008)
_F_SERVER6 = const(0x010)
_F_LOCAL = const(0x020)
_F_LOCAL6 = const(0x040)
_F_LAST = const(0x080)
_F_READ_ANY = const(0x100)
_F_RTT = const(0x200)
_F_COUNTER = const(0x400)
_F_APP_DATA = const(0x800)
_F_ALL = const(0xFFF)
_F_ALL_V2 = const(0x3FF)  # version 2 had no app_counter, app_data
_F_ALL_V1 = const(0x1FF)  # version 1 had no rtt either
_MAX_APP_DATA = const(64)
_MAX_RTT_MS = const(0xFFFF)
_MAX_BACKOFF = const(8)


class SavedState:
    """What survives deep sleep; plain attributes (see the spec's data model).

    The connection part (epoch .. read_cid) counts only when has_connection is True."""

    def __init__(self, **fields):
        self.session_id = b""
        self.master_secret = b""
        self.suite = 0
        self.ems = False
        self.etm = False
        self.server = None  # (ip bytes 4|16, port)
        self.has_connection = False
        self.epoch = 0
        self.key_block = b""
        self.write_seq = 0  # a reservation: no number below it was used, none above it
        self.read_max_seq = -1
        self.read_window = 0
        self.write_cid = b""
        self.read_cid = b""
        self.local = None  # (ip bytes 4|16, port) or None if unknown
        self.last_exchange_s = None
        self.srtt_ms = None  # None: no round trip measured yet (then rttvar_ms, rto_backoff 0)
        self.rttvar_ms = 0
        self.rto_backoff = 0
        self.app_counter = None  # None: no counter kept (uint32 otherwise, a reservation)
        self.app_data = b""
        for name in fields:
            if not hasattr(self, name):
                raise UsageError("SavedState has no field %r" % name)
            setattr(self, name, fields[name])


def state_key(psk, identity):
    """The 32-byte key of the blob tag, HMAC-SHA256(psk, label || uint16 len(psk) || identity):
    a state is bound to its PSK and identity."""
    if isinstance(identity, str):
        identity = identity.encode()
    if not _is_bytes(psk) or not _is_bytes(identity):
        raise UsageError("psk and identity must be bytes")
    # HMAC pads a short key with zeros (RFC 2104 2): the length keeps "k" and "k\0" apart.
    return crypto.hmac_sha256(bytes(psk), _KEY_LABEL + struct.pack(">H", len(psk)) + bytes(identity))


def ip_bytes(text):
    """4 or 16 bytes of an IPv4 ("127.0.0.2") or IPv6 ("::1", "::ffff:10.0.0.1") address.

    A pure parser: ESP32 MicroPython has no inet_pton. Bytes of length 4 or 16 pass through.
    Zone IDs ("%eth0"), leading zeros in IPv4 parts and anything else odd: UsageError."""
    if _is_bytes(text) and len(text) in (4, 16):
        return bytes(text)
    return need("dtls_lite.ipaddr").parse(text)  # text: only when an address is given as text


def dump(key, st):
    """The blob of SavedState st, tagged with key (from state_key). UsageError if a value does
    not fit the layout or the fields contradict each other."""
    _check_key(key)
    server = _addr(st.server, "server", 1)
    local = _addr(st.local, "local", 0)
    problem = _problem(st)
    if problem is not None:
        raise UsageError("cannot save state: " + problem)
    conn = bool(st.has_connection)
    flags = (_F_EMS if st.ems else 0) | (_F_ETM if st.etm else 0) | (_F_CONN if conn else 0)
    n = _HEADER + 2 + 1 + len(st.session_id) + 48 + _TAG
    if server is not None:
        flags |= _F_SERVER | (_F_SERVER6 if len(server[0]) == 16 else 0)
        n += 2 + len(server[0])
    if local is not None:
        flags |= _F_LOCAL | (_F_LOCAL6 if len(local[0]) == 16 else 0)
        n += 2 + len(local[0])
    if st.last_exchange_s is not None:
        flags |= _F_LAST
        n += 4
    if st.srtt_ms is not None:
        flags |= _F_RTT
        n += 5
    if st.app_counter is not None:
        flags |= _F_COUNTER
        n += 4
    if st.app_data:
        flags |= _F_APP_DATA
        n += 1 + len(st.app_data)
    if conn:
        if st.read_max_seq >= 0:
            flags |= _F_READ_ANY
        n += 22 + 2 + len(st.write_cid) + len(st.read_cid) + len(st.key_block)
    buf = bytearray(n)
    struct.pack_into(">2sBHHHB", buf, 0, _MAGIC, _VERSION, n, flags, st.suite, len(st.session_id))
    p = _put(buf, 10, st.session_id)
    p = _put(buf, p, st.master_secret)
    if server is not None:
        p = _put_addr(buf, p, server)
    if local is not None:
        p = _put_addr(buf, p, local)
    if st.last_exchange_s is not None:
        struct.pack_into(">I", buf, p, st.last_exchange_s)
        p += 4
    if st.srtt_ms is not None:
        struct.pack_into(">HHB", buf, p, st.srtt_ms, st.rttvar_ms, st.rto_backoff)
        p += 5
    if st.app_counter is not None:
        struct.pack_into(">I", buf, p, st.app_counter)
        p += 4
    if st.app_data:
        buf[p] = len(st.app_data)
        p = _put(buf, p + 1, st.app_data)
    if conn:
        rmax = max(st.read_max_seq, 0)
        struct.pack_into(">HHIHIQB", buf, p, st.epoch, st.write_seq >> 32, st.write_seq & _MAX_U32,
                         rmax >> 32, rmax & _MAX_U32, st.read_window, len(st.write_cid))
        p = _put(buf, p + 23, st.write_cid)
        buf[p] = len(st.read_cid)
        p = _put(buf, p + 1, st.read_cid)
        p = _put(buf, p, st.key_block)
    buf[p:] = crypto.hmac_sha256(key, memoryview(buf)[:p])[:_TAG]
    return bytes(buf)


def load(key, blob, server):
    """The SavedState in blob, if it was made with key for server ((ip, port), as dump()
    takes it; None skips the check). Any bad blob raises StateError(reason), nothing else."""
    _check_key(key)
    server = _addr(server, "server", 1)
    if blob is None or not _is_bytes(blob) or len(blob) == 0:
        raise StateError("no saved state" if not blob else "not bytes: %s" % type(blob).__name__)
    n = len(blob)
    if n > _MAX_LEN:
        raise StateError("too long (%d bytes)" % n)
    blob = bytes(blob)
    if blob[:2] != _MAGIC[:n]:
        raise StateError("wrong magic: not a dtls-lite state")
    if n < _HEADER:
        raise StateError("truncated (%d bytes)" % n)
    version, length, flags = struct.unpack_from(">BHH", blob, 2)
    if not 1 <= version <= _VERSION:
        raise StateError("unknown version %d (this is version %d)" % (version, _VERSION))
    if n != length:
        raise StateError(("truncated (%d of %d bytes)" if n < length else "%d bytes where the header says %d")
                         % (n, length))
    if n < _MIN_LEN:
        raise StateError("bad lengths (%d bytes)" % n)
    end = n - _TAG
    if not crypto.ct_equal(crypto.hmac_sha256(key, memoryview(blob)[:end])[:_TAG], blob[end:]):
        raise StateError("tag mismatch: made for another PSK or identity, or corrupt")
    st = _parse(blob, flags, end, (_F_ALL_V1, _F_ALL_V2, _F_ALL)[version - 1])
    problem = _problem(st)
    if problem is not None:
        raise StateError("inconsistent fields: " + problem)
    if server is not None and st.server != server:
        show = need("dtls_lite.ipaddr").show
        raise StateError("made for another server (%s, not %s)" % (show(st.server), show(server)))
    return st


# ---- a live connection to and from a SavedState ------------------------------------------------
# What Connection.snapshot() and .restore() use; only a client with a store loads this module.

def from_live(session, epoch, reserve):
    """SavedState of session (or None) and, if not None, of the live epoch (session.Epoch),
    with write_seq = the next sequence number + reserve (a reservation, DESIGN.md 4)."""
    if not isinstance(reserve, int) or isinstance(reserve, bool) or reserve < 1:
        raise UsageError("reserve must be an int >= 1")
    st = SavedState()
    if session is not None:
        st.session_id = session.session_id
        st.master_secret = session.master_secret
        st.suite = session.suite
        st.ems = session.ems
        st.etm = session.etm
    if epoch is not None:
        st.has_connection = True
        st.epoch = epoch.epoch
        st.key_block = epoch.key_block
        st.write_seq = min(epoch.write.seq + reserve, _MAX_SEQ)  # 48 bits; at the top: exhausted
        r = epoch.read
        st.read_max_seq = r.max_seq
        st.read_window = r.window
        st.write_cid = epoch.write_cid
        st.read_cid = epoch.read_cid
    return st


def to_live(saved, suites, rng):
    """(Session, Epoch) of a SavedState that holds a connection, its write sequence number
    at the reservation and its replay window as saved; UsageError if it cannot continue."""
    if not saved.has_connection:
        raise UsageError("restore(): the saved state holds no connection")
    if saved.suite not in suites:
        raise UsageError("restore(): saved suite %s is not enabled" % rl.suite_name(saved.suite))
    session = Session(saved.session_id, saved.master_secret, saved.suite, saved.ems, saved.etm)
    e = Epoch(saved.epoch, saved.suite, saved.etm, saved.key_block, saved.write_cid, saved.read_cid, rng)
    e.write.seq = saved.write_seq
    e.read.max_seq = saved.read_max_seq
    e.read.window = saved.read_window
    return session, e


# ---- internals ---------------------------------------------------------------------------------

def _is_bytes(v):
    return isinstance(v, (bytes, bytearray, memoryview))


def _check_key(key):
    if not _is_bytes(key) or len(key) != 32:
        raise UsageError("key must be the 32 bytes of state_key()")


def _put(buf, p, data):
    n = len(data)
    buf[p:p + n] = data
    return p + n


def _put_addr(buf, p, addr):
    struct.pack_into(">H", buf, p, addr[1])
    return _put(buf, p + 2, addr[0])


def _addr(addr, what, min_port):
    """(ip bytes, port) from None or (ip text or bytes, port); UsageError if it is neither."""
    if addr is None:
        return None
    try:
        ip, port = addr
    except (TypeError, ValueError):
        raise UsageError("%s must be (ip, port) or None" % what)
    if not isinstance(port, int) or not min_port <= port <= 0xFFFF:
        raise UsageError("%s port must be %d..65535" % (what, min_port))
    return ip_bytes(ip), port


def _problem(st):
    """What is wrong with st's values (other than addresses), or None; shared by dump and load."""
    if not _uint(st.suite, 0xFFFF) or st.suite not in rl.SUITES:
        return "unknown suite " + (rl.suite_name(st.suite) if isinstance(st.suite, int) else repr(st.suite))
    if not _is_bytes(st.session_id) or len(st.session_id) > 32:
        return "session_id must be 0..32 bytes"
    if not _is_bytes(st.master_secret) or len(st.master_secret) != 48:
        return "master_secret must be 48 bytes"
    t = st.last_exchange_s
    if t is not None and not _uint(t, _MAX_U32):
        return "last_exchange_s must be None or 0..2**32-1"
    if st.srtt_ms is not None and not (_uint(st.srtt_ms, _MAX_RTT_MS) and _uint(st.rttvar_ms, _MAX_RTT_MS)
                                       and _uint(st.rto_backoff, _MAX_BACKOFF)):
        return "srtt_ms and rttvar_ms must be 0..65535 and rto_backoff 0..%d" % _MAX_BACKOFF
    if st.app_counter is not None and not _uint(st.app_counter, _MAX_U32):
        return "app_counter must be None or 0..2**32-1"
    if not _is_bytes(st.app_data) or len(st.app_data) > _MAX_APP_DATA:
        return "app_data must be 0..%d bytes" % _MAX_APP_DATA
    if not st.has_connection:
        return None
    if not _uint(st.epoch, 0xFFFF) or st.epoch == 0:
        return "epoch must be 1..65535 with a connection"
    if not _is_bytes(st.key_block) or len(st.key_block) != rl.key_block_len(st.suite):
        return "key_block must be %d bytes for %s" % (rl.key_block_len(st.suite), rl.suite_name(st.suite))
    if not _uint(st.write_seq, _MAX_SEQ):
        return "write_seq must be 0..2**48-1"
    m, w = st.read_max_seq, st.read_window
    if not isinstance(m, int) or not -1 <= m <= _MAX_SEQ or not _uint(w, 0xFFFFFFFFFFFFFFFF):
        return "read_max_seq must be -1..2**48-1 and read_window 0..2**64-1"
    # Bit i of the window stands for max_seq - i (record.ReadState): none below sequence 0.
    if m < 63 and w >> (m + 1):
        return "read_window marks records below sequence 0"
    for cid in (st.write_cid, st.read_cid):
        if not _is_bytes(cid) or len(cid) > 255:  # RFC 9146 3: opaque cid<0..2^8-1>
            return "CIDs must be 0..255 bytes"
    return None


def _uint(v, top):
    return isinstance(v, int) and 0 <= v <= top


def _parse(blob, flags, end, known):
    """SavedState from an authenticated blob whose version knows the flags `known`;
    StateError if its lengths do not add up."""
    if flags & ~known or (flags & _F_SERVER6 and not flags & _F_SERVER) \
            or (flags & _F_LOCAL6 and not flags & _F_LOCAL):
        raise StateError("inconsistent fields: unknown or contradictory flags 0x%03X" % flags)
    st = SavedState()
    st.ems = bool(flags & _F_EMS)
    st.etm = bool(flags & _F_ETM)
    st.suite, n = struct.unpack_from(">HB", blob, _HEADER)
    p = _need(_HEADER + 3, n + 48, end)
    st.session_id = blob[_HEADER + 3:p - 48]
    st.master_secret = blob[p - 48:p]
    if flags & _F_SERVER:
        p, st.server = _pull_addr(blob, p, 16 if flags & _F_SERVER6 else 4, end)
    if flags & _F_LOCAL:
        p, st.local = _pull_addr(blob, p, 16 if flags & _F_LOCAL6 else 4, end)
    if flags & _F_LAST:
        p = _need(p, 4, end)
        st.last_exchange_s = struct.unpack_from(">I", blob, p - 4)[0]
    if flags & _F_RTT:
        p = _need(p, 5, end)
        st.srtt_ms, st.rttvar_ms, st.rto_backoff = struct.unpack_from(">HHB", blob, p - 5)
    if flags & _F_COUNTER:
        p = _need(p, 4, end)
        st.app_counter = struct.unpack_from(">I", blob, p - 4)[0]
    if flags & _F_APP_DATA:
        p = _need(p, 1, end)
        n = blob[p - 1]
        if n == 0:
            raise StateError("inconsistent fields: empty app_data")
        p = _need(p, n, end)
        st.app_data = blob[p - n:p]
    if flags & _F_CONN:
        if st.suite not in rl.SUITES:
            raise StateError("inconsistent fields: unknown suite 0x%04X" % st.suite)
        p = _need(p, 23, end)
        epoch, whi, wlo, rhi, rlo, st.read_window, n = struct.unpack_from(">HHIHIQB", blob, p - 23)
        st.has_connection = True
        st.epoch = epoch
        st.write_seq = (whi << 32) | wlo
        st.read_max_seq = (rhi << 32) | rlo if flags & _F_READ_ANY else -1
        if not flags & _F_READ_ANY and (rhi or rlo or st.read_window):
            raise StateError("inconsistent fields: replay window without read_max_seq")
        p = _need(p, n + 1, end)
        st.write_cid = blob[p - n - 1:p - 1]
        n = blob[p - 1]
        p = _need(p, n, end)
        st.read_cid = blob[p - n:p]
        p = _need(p, rl.key_block_len(st.suite), end)
        st.key_block = blob[p - rl.key_block_len(st.suite):p]
    elif flags & _F_READ_ANY:
        raise StateError("inconsistent fields: read_max_seq without a connection")
    if p != end:
        raise StateError("inconsistent fields: bad lengths (%d bytes left over)" % (end - p))
    return st


def _need(p, n, end):
    """p + n if n more bytes fit before end, else StateError."""
    if p + n > end:
        raise StateError("inconsistent fields: bad lengths (field runs past the end)")
    return p + n


def _pull_addr(blob, p, size, end):
    p = _need(p, 2 + size, end)
    return p, (blob[p - size:p], struct.unpack_from(">H", blob, p - size - 2)[0])
