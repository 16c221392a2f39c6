# Sans-I/O DTLS 1.2 PSK client connection (RFC 6347, RFC 4279): records, epochs, the replay
# window, application data, alerts, close, and saving/restoring a live connection.
#
# Rules of this file:
# - It never touches a socket, a clock or a file: the caller passes datagrams and now_ms in,
#   takes datagrams_to_send() out, and calls handle_timer() when timer() is due.
# - The handshake is a guest (dtls_lite/client_handshake.py): imported by connect(), it hands
#   back a Session and an Epoch (dtls_lite/session.py) and leaves; on MicroPython its modules
#   are then deleted, so a continued connection never loads them (restore() needs none).
# - Records that fail to authenticate, replays and garbage are dropped and counted
#   (RFC 6347 4.1.2.7), never raised.
# - Peer failures close the connection and surface as an EVENT_CLOSED carrying the error
#   (also kept in .error); API misuse raises UsageError at once.
from dtls_lite import crypto
from dtls_lite import record as rl
from dtls_lite.compat import MICROPYTHON, attrs, const, drop_modules, need, put_attrs
from dtls_lite.errors import ConnectionClosed, DTLSError, ProtocolError, UsageError
from dtls_lite.session import Session, resumable  # noqa: F401 - Session: public here since 0.1

ST_IDLE = const(0)
ST_WAIT_SERVER_HELLO = const(1)  # or HelloVerifyRequest
ST_WAIT_SERVER_KEY_EXCHANGE = const(2)  # or ServerHelloDone
ST_WAIT_SERVER_HELLO_DONE = const(3)
ST_WAIT_FINISHED = const(4)  # server ChangeCipherSpec, then Finished
ST_CONNECTED = const(5)
ST_CLOSED = const(6)

EVENT_CONNECTED = const(1)  # payload None
EVENT_DATA = const(2)  # payload: bytes
EVENT_ALERT = const(3)  # payload: (level, description) of a warning or fatal alert received
EVENT_CLOSED = const(4)  # payload: None after close_notify/close(), else the DTLSError

_LEVEL_WARNING = const(1)
_LEVEL_FATAL = const(2)
_ALERT_CLOSE_NOTIFY = const(0)
_ALERT_INTERNAL_ERROR = const(80)
_ALERT_NO_RENEGOTIATION = const(100)
_HT_HELLO_REQUEST = const(0)
_HT_FINISHED = const(20)
_HS_HEADER_LEN = const(12)
_MAX_PLAINTEXT = const(16384)
# Default handshake_timeout_ms: one whole retransmission schedule for each client flight of a
# full handshake with a cookie exchange (ClientHello twice, then ClientKeyExchange..Finished).
_FLIGHTS = const(3)
# What the handshake loads, deleted from sys.modules once it is over (MicroPython); the
# client loads them before it reads the clock that starts the handshake's timers.
HANDSHAKE_MODULES = ("dtls_lite.client_handshake", "dtls_lite.handshake", "dtls_lite.reassembly",
                     "dtls_lite.flight", "dtls_lite.rare")


class Stats:
    """Per-connection counters; read by the adapter, the benchmark and the demo."""

    def __init__(self):
        self.datagrams_sent = 0
        self.bytes_sent = 0
        self.datagrams_received = 0
        self.bytes_received = 0
        self.flights_sent = 0
        self.retransmissions = 0
        self.records_dropped = 0
        self.hello_verify = False
        self.round_trips = 0  # handshake flights of ours the server answered
        self.handshake_kind = None  # "full", "abbreviated" or "continued"
        self.handshake_started_ms = None
        self.handshake_ms = None

    def as_dict(self):
        return dict(self.__dict__)


# Connection's class defaults, by name, for the rollback of a datagram (see _Handshake's
# in dtls_lite/client_handshake.py). A test checks the list.
_DEFAULTS = ("state", "error", "session", "epoch", "suite", "identity_hint", "write_cid", "read_cid",
             "handshake", "now_ms", "drop_handshake_code", "_datagram_len", "_client_random", "_fin")


