# Sans-I/O DTLS 1.2 PSK client connection (RFC 6347, RFC 4279).
#
# Rules of this file:
# - It never touches a socket, a clock or a file: the caller passes datagrams and now_ms in,
#   takes datagrams_to_send() out, and calls handle_timer() when timer() is due.
# - Per-epoch security state (record.WriteState/ReadState, Session) is long-lived and small;
#   everything only the handshake needs lives in _Handshake and is dropped after Finished.
# - Handshake messages are accepted per state from the _ACCEPT table; anything else is an
#   unexpected_message alert. Records that fail to authenticate, replays and garbage are
#   dropped and counted (RFC 6347 4.1.2.7), never raised.
# - Peer failures close the connection and surface as an EVENT_CLOSED carrying the error
#   (also kept in .error); API misuse raises UsageError at once.
from dtls_lite import crypto
from dtls_lite import handshake as hs
from dtls_lite import record as rl
from dtls_lite.compat import const
from dtls_lite.errors import ConnectionClosed, HandshakeTimeout, ProtocolError, UsageError
from dtls_lite.errors import DTLSError
from dtls_lite.reassembly import Reassembly

ST_IDLE = const(0)
ST_WAIT_SERVER_HELLO = const(1)  # or HelloVerifyRequest
ST_WAIT_SERVER_KEY_EXCHANGE = const(2)  # or ServerHelloDone
ST_WAIT_SERVER_HELLO_DONE = const(3)
ST_WAIT_FINISHED = const(4)  # server ChangeCipherSpec, then Finished
ST_CONNECTED = const(5)
ST_CLOSED = const(6)

_ACCEPT = {
    ST_WAIT_SERVER_HELLO: (hs.HT_HELLO_VERIFY_REQUEST, hs.HT_SERVER_HELLO),
    ST_WAIT_SERVER_KEY_EXCHANGE: (hs.HT_SERVER_KEY_EXCHANGE, hs.HT_SERVER_HELLO_DONE),
    ST_WAIT_SERVER_HELLO_DONE: (hs.HT_SERVER_HELLO_DONE,),
    ST_WAIT_FINISHED: (hs.HT_FINISHED,),
}

EVENT_CONNECTED = const(1)  # payload None
EVENT_DATA = const(2)  # payload: bytes
EVENT_ALERT = const(3)  # payload: (level, description) of a warning or fatal alert received
EVENT_CLOSED = const(4)  # payload: None after close_notify/close(), else the DTLSError

_LEVEL_WARNING = const(1)
_LEVEL_FATAL = const(2)
_MAX_PLAINTEXT = const(16384)
# Server messages buffered ahead of the next one due: a flight has at most 3 (ServerHello,
# ServerKeyExchange, ServerHelloDone); forged fragments further ahead are dropped.
_WINDOW = const(4)
# Default handshake_timeout_ms: one whole retransmission schedule for each client flight of a
# full handshake with a cookie exchange (ClientHello twice, then ClientKeyExchange..Finished).
_FLIGHTS = const(3)
_MAX_EARLY_RECORDS = const(4)
_OPENING = (hs.HT_SERVER_HELLO, hs.HT_HELLO_VERIFY_REQUEST)  # what may open a server flight
_MAX_HELLO_VERIFY = const(4)


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


class Session:
    """What resumption needs (RFC 5246 7.3): kept after the handshake."""

    def __init__(self, session_id, master_secret, suite, ems, etm):
        self.session_id = session_id
        self.master_secret = master_secret
        self.suite = suite
        self.ems = ems
        self.etm = etm


class _Handshake:
    """Handshake-only state, dropped once the server's Finished verifies.

    Immutable defaults are class attributes, so an instance holds only what it sets
    (MicroPython grows, and reallocates, an instance's attribute table one attribute at a time).
    """

    cookie = b""
    hello_verify_count = 0
    send_seq = 0  # next message_seq we send
    recv_seq = None  # next message_seq expected; None until the server's first message
    client_hello = None  # the whole ClientHello message last sent
    server_hello = None
    identity_hint = None
    master = None
    pending_read = None
    last_peer_seq = -1  # message_seq ending the server's previous flight
    offered_id = b""  # session_id offered for resumption (RFC 5246 7.3)
    resumed = False  # the server echoed offered_id: abbreviated handshake
    pending_write = None  # abbreviated: our epoch-1 state, used once the server's Finished verifies

    def __init__(self, client_random):
        self.client_random = client_random
        self.frags = Reassembly()  # server messages not yet whole or not yet due
        self.transcript = []  # whole messages covered by Finished (RFC 6347 4.2.6), as received or sent
        self.early_records = []  # next-epoch records that overtook the server's CCS, whole


