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
from dtls_lite.errors import (AlertReceived, ConnectionClosed, HandshakeTimeout, ProtocolError,
                              UsageError, alert_name)

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
_MAX_BUFFERED_MESSAGES = const(8)
_MAX_EARLY_RECORDS = const(4)
_MAX_HELLO_VERIFY = const(4)
# Fatal alerts a server sends when it cannot verify our Finished or does not know our identity:
# bad_record_mac, handshake_failure, decrypt_error, internal_error (pion/dtls, for an unknown
# identity), unknown_psk_identity.
_PSK_REJECTED = (20, 40, 51, 80, 115)


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
        self.handshake_kind = None  # "full" once a handshake completed
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

    def __init__(self, client_random):
        self.client_random = client_random
        self.frags = {}  # message_seq -> [msg_type, length, epoch, bytearray message, ranges]
        self.transcript = []  # whole messages covered by Finished (RFC 6347 4.2.6), as received or sent
        self.early_records = []  # next-epoch records that overtook the server's CCS, whole


class Connection:
    def __init__(self, identity, psk, rng=None, suites=None, mtu=1200, initial_timeout_ms=1000,
                 max_timeout_ms=60000, max_retransmits=6, max_handshake_size=4096, session=None,
                 cid=b""):
        if isinstance(identity, str):
            identity = identity.encode()
        if not isinstance(identity, (bytes, bytearray)) or not 1 <= len(identity) <= 128:
            raise UsageError("identity must be 1..128 bytes")  # RFC 7925 4.2 / RFC 4279 5.3
        if not isinstance(psk, (bytes, bytearray)) or not 1 <= len(psk) <= 64:
            raise UsageError("psk must be 1..64 bytes")
        available = rl.supported_suites()
        if suites is None:
            suites = available
        else:
            suites = list(suites)
            for s in suites:
                if s not in available:
                    raise UsageError("suites: %s is not supported by this backend" % rl.suite_name(s))
            if not suites:
                raise UsageError("suites must not be empty")
        if not 128 <= mtu <= 16384:
            raise UsageError("mtu must be 128..16384")
        if not 1 <= initial_timeout_ms <= max_timeout_ms:
            raise UsageError("initial_timeout_ms must be 1..max_timeout_ms")
        if max_retransmits < 0:
            raise UsageError("max_retransmits must be >= 0")
        self.identity = bytes(identity)
        self._psk = bytes(psk)
        self._rng = rng or crypto.random_bytes
        self._suites = suites
        self._mtu = mtu
        self._initial_timeout = initial_timeout_ms
        self._max_timeout = max_timeout_ms
        self._max_retransmits = max_retransmits
        self._max_hs = max_handshake_size
        self._offer = session  # a stored Session to offer for resumption (RFC 5246 7.3)
        self._cid = cid  # connection_id to offer (RFC 9146): b"" = zero-length, None = off
        self.state = ST_IDLE
        self.stats = Stats()
        self.error = None
        self.session = None
        self.suite = None
        self.identity_hint = None
        self._events = []
        self._out = []
        self._datagram = []  # records of the datagram being filled
        self._datagram_len = 0
        self._read = rl.ReadState(0)
        self._write = rl.WriteState(0)
        self._hs = None
        # retransmission machine (RFC 6347 4.2.4), separate from the handshake states
        self._flight = None  # [(write_state, content_type, payload)]
        self._timeout = initial_timeout_ms
        self._deadline = None
        self._retransmits = 0
        self._now = None  # now_ms of the API call being processed

    # ---- API -------------------------------------------------------------------------------

    def connect(self, now_ms):
        """Start the handshake: queues the ClientHello."""
        if self.state != ST_IDLE:
            raise UsageError("connect() called twice")
        self._hs = _Handshake(self._rng(32))
        self.stats.handshake_started_ms = now_ms
        self.state = ST_WAIT_SERVER_HELLO
        self._now = now_ms
        self._send_client_hello()

    def receive(self, datagram, now_ms):
        """Process one UDP datagram (one or more records, RFC 6347 4.1)."""
        st = self.stats
        st.datagrams_received += 1
        st.bytes_received += len(datagram)
        if self.state == ST_IDLE or self.state == ST_CLOSED:
            st.records_dropped += 1
            return
        self._now = now_ms
        try:
            self._on_datagram(datagram)
        except ProtocolError as e:
            self._fail(e, e.alert)
        self._flush()

    def datagrams_to_send(self):
        out = self._out
        self._out = []
        return out

    def timer(self):
        """Absolute deadline (ms) at which handle_timer() must be called, or None."""
        return self._deadline

    def handle_timer(self, now_ms):
        if self._deadline is None or now_ms < self._deadline:
            return
        if self._retransmits >= self._max_retransmits:
            msg = "no answer from server after %d retransmissions" % self._retransmits
            if self.state == ST_WAIT_FINISHED:
                msg += (" to our Finished: wrong PSK or identity? (servers silently drop"
                        " records they cannot decrypt)")
            self._fail(HandshakeTimeout(msg), None)
            return
        self._retransmits += 1
        self.stats.retransmissions += 1
        # RFC 6347 4.2.4.1: double the timer on each retransmission, up to the maximum.
        self._timeout = min(self._timeout * 2, self._max_timeout)
        self._now = now_ms
        self._transmit_flight()

    def send(self, data):
        """Queue application data as one record."""
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
            end = rl.record_end(datagram, off)
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
                self._closed(AlertReceived(level, desc, "server closed the connection during the handshake"))
        elif level == _LEVEL_FATAL:
            msg = None
            if self.state == ST_WAIT_FINISHED and desc in _PSK_REJECTED:
                msg = ("server rejected our Finished with %s (%d): wrong PSK or identity?"
                       % (alert_name(desc), desc))
            self._closed(AlertReceived(level, desc, msg))

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
        if f[2] == h.recv_seq and f[4] == f[1] and f[2] not in h.frags:
            # The usual case, a whole message that is the next one due: its bytes as received
            # are already the form that is hashed (fragment_offset 0, fragment_length = length).
            h.recv_seq += 1
            self._on_message(frag, self._read.epoch)
        elif not self._buffer_fragment(f, frag):
            return
        if h.frags and self._hs is h and self.state != ST_CLOSED:
            self._deliver_buffered()

    def _admit(self, f):
        """Whether to take the fragment: not if its message was delivered already (then maybe
        retransmit our last flight) or the buffer is full."""
        h = self._hs
        mseq = f[2]
        if h.recv_seq is None:
            # The server's first message fixes where its numbering starts (after a cookie
            # exchange servers differ); anything that overtook it waits in the buffer.
            if f[0] == hs.HT_SERVER_HELLO or f[0] == hs.HT_HELLO_VERIFY_REQUEST:
                h.recv_seq = mseq
                _drop_below(h.frags, mseq)
        elif mseq < h.recv_seq:
            # A retransmitted final message of the server's previous flight means our last
            # flight was lost: send it again (RFC 6347 4.2.4).
            if mseq == h.last_peer_seq and f[3] + f[4] == f[1] and self._flight:
                self.stats.retransmissions += 1
                self._transmit_flight()
            return False
        if len(h.frags) >= _MAX_BUFFERED_MESSAGES and mseq not in h.frags:
            self.stats.records_dropped += 1
            return False
        if f[1] > self._max_hs:
            raise ProtocolError(hs.ALERT_HANDSHAKE_FAILURE, "handshake message of %d bytes exceeds "
                                "max_handshake_size %d" % (f[1], self._max_hs))
        return True

    def _buffer_fragment(self, f, frag):
        """Copies the fragment into its message's buffer; False if it does not fit the message."""
        h = self._hs
        entry = h.frags.get(f[2])
        if entry is None:
            msg = bytearray(hs.HS_HEADER_LEN + f[1])
            msg[0:hs.HS_HEADER_LEN] = hs.push_header(f[0], f[1], f[2], 0, f[1])  # as one fragment
            entry = [f[0], f[1], self._read.epoch, msg, []]
            h.frags[f[2]] = entry
        elif entry[0] != f[0] or entry[1] != f[1] or entry[2] != self._read.epoch:
            self.stats.records_dropped += 1
            return False
        start = hs.HS_HEADER_LEN + f[3]
        entry[3][start:start + f[4]] = frag[hs.HS_HEADER_LEN:]
        entry[4] = _add_range(entry[4], f[3], f[3] + f[4])
        return True

    def _deliver_buffered(self):
        """Delivers every complete message in message_seq order."""
        h = self._hs
        while h.recv_seq is not None:
            e = h.frags.get(h.recv_seq)
            if e is None or (0, e[1]) not in e[4]:
                return
            del h.frags[h.recv_seq]
            h.recv_seq += 1
            self._on_message(bytes(e[3]), e[2])
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
            self._on_finished(body)
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
        body = hs.client_hello_body(h.client_random, b"", h.cookie, self._suites,
                                    rl.SUITE_PSK_AES_128_CBC_SHA256 in self._suites)
        h.client_hello = hs.whole_message(hs.HT_CLIENT_HELLO, h.send_seq, body)
        h.send_seq += 1
        h.recv_seq = None
        self._start_flight([(self._write, rl.CT_HANDSHAKE, h.client_hello)])

    def _on_hello_verify_request(self, body):
        h = self._hs
        cookie = hs.parse_hello_verify_request(body)
        if cookie == h.cookie:
            h.recv_seq = None  # a duplicate: our ClientHello with this cookie is already out
            return
        h.hello_verify_count += 1
        if h.hello_verify_count > _MAX_HELLO_VERIFY:
            raise ProtocolError(hs.ALERT_HANDSHAKE_FAILURE, "too many HelloVerifyRequests")
        self.stats.hello_verify = True
        h.cookie = cookie
        # RFC 6347 4.2.1: the same hello again, now with the cookie, as a new message_seq;
        # the first hello and the HelloVerifyRequest stay out of the transcript.
        self._send_client_hello()

    def _on_server_hello(self, body):
        h = self._hs
        sh = hs.ServerHello(body, self._suites, rl.SUITE_PSK_AES_128_CBC_SHA256 in self._suites)
        if sh.etm and sh.suite != rl.SUITE_PSK_AES_128_CBC_SHA256:
            sh.etm = False  # RFC 7366 3: meaningless for AEAD suites
        h.server_hello = sh
        h.transcript.insert(0, h.client_hello)
        self.suite = sh.suite
        self.state = ST_WAIT_SERVER_KEY_EXCHANGE

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
        kb = hs.key_block(h.master, h.client_random, sh.server_random, rl.key_block_len(sh.suite))
        self._write, h.pending_read = self._epoch_states(1, sh.suite, sh.etm, kb)
        return hs.verify_data(h.master, b"client finished", transcript_hash)

    def _epoch_states(self, epoch, suite, etm, kb):
        """(WriteState, ReadState) of a new epoch; the one place CIDs join the record states."""
        return rl.epoch_states(epoch, suite, etm, kb, self._rng)

    def _next_message(self, msg_type, body):
        """Our next handshake message, whole, added to the transcript."""
        h = self._hs
        msg = hs.whole_message(msg_type, h.send_seq, body)
        h.send_seq += 1
        h.transcript.append(msg)
        return msg

    def _on_finished(self, body):
        h = self._hs
        expected = hs.finished_verify_data(h.master, b"server finished", b"".join(h.transcript))
        if not crypto.ct_equal(expected, body):
            raise ProtocolError(hs.ALERT_DECRYPT_ERROR, "server Finished does not verify: wrong PSK?")
        self._connected(h)

    def _connected(self, h):
        sh = h.server_hello
        self.session = Session(sh.session_id, h.master, sh.suite, sh.ems, sh.etm)
        self._hs = None
        self._stop_flight()
        self.state = ST_CONNECTED
        st = self.stats
        st.handshake_kind = "full"
        st.handshake_ms = self._now - st.handshake_started_ms
        self._events.append((EVENT_CONNECTED, None))

    # ---- flights and the retransmission timer (RFC 6347 4.2.4) ------------------------------

    def _start_flight(self, flight):
        self._flight = flight  # [(write_state, content_type, payload)]
        self._timeout = self._initial_timeout
        self._retransmits = 0
        self._transmit_flight()

    def _stop_flight(self):
        self._flight = None
        self._deadline = None
        self._timeout = self._initial_timeout

    def _transmit_flight(self):
        """(Re)protect every message of the flight with fresh sequence numbers and send."""
        self.stats.flights_sent += 1
        for m in self._flight:
            self._queue_message(m)
        self._flush()
        self._deadline = self._now + self._timeout

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
            self._send_alert(_LEVEL_FATAL, alert)
            self._flush()
        self._closed(error)

    def _closed(self, error):
        self.state = ST_CLOSED
        self.error = error
        self._hs = None
        self._stop_flight()
        self._events.append((EVENT_CLOSED, error))


def _drop_below(frags, mseq):
    for k in list(frags):
        if k < mseq:
            del frags[k]


def _add_range(ranges, start, end):
    """Merge [start, end) into a list of disjoint (start, end) tuples."""
    out = []
    for a, b in ranges:
        if b < start or a > end:
            out.append((a, b))
        else:
            start = min(a, start)
            end = max(b, end)
    out.append((start, end))
    return out