class Connection:
    # Immutable defaults as class attributes: a new Connection sets only what differs, which
    # halves its construction time on MicroPython. _DEFAULTS lists them.
    state = ST_IDLE
    error = None
    session = None  # the Session (resumption), once connected
    epoch = None  # the Epoch (keys, CIDs, sequence numbers, replay window), once connected
    suite = None
    identity_hint = None
    write_cid = b""  # CID we put in records (the server's, RFC 9146); b"" = none
    read_cid = b""  # CID the server puts in records to us
    handshake = None  # the client_handshake.ClientHandshake while one runs
    now_ms = None  # now_ms of the API call being processed
    drop_handshake_code = MICROPYTHON  # delete the handshake's modules when it ends
    _datagram_len = 0
    _client_random = None
    _fin = None  # abbreviated: [last flight, server Finished's message_seq, re-sends, period, sent_ms]

    def __init__(self, identity, psk, rng=None, suites=None, mtu=1200, initial_timeout_ms=1000,
                 max_timeout_ms=60000, max_retransmits=6, max_handshake_size=4096, session=None,
                 cid=b"", handshake_timeout_ms=None):
        if isinstance(identity, str):
            identity = identity.encode()
        if not isinstance(identity, (bytes, bytearray)) or not 1 <= len(identity) <= 128:
            raise UsageError("identity must be 1..128 bytes")  # RFC 7925 4.2 / RFC 4279 5.3
        if not isinstance(psk, (bytes, bytearray)) or not 1 <= len(psk) <= 64:
            raise UsageError("psk must be 1..64 bytes")
        if suites is None:
            suites = rl.supported_suites()
        else:
            suites = need("dtls_lite.rare").check_suites(suites)  # rare paths: no heap otherwise
        _check_int("mtu", mtu, 128, 16384)
        _check_int("initial_timeout_ms", initial_timeout_ms, 1, None)
        _check_int("max_timeout_ms", max_timeout_ms, initial_timeout_ms, None)
        _check_int("max_retransmits", max_retransmits, 0, None)
        _check_int("max_handshake_size", max_handshake_size, 1, 0xFFFFFF)  # a uint24 length
        if handshake_timeout_ms is None:
            handshake_timeout_ms = _FLIGHTS * _schedule_ms(initial_timeout_ms, max_timeout_ms,
                                                           max_retransmits)
        _check_int("handshake_timeout_ms", handshake_timeout_ms, 1, None)
        if rng is not None:
            rng = need("dtls_lite.rare").checked_rng(rng)
        if session is not None and not isinstance(session, Session):
            raise UsageError("session must be a connection.Session or None")
        if cid is not None and (not isinstance(cid, (bytes, bytearray)) or len(cid) > 255):
            raise UsageError("cid must be None or 0..255 bytes")  # RFC 9146 3: uint8 length
        # Datagrams dropped for lack of memory. An instance attribute from the start: it is
        # counted right after a MemoryError, when a new attribute could not be added.
        self.oom_drops = 0
        self.identity = bytes(identity)
        self._psk = bytes(psk)
        self._rng = rng or crypto.random_bytes
        self.suites = suites  # offered in a full handshake, most preferred first
        self.mtu = mtu
        self._timers = (initial_timeout_ms, max_timeout_ms, max_retransmits, handshake_timeout_ms)
        self._max_hs = max_handshake_size
        self._offer = session  # a stored Session to offer for resumption (RFC 5246 7.3)
        self._cid = None if cid is None else bytes(cid)  # offered CID (RFC 9146): b"" = zero-length
        self.stats = Stats()
        self._events = []
        self._out = []
        self._datagram = []  # records of the datagram being filled
        self.read_state = rl.ReadState(0)
        self.write_state = rl.WriteState(0)

    # ---- API -------------------------------------------------------------------------------

    def connect(self, now_ms):
        """Start the handshake: queues the ClientHello."""
        _check_ms(now_ms)
        if self.state != ST_IDLE:
            raise UsageError("connect() called twice")
        try:
            from dtls_lite.client_handshake import ClientHandshake  # a guest: see the header
        except BaseException:
            # MicroPython keeps a module whose import failed part way (a MemoryError on a
            # small heap) in sys.modules, half made: every later handshake would then fail
            # with "can't import name". Drop it so that the next one imports it afresh.
            drop_modules(HANDSHAKE_MODULES)
            raise
        self.now_ms = now_ms
        self.stats.handshake_started_ms = now_ms
        offer = self._offer if resumable(self._offer) else None
        self.handshake = ClientHandshake(self, self._psk, offer, self._cid, self.suites, self._rng,
                                         self._timers, self._max_hs)
        self.handshake.start()

    def receive(self, datagram, now_ms):
        """Process one UDP datagram (one or more records, RFC 6347 4.1).

        Never raises for what the datagram holds. If handling it fails part way (MemoryError),
        the connection is put back as it was before it, as if the datagram had been lost
        (buffered fragments of unfinished messages go too; the server's retransmission brings
        them again). Any other unexpected exception closes the connection with a DTLSError."""
        if isinstance(datagram, memoryview):
            datagram = bytes(datagram)
        if not isinstance(datagram, (bytes, bytearray)):
            raise UsageError("receive() takes the datagram as bytes, not %s" % type(datagram).__name__)
        _check_ms(now_ms)
        st = self.stats
        st.datagrams_received += 1
        st.bytes_received += len(datagram)
        if self.state == ST_IDLE or self.state == ST_CLOSED:
            st.records_dropped += 1
            return
        self.now_ms = now_ms
        h = self.handshake
        if h is not None and h.expired():  # too late for anything the server says now
            st.records_dropped += 1
            self.fail(h.timeout_error(), None)
            return
        self._receive(datagram)

    def _receive(self, datagram):
        # Apart from receive(), with one try block: a small frame, not on the heap.
        h = self.handshake
        saved = None
        try:
            if h is not None:
                saved = (self._checkpoint(), h.checkpoint())
            self._on_datagram(datagram)
            self.flush()
        except BaseException as e:  # noqa: B902 - nothing may leave the connection half-updated
            if isinstance(e, ProtocolError):
                self.fail(e, e.alert)
                return
            if saved is not None:
                self._rollback(saved[0])
                h.rollback(saved[1])
            self.stats.records_dropped += 1
            if isinstance(e, MemoryError):
                self.oom_drops += 1
            elif isinstance(e, Exception) and self.state != ST_CLOSED:
                self.fail(DTLSError("internal error while handling a datagram: %s: %s"
                                    % (type(e).__name__, e)), _ALERT_INTERNAL_ERROR)
            if not isinstance(e, Exception):
                raise  # KeyboardInterrupt, SystemExit: after the rollback

    def datagrams_to_send(self):
        out = self._out
        self._out = []
        return out

    def timer(self):
        """Absolute deadline (ms) at which handle_timer() must be called, or None."""
        h = self.handshake
        return None if h is None else h.deadline()

    def handle_timer(self, now_ms):
        _check_ms(now_ms)
        d = self.timer()
        if d is None or now_ms < d:
            return
        self.now_ms = now_ms
        self.handshake.on_timer()

    def send(self, data):
        """Queue application data as one record."""
        if not isinstance(data, (bytes, bytearray, memoryview)):  # bytes(1000) = 1000 zeros
            raise UsageError("send() takes bytes, not %s" % type(data).__name__)
        if self.state == ST_CLOSED:
            raise ConnectionClosed("connection is closed")
        if self.state != ST_CONNECTED:
            raise UsageError("send() before the handshake completed")
        data = bytes(data)
        if len(data) > _MAX_PLAINTEXT or len(data) + self.write_state.overhead() > self.mtu:
            raise UsageError("data of %d bytes does not fit one record within mtu %d"
                             % (len(data), self.mtu))
        self.queue_record(self.write_state.protect(rl.CT_APPLICATION_DATA, data))
        self.flush()

    def close(self):
        """Send close_notify (if connected) and close. Idempotent."""
        if self.state == ST_CLOSED:
            return
        if self.state == ST_CONNECTED:
            self._send_alert(_LEVEL_WARNING, _ALERT_CLOSE_NOTIFY)
            self.flush()
        self._closed(None)

    def next_event(self):
        """(kind, payload) of the oldest pending event, or None."""
        if self._events:
            return self._events.pop(0)
        return None

    @property
    def max_data_size(self):
        """Largest application payload send() accepts with the current keys and MTU."""
        return min(_MAX_PLAINTEXT, self.mtu - self.write_state.overhead())

    @property
    def handshake_in_flight(self):
        return ST_IDLE < self.state < ST_CONNECTED

    @property
    def next_write_seq(self):
        """(epoch, sequence number) the next record will carry."""
        return self.write_state.epoch, self.write_state.seq

    def keylog_line(self):
        """NSS key log line ("CLIENT_RANDOM <client_random> <master_secret>", hex) for
        Wireshark; None when unknown (a continued connection has no client random here)."""
        if self._client_random is None or self.session is None:
            return None
        return "CLIENT_RANDOM %s %s" % (_hex(self._client_random), _hex(self.session.master_secret))

    # ---- saved state (the blob layout lives in dtls_lite/state.py) ----------------------------

    def restore(self, saved, now_ms):
        """Continue a saved connection (0-RTT): CONNECTED at once with its epoch, keys,
        sequence reservation and replay window. The caller chose to (dtls_lite/wake.py)."""
        _check_ms(now_ms)
        if self.state != ST_IDLE:
            raise UsageError("restore() on a connection that is already in use")
        # only with a store, which loads it anyway
        session, epoch = need("dtls_lite.state").to_live(saved, self.suites, self._rng)
        self.now_ms = now_ms
        self.stats.handshake_started_ms = now_ms
        self.connected("continued", session, epoch, None, None)

    def snapshot(self, reserve):
        """A state.SavedState of this connection whose write_seq is the next sequence number
        plus reserve: persist it BEFORE sending any record numbered at or above the current
        one, so that a crash can never reuse an (epoch, sequence) pair (its CCM nonce).
        Without a usable connection (closed, or not yet connected) only the session is kept."""
        if self.handshake_in_flight:
            raise UsageError("snapshot() while a handshake is in flight")
        live = self.state == ST_CONNECTED and self.write_state.epoch > 0
        return need("dtls_lite.state").from_live(self.session, self.epoch if live else None, reserve)

    # ---- what the handshake (dtls_lite/client_handshake.py) calls ---------------------------

    def connected(self, kind, session, epoch, client_random, last_flight):
        """The handshake is over (or restore() skipped it): session and epoch are live.
        last_flight: the abbreviated handshake's (flight, server Finished's message_seq), sent
        again when that Finished comes again (RFC 6347 4.2.4), else None."""
        self.session = session
        self.epoch = epoch
        self.suite = epoch.suite
        self.install_write(epoch.write, epoch.write_cid)
        self.install_read(epoch.read, epoch.read_cid)
        self._client_random = client_random
        if last_flight is not None:
            t = self._timers
            self._fin = [last_flight[0], last_flight[1], t[2], t[0], self.now_ms]
        self._end_handshake()
        self.state = ST_CONNECTED
        st = self.stats
        st.handshake_kind = kind
        st.handshake_ms = self.now_ms - st.handshake_started_ms
        self._events.append((EVENT_CONNECTED, None))

    def install_write(self, ws, write_cid):
        self.write_state = ws
        self.write_cid = write_cid

    def install_read(self, rs, read_cid):
        self.read_state = rs
        self.read_cid = read_cid

    def queue_record(self, rec):
        """Pack records into datagrams of at most mtu bytes; a record never spans two."""
        if self._datagram and self._datagram_len + len(rec) > self.mtu:
            self.flush()
        self._datagram.append(rec)
        self._datagram_len += len(rec)

    def flush(self):
        if self._datagram:
            d = b"".join(self._datagram) if len(self._datagram) > 1 else self._datagram[0]
            self._datagram = []
            self._datagram_len = 0
            self._out.append(d)
            self.stats.datagrams_sent += 1
            self.stats.bytes_sent += len(d)

    def fail(self, error, alert):
        """Close with error; send the fatal alert first, if one is given."""
        if self.state == ST_CLOSED:
            return
        if alert is not None:
            try:
                self._send_alert(_LEVEL_FATAL, alert)
                self.flush()
            except MemoryError:
                pass  # the alert is a courtesy (alerts are unreliable anyway); closing is not
        self._closed(error)

    # ---- records ---------------------------------------------------------------------------
    # The per-record functions below take few arguments and keep few locals: MicroPython puts
    # larger frames on the heap (see dtls_lite/crypto.py). now_ms travels in self.now_ms.

    def _on_datagram(self, datagram):
        off = 0
        while off < len(datagram) and self.state != ST_CLOSED:
            # a tls12_cid record's length field follows our CID (RFC 9146 4); read per record:
            # a datagram of ServerHello, CCS and Finished (abbreviated) sets it midway
            end = rl.record_end(datagram, off, len(self.read_cid))
            if end < 0:
                self.stats.records_dropped += 1  # truncated: the rest of the datagram is lost
                return
            self.on_record(datagram[off:end])
            off = end

    def on_record(self, rec):
        """One whole record, header included."""
        rs = self.read_state
        if rec[1] != 0xFE or rl.record_epoch(rec) != rs.epoch:  # not DTLS, or another epoch
            if self.handshake is not None:
                self.handshake.on_stray_record(rec)
            else:
                self.stats.records_dropped += 1
            return
        plain = rs.open(rec)
        if plain is None:
            self.stats.records_dropped += 1
            return
        ctype = rec[0]
        if ctype == rl.CT_TLS12_CID:
            # RFC 9146 4: opened only if it carried our CID; its real type ends the inner
            # plaintext. Plaintext (epoch 0) records never have this type.
            if rs.epoch == 0:
                self.stats.records_dropped += 1
                return
            ctype = plain[-1]
            plain = plain[:-1]
        if ctype == rl.CT_APPLICATION_DATA and self.state == ST_CONNECTED and rs.epoch > 0:
            self._events.append((EVENT_DATA, plain))
        elif ctype == rl.CT_HANDSHAKE:
            self._on_handshake_record(plain)
        elif ctype == rl.CT_CHANGE_CIPHER_SPEC and self.handshake is not None:
            self.handshake.on_change_cipher_spec(plain)
        elif ctype == rl.CT_ALERT:
            self._on_alert(plain)
        else:
            self.stats.records_dropped += 1

    def _on_handshake_record(self, data):
        off = 0
        if self.handshake is not None:
            off = self.handshake.on_handshake_record(data)
        if off < 0 or self.state != ST_CONNECTED:
            return
        # Connected: what the server may still send is a retransmission of its last flight,
        # or a HelloRequest (we never renegotiate).
        while off + _HS_HEADER_LEN <= len(data):
            length = int.from_bytes(data[off + 1:off + 4], "big")
            frag_off = int.from_bytes(data[off + 6:off + 9], "big")
            end = int.from_bytes(data[off + 9:off + 12], "big")
            if frag_off + end > length:
                break
            end += off + _HS_HEADER_LEN
            if end > len(data):
                break
            if data[off] == _HT_HELLO_REQUEST and self.read_state.epoch > 0:
                # We never renegotiate (RFC 5746 4.2): say so with a warning.
                self._send_alert(_LEVEL_WARNING, _ALERT_NO_RENEGOTIATION)
            elif data[off] == _HT_FINISHED and self._fin is not None \
                    and (data[off + 4] << 8) | data[off + 5] == self._fin[1]:
                self._resend_fin()  # the server's Finished again: ours was lost
            off = end
        if off != len(data):
            self.stats.records_dropped += 1

    def _resend_fin(self):
        """The abbreviated handshake's last flight again, under the timer's rules (RFC 6347
        4.2.4; see ClientHandshake._resend_last_flight): at most max_retransmits times, the
        first at once, then at least half a doubling period apart."""
        f = self._fin
        if not f[2] or (f[2] < self._timers[2] and self.now_ms - f[4] < f[3] // 2):
            return
        f[2] -= 1
        f[3] = min(f[3] * 2, self._timers[1])
        f[4] = self.now_ms
        st = self.stats
        st.retransmissions += 1
        st.flights_sent += 1
        for m in f[0]:
            self.queue_record(m[0].protect(m[1], m[2]))
        self.flush()

    def _on_alert(self, payload):
        if len(payload) != 2:
            self.stats.records_dropped += 1
            return
        level = payload[0]
        desc = payload[1]
        self._events.append((EVENT_ALERT, (level, desc)))
        if self.handshake is not None:
            self.handshake.on_alert(level, desc)  # unauthenticated ones wait for the timer there
        elif desc == _ALERT_CLOSE_NOTIFY:
            # RFC 5246 7.2.1: answer with our own close_notify and close.
            self._send_alert(_LEVEL_WARNING, _ALERT_CLOSE_NOTIFY)
            self._closed(None)  # receive() flushes
        elif level == _LEVEL_FATAL:
            self._closed(need("dtls_lite.rare").alert_error(level, desc, False))

    def _send_alert(self, level, desc):
        self.queue_record(self.write_state.protect(rl.CT_ALERT, bytes((level, desc))))

    # ---- failure and the end of a handshake ----------------------------------------------------

    def _closed(self, error):
        self.state = ST_CLOSED
        self.error = error
        self._fin = None
        self._end_handshake()
        self._events.append((EVENT_CLOSED, error))

    def _end_handshake(self):
        """The handshake leaves: its object, and on MicroPython its modules (the heap comes
        back; the next handshake imports them again)."""
        if self.handshake is None:
            return
        self.handshake = None
        if self.drop_handshake_code:
            drop_modules(HANDSHAKE_MODULES)

    def _checkpoint(self):
        """What receive() may change during a handshake: our attributes, the stats', and
        copies of the lists changed in place."""
        return (attrs(self), attrs(self.stats), list(self._datagram), list(self._events), list(self._out))

    def _rollback(self, saved):
        # Allocates nothing (it runs after a MemoryError).
        put_attrs(self, saved[0], _DEFAULTS)
        put_attrs(self.stats, saved[1], ())
        self._datagram = saved[2]
        self._events = saved[3]
        self._out = saved[4]


def _hex(b):
    return "".join("%02x" % x for x in b)  # bytes.hex() is missing in MicroPython 1.16


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(name, v, lo, hi):
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        raise UsageError("%s must be an int %s, not %r"
                         % (name, ">= %d" % lo if hi is None else "in %d..%d" % (lo, hi), v))


def _check_ms(now_ms):
    if not _is_int(now_ms):
        raise UsageError("now_ms must be an int (milliseconds), not %r" % (now_ms,))


def _schedule_ms(initial, maximum, retransmits):
    """How long one flight waits in all before HandshakeTimeout (RFC 6347 4.2.4.1 doubling)."""
    total = 0
    t = initial
    n = retransmits + 1
    while n and t < maximum:
        total += t
        t = min(2 * t, maximum)
        n -= 1
    return total + n * maximum


# The name of old: state.py and tests used it before session.py existed.
_resumable = resumable