# Connection's and _Handshake's class defaults, by name: receive()'s rollback restores them
# (dir() would find them, but costs ~0.7 ms a call on MicroPython). A test checks the lists.
# Lists that receive() changes in place (append, insert) are copied by name in _save().
_CONN_DEFAULTS = ("state", "error", "session", "suite", "identity_hint", "write_cid", "read_cid",
                  "_datagram_len", "_hs", "_key_block", "_client_random", "_last_peer_seq", "_flight",
                  "_deadline", "_retransmits", "_now", "_sent_ms", "_repeats", "_hvr_repeats",
                  "_close_pending")
_HS_DEFAULTS = ("cookie", "hello_verify_count", "send_seq", "recv_seq", "client_hello", "server_hello",
                "identity_hint", "master", "pending_read", "last_peer_seq", "offered_id", "resumed",
                "pending_write")


def _resumable(s):
    # RFC 7627 5.3: never resume a session that did not use extended master secret.
    return s is not None and s.ems and 0 < len(s.session_id) <= 32 and len(s.master_secret) == 48


class Connection:
    # Immutable defaults as class attributes (see _Handshake): a new Connection sets only what
    # differs, which halves its construction time on MicroPython. _CONN_DEFAULTS lists them.
    state = ST_IDLE
    error = None
    session = None
    suite = None
    identity_hint = None
    write_cid = b""  # CID we put in records (the server's, RFC 9146); b"" = none
    read_cid = b""  # CID the server puts in records to us
    _datagram_len = 0
    _hs = None
    _key_block = None
    _client_random = None
    _last_peer_seq = -1  # abbreviated: message_seq of the server's Finished
    # retransmission machine (RFC 6347 4.2.4), separate from the handshake states
    _flight = None  # [(write_state, content_type, payload)]
    _deadline = None
    _retransmits = 0
    _now = None  # now_ms of the API call being processed
    _sent_ms = 0  # now_ms of the current flight's last transmission
    _repeats = 0  # times the server re-sent its previous flight: ours did not get through
    _hvr_repeats = 0  # HelloVerifyRequests that came after we sent the cookie
    _close_pending = None  # error of a close_notify during the handshake, until the timer

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
            from dtls_lite import rare  # rare paths live there: no heap for them otherwise
            suites = rare.check_suites(suites)
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
            from dtls_lite import rare
            rng = rare.checked_rng(rng)
        self._hs_timeout = handshake_timeout_ms  # overall, from connect(): nothing extends it
        # Datagrams dropped for lack of memory. An instance attribute from the start: _undo()
        # counts here right after a MemoryError, when a new attribute could not be added.
        self._oom = 0
        self.identity = bytes(identity)
        self._psk = bytes(psk)
        self._rng = rng or crypto.random_bytes
        self._suites = suites
        self._mtu = mtu
        self._initial_timeout = initial_timeout_ms
        self._max_timeout = max_timeout_ms
        self._max_retransmits = max_retransmits
        self._max_hs = max_handshake_size
        if session is not None and not isinstance(session, Session):
            raise UsageError("session must be a connection.Session or None")
        if cid is not None and (not isinstance(cid, (bytes, bytearray)) or len(cid) > 255):
            raise UsageError("cid must be None or 0..255 bytes")  # RFC 9146 3: uint8 length
        self._offer = session  # a stored Session to offer for resumption (RFC 5246 7.3)
        self._cid = None if cid is None else bytes(cid)  # offered CID (RFC 9146): b"" = zero-length
        self.stats = Stats()
        self._events = []
        self._out = []
        self._datagram = []  # records of the datagram being filled
        self._read = rl.ReadState(0)
        self._write = rl.WriteState(0)
        self._timeout = initial_timeout_ms

    # ---- API -------------------------------------------------------------------------------

    def connect(self, now_ms):
        """Start the handshake: queues the ClientHello."""
        _check_ms(now_ms)
        if self.state != ST_IDLE:
            raise UsageError("connect() called twice")
        self._hs = _Handshake(self._rng(32))
        if _resumable(self._offer):
            self._hs.offered_id = self._offer.session_id
        self.stats.handshake_started_ms = now_ms
        self.state = ST_WAIT_SERVER_HELLO
        self._now = now_ms
        self._send_client_hello()

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
        self._now = now_ms
        if self._hs_expired():  # too late for anything the server says now
            st.records_dropped += 1
            self._fail(HandshakeTimeout(self._timeout_reason()), None)
            return
        self._receive(datagram)

    def _receive(self, datagram):
        # Apart from receive(), with one try block: a small frame, not on the heap.
        saved = None
        try:
            if self._hs is not None:
                saved = _save(self)
            self._on_datagram(datagram)
            self._flush()
        except BaseException as e:  # noqa: B902 - nothing may leave the connection half-updated
            if isinstance(e, ProtocolError):
                self._fail(e, e.alert)
                return
            self._undo(saved, e)
            if not isinstance(e, Exception):
                raise  # KeyboardInterrupt, SystemExit: after the undo

    def datagrams_to_send(self):
        out = self._out
        self._out = []
        return out

    def timer(self):
        """Absolute deadline (ms) at which handle_timer() must be called, or None."""
        return self._deadline

    def handle_timer(self, now_ms):
        _check_ms(now_ms)
        if self._deadline is None or now_ms < self._deadline:
            return
        self._now = now_ms
        if self._close_pending is not None:  # the server's close_notify, no fatal alert after it
            self._closed(self._close_pending)
            return
        if self._hs_expired() or self._retransmits >= self._max_retransmits:
            self._fail(HandshakeTimeout(self._timeout_reason()), None)
            return
        self._retransmits += 1
        self.stats.retransmissions += 1
        # RFC 6347 4.2.4.1: double the timer on each retransmission, up to the maximum.
        self._timeout = min(self._timeout * 2, self._max_timeout)
        try:
            self._transmit_flight()
        except MemoryError:
            self._arm()  # as if this retransmission had been lost: the next one is due later

    def _timeout_reason(self):
        """Why the handshake gives up (dtls_lite/rare.py builds the message)."""
        try:
            from dtls_lite import rare
        except MemoryError:  # loaded from .mpy it needs a few KB: still a HandshakeTimeout
            return "no answer from server after %d retransmissions" % self._retransmits
        return rare.timeout_reason(self)

    def _hs_expired(self):
        return ST_IDLE < self.state < ST_CONNECTED and \
            self._now - self.stats.handshake_started_ms >= self._hs_timeout

    def send(self, data):
        """Queue application data as one record."""
        if not isinstance(data, (bytes, bytearray, memoryview)):  # bytes(1000) = 1000 zeros
            raise UsageError("send() takes bytes, not %s" % type(data).__name__)
        if self.state == ST_CLOSED:
            raise ConnectionClosed("connection is closed")
        if self.state != ST_CONNECTED:
            raise UsageError("send() before the handshake completed")
        data = bytes(data)
        if len(data) > _MAX_PLAINTEXT or len(data) + self._write.overhead() > self._mtu:
            raise UsageError("data of %d bytes does not fit one record within mtu %d"
                             % (len(data), self._mtu))
        self._queue_record(self._write.protect(rl.CT_APPLICATION_DATA, data))
        self._flush()

    def close(self):
        """Send close_notify (if connected) and close. Idempotent."""
        if self.state == ST_CLOSED:
            return
        if self.state == ST_CONNECTED:
            self._send_alert(_LEVEL_WARNING, hs.ALERT_CLOSE_NOTIFY)
            self._flush()
        self._closed(None)

    def next_event(self):
        """(kind, payload) of the oldest pending event, or None."""
        if self._events:
            return self._events.pop(0)
        return None

    @property
    def max_data_size(self):
        """Largest application payload send() accepts with the current keys and MTU."""
        return min(_MAX_PLAINTEXT, self._mtu - self._write.overhead())

    # ---- records ---------------------------------------------------------------------------
    # The per-record and per-message functions below take few arguments and keep few locals:
    # MicroPython puts larger frames on the heap (see dtls_lite/crypto.py). now_ms travels in
    # self._now and a record's epoch is the read state's (or a buffered message's own).

    def _on_datagram(self, datagram):
        off = 0
        while off < len(datagram) and self.state != ST_CLOSED:
            # a tls12_cid record's length field follows our CID (RFC 9146 4); read per record:
            # a datagram of ServerHello, CCS and Finished (abbreviated) sets it midway
            end = rl.record_end(datagram, off, len(self.read_cid))
            if end < 0:
                self.stats.records_dropped += 1  # truncated: the rest of the datagram is lost
                return
            self._on_record(datagram[off:end])
            off = end

    def _on_record(self, rec):
        """One whole record, header included."""
        rs = self._read
        if rec[1] != 0xFE or rl.record_epoch(rec) != rs.epoch:  # not DTLS, or another epoch
            self._on_stray_record(rec)
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
        if ctype == rl.CT_HANDSHAKE:
            self._on_handshake_record(plain)
        elif ctype == rl.CT_CHANGE_CIPHER_SPEC:
            self._on_change_cipher_spec(plain)
        elif ctype == rl.CT_ALERT:
            self._on_alert(plain)
        elif ctype == rl.CT_APPLICATION_DATA and self.state == ST_CONNECTED and rs.epoch > 0:
            self._events.append((EVENT_DATA, plain))
        else:
            self.stats.records_dropped += 1

    def _on_stray_record(self, rec):
        h = self._hs
        if rec[1] == 0xFE and h is not None and h.pending_read is not None \
                and rl.record_epoch(rec) == h.pending_read.epoch and len(h.early_records) < _MAX_EARLY_RECORDS:
            # overtook the server's ChangeCipherSpec (reordering): keep for after the switch
            h.early_records.append(rec)
        else:
            self.stats.records_dropped += 1

    def _on_change_cipher_spec(self, payload):
        h = self._hs
        if self.state != ST_WAIT_FINISHED or h.pending_read is None or payload != b"\x01":
            self.stats.records_dropped += 1  # duplicate or misplaced; harmless to ignore
            return
        self._read = h.pending_read
        h.pending_read = None
        early = h.early_records
        h.early_records = []
        self._on_early_records(early)

    def _on_early_records(self, early):
        for rec in early:
            if self.state != ST_WAIT_FINISHED:
                break
            self._on_record(rec)

    def _on_alert(self, payload):
        if len(payload) != 2:
            self.stats.records_dropped += 1
            return
        level = payload[0]
        desc = payload[1]
        self._events.append((EVENT_ALERT, (level, desc)))
        if desc == hs.ALERT_CLOSE_NOTIFY:
            # RFC 5246 7.2.1: answer with our own close_notify and close.
            if self.state == ST_CONNECTED:
                self._send_alert(_LEVEL_WARNING, hs.ALERT_CLOSE_NOTIFY)
                self._closed(None)  # receive() flushes
            else:
                # tinydtls sends close_notify and, in the next datagram, the fatal alert that
                # says why; and an epoch-0 close_notify may be forged. So wait until the timer
                # (at most initial_timeout_ms): a fatal alert or the server's next flight wins.
                from dtls_lite import rare
                self._close_pending = rare.alert_error(self, level, desc)
                d = self._now + self._initial_timeout
                if self._deadline is None or d < self._deadline:
                    self._deadline = d
        elif level == _LEVEL_FATAL:
            from dtls_lite import rare
            err = rare.alert_error(self, level, desc)
            if self.state == ST_CONNECTED or self._read.epoch > 0:
                self._closed(err)  # authenticated: it is the server's word
                return
            # Epoch 0 is unauthenticated: a blind spoofer who knows our port could end the
            # handshake with one forged alert. Like close_notify, it wins only if the server's
            # next flight does not come before the timer (at most initial_timeout_ms).
            self._close_pending = err
            d = self._now + self._initial_timeout
            if self._deadline is None or d < self._deadline:
                self._deadline = d

    def _sent_finished(self):
        """Whether we wait for the server's Finished after sending ours (a full handshake)."""
        return self.state == ST_WAIT_FINISHED and not self._hs.resumed

    def _send_alert(self, level, desc):
        self._queue_record(self._write.protect(rl.CT_ALERT, bytes((level, desc))))

    # ---- handshake reassembly (RFC 6347 4.2.3) ----------------------------------------------

    def _on_handshake_record(self, data):
        off = 0
        while 0 <= off and off + hs.HS_HEADER_LEN <= len(data):
            off = self._on_handshake_fragment(data, off)
        if 0 <= off != len(data):
            self.stats.records_dropped += 1

    def _on_handshake_fragment(self, data, off):
        """Handles the fragment at off; returns the offset after it, or -1 to stop the record."""
        f = hs.pull_header(data, off)  # msg_type, length, message_seq, fragment_offset, fragment_length
        end = off + hs.HS_HEADER_LEN + f[4]
        if end > len(data) or f[3] + f[4] > f[1]:
            self.stats.records_dropped += 1
            return -1
        if self.state == ST_CONNECTED:
            if f[0] == hs.HT_HELLO_REQUEST and self._read.epoch > 0:
                # We never renegotiate (RFC 5746 4.2): say so with a warning.
                self._send_alert(_LEVEL_WARNING, hs.ALERT_NO_RENEGOTIATION)
            elif f[0] == hs.HT_FINISHED and f[2] == self._last_peer_seq and self._flight:
                # Abbreviated handshake: the server's Finished again means ours was lost.
                self._resend_last_flight()
            return end  # else a retransmission of the server's last flight
        if self.state in _ACCEPT:
            self._on_fragment(f, data[off:end])
            if self.state == ST_CLOSED:
                return -1
        return end

    def _on_fragment(self, f, frag):
        """frag: one fragment, header included; f: its header fields."""
        h = self._hs
        if f[0] == hs.HT_HELLO_REQUEST or not self._admit(f):
            return  # RFC 5246 7.4.1.1: HelloRequest is ignored while negotiating
        if f[4] == f[1] and (f[2] == h.recv_seq or self._opens_flight(f)):
            # The usual case, a whole message that is the next one due: its bytes as received
            # are already the form that is hashed (fragment_offset 0, fragment_length = length).
            # It passes whatever the buffer holds for its message_seq (maybe a forgery).
            h.frags.discard(f[2])
            self._deliver(frag, f[2], self._read.epoch)
        elif not h.frags.add(f, frag, self._read.epoch, self._max_hs):
            self.stats.records_dropped += 1  # no room, or scattered into too many pieces
            return
        if len(h.frags) and self._hs is h and self.state != ST_CLOSED:
            self._deliver_buffered()

    def _opens_flight(self, f):
        """Whether f is of the server's first message answering our ClientHello: its
        message_seq fixes the numbering (after a cookie exchange servers differ), but it cannot
        be ahead of our own (RFC 6347 4.2.2)."""
        h = self._hs
        return h.recv_seq is None and f[2] <= h.send_seq and \
            (f[0] == hs.HT_SERVER_HELLO or f[0] == hs.HT_HELLO_VERIFY_REQUEST)

    def _admit(self, f):
        """Whether to take the fragment: only inside a window of _WINDOW messages from the next
        one due; one delivered already may be the server's retransmission (then ours was lost)."""
        h = self._hs
        mseq = f[2]
        if f[0] == hs.HT_HELLO_VERIFY_REQUEST and h.cookie and f[3] == 0:
            self._hvr_repeats += 1  # after we returned a cookie: reported if we time out
        if h.recv_seq is None:
            end = h.send_seq + _WINDOW
        elif mseq < h.recv_seq:
            # A retransmitted final message of the server's previous flight means our last
            # flight was lost: send it again (RFC 6347 4.2.4).
            if mseq == h.last_peer_seq and f[3] + f[4] == f[1]:
                self._repeats += 1
                self._resend_last_flight()
            return False
        else:
            end = h.recv_seq + _WINDOW
        if mseq >= end:
            self.stats.records_dropped += 1  # a forgery, or far too early to be worth memory
            return False
        if f[1] > self._max_hs:
            if mseq != h.recv_seq and not self._opens_flight(f):
                self.stats.records_dropped += 1
                return False
            raise ProtocolError(hs.ALERT_HANDSHAKE_FAILURE, "handshake message of %d bytes exceeds "
                                "max_handshake_size %d" % (f[1], self._max_hs))
        return True

    def _deliver(self, msg, mseq, epoch):
        h = self._hs
        h.recv_seq = mseq + 1
        if len(h.frags):
            h.frags.drop_below(mseq + 1)
        self._on_message(msg, epoch)

    def _deliver_buffered(self):
        """Delivers every complete message that is due, in message_seq order."""
        h = self._hs
        while len(h.frags):  # each turn takes one message out, or returns
            mseq = h.recv_seq
            if mseq is None:
                mseq = h.frags.first_complete(_OPENING, h.send_seq + 1)
                if mseq is None:
                    return
            got = h.frags.pop(mseq)
            if got is None:
                return
            self._deliver(got[0], mseq, got[1])
            if self._hs is not h or self.state == ST_CLOSED:
                return

    def _on_message(self, msg, epoch):
        """One whole handshake message (header included, as hashed) that arrived in epoch."""
        t = msg[0]
        if t not in _ACCEPT[self.state]:
            raise ProtocolError(hs.ALERT_UNEXPECTED_MESSAGE, "unexpected handshake message %d in state %d"
                                % (t, self.state))
        body = msg[hs.HS_HEADER_LEN:]
        if t == hs.HT_HELLO_VERIFY_REQUEST:
            self._on_hello_verify_request(body)
        elif t == hs.HT_FINISHED:
            if epoch == 0:  # a Finished must arrive under the new keys (RFC 5246 7.4.9)
                raise ProtocolError(hs.ALERT_UNEXPECTED_MESSAGE, "Finished before ChangeCipherSpec")
            self._on_finished(body, msg)
        else:
            self._hs.transcript.append(msg)
            if t == hs.HT_SERVER_HELLO:
                self._on_server_hello(body)
            elif t == hs.HT_SERVER_KEY_EXCHANGE:
                self._hs.identity_hint = hs.parse_server_key_exchange(body)
                self.state = ST_WAIT_SERVER_HELLO_DONE
            else:
                if body:
                    raise ProtocolError(hs.ALERT_DECODE_ERROR, "ServerHelloDone with a body")
                self._hs.last_peer_seq = self._hs.recv_seq - 1
                self._send_client_finished_flight()

    # ---- handshake messages -----------------------------------------------------------------

    def _send_client_hello(self):
        h = self._hs
        if h.client_hello is None:
            suites = self._offered_suites()
            body = hs.client_hello_body(h.client_random, h.offered_id, h.cookie, suites,
                                        rl.SUITE_PSK_AES_128_CBC_SHA256 in suites, self._cid)
        else:  # after a HelloVerifyRequest: the same hello, with the new cookie
            body = hs.client_hello_with_cookie(h.client_hello, h.cookie)
        h.client_hello = hs.whole_message(hs.HT_CLIENT_HELLO, h.send_seq, body)
        h.send_seq += 1
        h.recv_seq = None
        self._start_flight([(self._write, rl.CT_HANDSHAKE, h.client_hello)])

    def _offered_suites(self):
        # Resuming, offer only the session's suite (RFC 5246 7.4.1.2 asks for at least it): the
        # server has shown it takes it, and the hello, sent twice with a cookie, stays small.
        if self._hs.offered_id:
            return (self._offer.suite,)
        return self._suites

    def _on_hello_verify_request(self, body):
        h = self._hs
        cookie = hs.parse_hello_verify_request(body)
        if cookie == h.cookie:
            h.recv_seq = None  # a duplicate: our ClientHello with this cookie is already out
            return
        self.stats.round_trips += 1
        h.hello_verify_count += 1
        if h.hello_verify_count > _MAX_HELLO_VERIFY:
            raise ProtocolError(hs.ALERT_HANDSHAKE_FAILURE, "server keeps sending HelloVerifyRequest (%d,"
                                " a new cookie each time): its connection table may be full" % h.hello_verify_count)
        self.stats.hello_verify = True
        h.cookie = cookie
        # RFC 6347 4.2.1: the same hello again, now with the cookie, as a new message_seq;
        # the first hello and the HelloVerifyRequest stay out of the transcript.
        self._send_client_hello()

    def _on_server_hello(self, body):
        h = self._hs
        suites = self._offered_suites()
        sh = hs.ServerHello(body, suites, rl.SUITE_PSK_AES_128_CBC_SHA256 in suites, self._cid is not None)
        if sh.etm and sh.suite != rl.SUITE_PSK_AES_128_CBC_SHA256:
            sh.etm = False  # RFC 7366 3: meaningless for AEAD suites
        h.server_hello = sh
        self.stats.round_trips += 1
        h.transcript.insert(0, h.client_hello)
        self.suite = sh.suite
        if h.offered_id and sh.session_id == h.offered_id:
            self._resume(h, sh)
        else:
            # A new (or no) session ID: the server forgot ours; go on with a full handshake.
            self.state = ST_WAIT_SERVER_KEY_EXCHANGE

    def _resume(self, h, sh):
        """The server echoed our session ID: abbreviated handshake (RFC 5246 7.3), the server
        sends ChangeCipherSpec and Finished next."""
        s = self._offer
        if sh.suite != s.suite:
            raise ProtocolError(hs.ALERT_ILLEGAL_PARAMETER, "resumed session changed suite %s -> %s"
                                % (rl.suite_name(s.suite), rl.suite_name(sh.suite)))
        if not sh.ems:  # RFC 7627 5.3: abort when a resumed EMS session comes back without it
            raise ProtocolError(hs.ALERT_HANDSHAKE_FAILURE, "server resumed without extended master secret")
        if sh.etm != s.etm:  # RFC 7366 3.1: the resumed session keeps its MAC order
            raise ProtocolError(hs.ALERT_ILLEGAL_PARAMETER, "resumed session changed encrypt-then-MAC")
        h.resumed = True
        h.master = s.master_secret
        h.pending_write, h.pending_read = self._new_keys(h, sh)
        self.state = ST_WAIT_FINISHED

    def _send_client_finished_flight(self):
        self.identity_hint = self._hs.identity_hint
        cke = self._next_message(hs.HT_CLIENT_KEY_EXCHANGE, hs.client_key_exchange_body(self.identity))
        # CKE and CCS go out in epoch 0: this list keeps the epoch-0 state, which _derive_keys
        # then replaces with epoch 1 for the Finished.
        flight = [(self._write, rl.CT_HANDSHAKE, cke), (self._write, rl.CT_CHANGE_CIPHER_SPEC, b"\x01")]
        # One hash serves as RFC 7627's session_hash and as our Finished's transcript hash:
        # both cover every message up to and including the ClientKeyExchange.
        verify = self._derive_keys(crypto.sha256(b"".join(self._hs.transcript)))
        flight.append((self._write, rl.CT_HANDSHAKE, self._next_message(hs.HT_FINISHED, verify)))
        self.state = ST_WAIT_FINISHED
        self._start_flight(flight)

    def _derive_keys(self, transcript_hash):
        """Master secret, epoch-1 states (self._write switches to epoch 1) and our verify_data."""
        h = self._hs
        sh = h.server_hello
        h.master = hs.master_secret(hs.psk_premaster(self._psk), transcript_hash if sh.ems else None,
                                    h.client_random, sh.server_random)
        self._write, h.pending_read = self._new_keys(h, sh)
        return hs.verify_data(h.master, b"client finished", transcript_hash)

    def _new_keys(self, h, sh):
        """Epoch-1 (WriteState, ReadState) from the master secret and this handshake's randoms."""
        kb = hs.key_block(h.master, h.client_random, sh.server_random, rl.key_block_len(sh.suite))
        self._key_block = kb  # kept for snapshot(): continuing the connection needs the keys
        return self._epoch_states(1, sh.suite, sh.etm, kb)

    def _epoch_states(self, epoch, suite, etm, kb):
        """(WriteState, ReadState) of a new epoch; the one place CIDs join the record states."""
        h = self._hs
        if h is not None:
            # RFC 9146 3: each side names the CID it receives. The server's goes in the records
            # we send; ours (maybe empty) in the server's, if it took the extension at all.
            cid = h.server_hello.cid
            self.write_cid = cid or b""
            self.read_cid = self._cid if cid is not None else b""
        return rl.epoch_states(epoch, suite, etm, kb, self._rng, True, self.write_cid, self.read_cid)

    def _next_message(self, msg_type, body):
        """Our next handshake message, whole, added to the transcript."""
        h = self._hs
        msg = hs.whole_message(msg_type, h.send_seq, body)
        h.send_seq += 1
        h.transcript.append(msg)
        return msg

    def _on_finished(self, body, msg):
        h = self._hs
        expected = hs.finished_verify_data(h.master, b"server finished", b"".join(h.transcript))
        if not crypto.ct_equal(expected, body):
            raise ProtocolError(hs.ALERT_DECRYPT_ERROR, "server Finished does not verify: wrong PSK?")
        if not h.resumed:
            self.stats.round_trips += 1
            self._connected(h, "full")
            return
        # Abbreviated: our ChangeCipherSpec and Finished (over ClientHello, ServerHello and the
        # server's Finished) are the last flight. No timer for it: if the server's Finished
        # comes again, our flight was lost and goes out again (RFC 6347 4.2.4).
        h.transcript.append(msg)
        verify = hs.finished_verify_data(h.master, b"client finished", b"".join(h.transcript))
        flight = [(self._write, rl.CT_CHANGE_CIPHER_SPEC, b"\x01")]
        self._write = h.pending_write
        flight.append((self._write, rl.CT_HANDSHAKE, self._next_message(hs.HT_FINISHED, verify)))
        self._connected(h, "abbreviated")
        self._start_flight(flight)  # connected: no timer is armed for it
        self._last_peer_seq = (msg[4] << 8) | msg[5]  # the server's Finished's message_seq

    def _connected(self, h, kind):
        sh = h.server_hello
        self.session = self._offer if h.resumed else Session(sh.session_id, h.master, sh.suite, sh.ems, sh.etm)
        self._client_random = h.client_random
        self._hs = None
        self._stop_flight()
        self.state = ST_CONNECTED
        st = self.stats
        st.handshake_kind = kind
        st.handshake_ms = self._now - st.handshake_started_ms
        self._events.append((EVENT_CONNECTED, None))

    # ---- saved state (the blob layout lives in dtls_lite/state.py) ----------------------------

    def restore(self, saved, now_ms):
        """Continue a saved connection (0-RTT): CONNECTED at once with its epoch, keys,
        sequence reservation and replay window. The caller chose to (dtls_lite/wake.py)."""
        from dtls_lite import state  # only with a store, which loads it anyway
        state.restore(self, saved, now_ms)

    def snapshot(self, reserve):
        """A state.SavedState of this connection whose write_seq is the next sequence number
        plus reserve: persist it BEFORE sending any record numbered at or above the current
        one, so that a crash can never reuse an (epoch, sequence) pair (its CCM nonce).
        Without a usable connection (closed, or not yet connected) only the session is kept."""
        from dtls_lite import state
        return state.snapshot(self, reserve)

    @property
    def handshake_in_flight(self):
        return ST_IDLE < self.state < ST_CONNECTED

    @property
    def next_write_seq(self):
        """(epoch, sequence number) the next record will carry."""
        return self._write.epoch, self._write.seq

    def keylog_line(self):
        """NSS key log line ("CLIENT_RANDOM <client_random> <master_secret>", hex) for
        Wireshark; None when unknown (a continued connection has no client random here)."""
        if self._client_random is None or self.session is None:
            return None
        return "CLIENT_RANDOM %s %s" % (self._client_random.hex(), self.session.master_secret.hex())

    # ---- flights and the retransmission timer (RFC 6347 4.2.4) ------------------------------

    def _start_flight(self, flight):
        self._flight = flight  # [(write_state, content_type, payload)]
        self._timeout = self._initial_timeout
        self._retransmits = 0
        self._repeats = 0
        self._close_pending = None  # the server answered: that close_notify was forged or stale
        self._transmit_flight()

    def _stop_flight(self):
        self._flight = None
        self._deadline = None
        self._timeout = self._initial_timeout
        self._close_pending = None

    def _transmit_flight(self):
        """(Re)protect every message of the flight with fresh sequence numbers and send."""
        self.stats.flights_sent += 1
        for m in self._flight:
            self._queue_message(m)
        self._flush()
        self._sent_ms = self._now
        self._arm()

    def _arm(self):
        """Sets the retransmission timer: never past the handshake deadline, none once connected."""
        if ST_IDLE < self.state < ST_CONNECTED:
            d = self._now + self._timeout
            end = self.stats.handshake_started_ms + self._hs_timeout
            self._deadline = d if d < end else end
        else:
            self._deadline = None

    def _resend_last_flight(self):
        """The server sent its previous flight again: ours was lost (RFC 6347 4.2.4), so send it
        again. These re-sends spend the timer's budget (max_retransmits) and double its period
        like a timer retransmission, and after the first they come at least half a period apart:
        replaying a message makes us send no more than plain loss would, and never moves the
        handshake deadline. Also used once connected (the abbreviated handshake's last flight)."""
        if not self._flight or self._close_pending is not None or self._hs_expired() \
                or self._retransmits >= self._max_retransmits:
            return
        if self._retransmits and self._now - self._sent_ms < self._timeout // 2:
            return
        self._retransmits += 1
        self.stats.retransmissions += 1
        self._timeout = min(self._timeout * 2, self._max_timeout)
        self._transmit_flight()

    def _queue_message(self, m):
        """m: (write_state, content_type, payload) of the flight."""
        ws = m[0]
        if m[1] == rl.CT_HANDSHAKE and len(m[2]) + ws.overhead() > self._mtu \
                and m[2][0] != hs.HT_CLIENT_HELLO:  # never fragment a ClientHello
            self._queue_fragments(ws, m[2])
        else:
            self._queue_record(ws.protect(m[1], m[2]))

    def _queue_fragments(self, ws, payload):
        t, length, mseq, _, _ = hs.pull_header(payload, 0)
        room = self._mtu - ws.overhead() - hs.HS_HEADER_LEN
        for off in range(0, length, room):
            frag = payload[hs.HS_HEADER_LEN + off:hs.HS_HEADER_LEN + off + room]
            self._queue_record(ws.protect(rl.CT_HANDSHAKE, hs.push_header(t, length, mseq, off, len(frag)) + frag))

    def _queue_record(self, rec):
        """Pack records into datagrams of at most mtu bytes; a record never spans two."""
        if self._datagram and self._datagram_len + len(rec) > self._mtu:
            self._flush()
        self._datagram.append(rec)
        self._datagram_len += len(rec)

    def _flush(self):
        if self._datagram:
            d = b"".join(self._datagram) if len(self._datagram) > 1 else self._datagram[0]
            self._datagram = []
            self._datagram_len = 0
            self._out.append(d)
            self.stats.datagrams_sent += 1
            self.stats.bytes_sent += len(d)

    # ---- failure ----------------------------------------------------------------------------

    def _fail(self, error, alert):
        if self.state == ST_CLOSED:
            return
        if alert is not None:
            try:
                self._send_alert(_LEVEL_FATAL, alert)
                self._flush()
            except MemoryError:
                pass  # the alert is a courtesy (alerts are unreliable anyway); closing is not
        self._closed(error)

    def _closed(self, error):
        self.state = ST_CLOSED
        self.error = error
        self._hs = None
        self._stop_flight()
        self._events.append((EVENT_CLOSED, error))

    def _undo(self, saved, e):
        """receive() raised e part way through a datagram: put everything back as it was (saved
        by _save; the fragment buffer, changed in place, starts afresh) and count the datagram
        as dropped. MemoryError ends there; anything else is a bug and closes with a DTLSError."""
        if saved is not None:
            _restore(saved)
            self._hs.frags.clear()
        self.stats.records_dropped += 1
        if isinstance(e, MemoryError):
            self._oom += 1
        elif isinstance(e, Exception) and self.state != ST_CLOSED:
            self._fail(DTLSError("internal error while handling a datagram: %s: %s"
                                 % (type(e).__name__, e)), hs.ALERT_INTERNAL_ERROR)


def _save(c):
    """What receive() may change during a handshake: the attributes of the connection, its
    handshake and its stats, and copies of the lists changed in place (_LISTS)."""
    h = c._hs
    st = c.stats
    if _LIVE_DICT:
        return (c, c.__dict__.copy(), h, h.__dict__.copy(), st, st.__dict__.copy(),
                list(c._datagram), list(c._events), list(c._out), list(h.transcript), list(h.early_records))
    # MicroPython's instance __dict__ is a fresh copy already (one memcpy of the table)
    return (c, c.__dict__, h, h.__dict__, st, st.__dict__,
            list(c._datagram), list(c._events), list(c._out), list(h.transcript), list(h.early_records))


def _dict_is_live():
    s = Stats()
    d = s.__dict__
    s.hello_verify = True
    return d["hello_verify"] is True


_LIVE_DICT = _dict_is_live()  # CPython: __dict__ is the instance's own table


def _restore(s):
    # Allocates nothing (it runs after a MemoryError): setattr only on existing attributes.
    _restore_attrs(s[0], s[1], _CONN_DEFAULTS)
    _restore_attrs(s[2], s[3], _HS_DEFAULTS)
    _restore_attrs(s[4], s[5], ())
    c = s[0]
    h = s[2]
    c._datagram = s[6]
    c._events = s[7]
    c._out = s[8]
    h.transcript = s[9]
    h.early_records = s[10]


def _restore_attrs(obj, d, class_defaults):
    cls = type(obj)
    for k in class_defaults:
        # a class default (see _Handshake) the instance had not overridden before
        if k not in d:
            v = getattr(cls, k)
            if getattr(obj, k) is not v:
                setattr(obj, k, v)
    for k in d:
        setattr(obj, k, d[k])


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
