# The client side of a DTLS 1.2 PSK handshake (RFC 6347, RFC 5246 7.3, RFC 4279): a guest of
# dtls_lite/connection.py, imported when connect() starts a handshake and dropped when it ends.
#
# Rules of this file:
# - It never touches a socket, a clock or a file, and never protects application data: it
#   builds our flights, takes the server's handshake records from the Connection, and hands
#   the Connection a Session and an Epoch when the server's Finished verifies.
# - Handshake messages are accepted per state from the _ACCEPT table; anything else is an
#   unexpected_message alert (ProtocolError, which the Connection turns into a fatal alert).
# - The retransmission timer is dtls_lite/flight.py's; reassembly is dtls_lite/reassembly.py's.
# - checkpoint()/rollback() put it back as it was before a datagram that failed part way.
from dtls_lite import crypto
from dtls_lite import handshake as hs
from dtls_lite import record as rl
from dtls_lite.compat import attrs, const, need, put_attrs
from dtls_lite.errors import HandshakeTimeout, ProtocolError
from dtls_lite import flight as fl
from dtls_lite.reassembly import Reassembly
from dtls_lite.session import Epoch, Session

# Connection's states (dtls_lite/connection.py ST_*; tests check they agree).
_ST_WAIT_SERVER_HELLO = const(1)  # or HelloVerifyRequest
_ST_WAIT_SERVER_KEY_EXCHANGE = const(2)  # or ServerHelloDone
_ST_WAIT_SERVER_HELLO_DONE = const(3)
_ST_WAIT_FINISHED = const(4)  # server ChangeCipherSpec, then Finished
_ST_CLOSED = const(6)

_ACCEPT = {
    _ST_WAIT_SERVER_HELLO: (hs.HT_HELLO_VERIFY_REQUEST, hs.HT_SERVER_HELLO),
    _ST_WAIT_SERVER_KEY_EXCHANGE: (hs.HT_SERVER_KEY_EXCHANGE, hs.HT_SERVER_HELLO_DONE),
    _ST_WAIT_SERVER_HELLO_DONE: (hs.HT_SERVER_HELLO_DONE,),
    _ST_WAIT_FINISHED: (hs.HT_FINISHED,),
}

_LEVEL_FATAL = const(2)
# Server messages buffered ahead of the next one due: a flight has at most 3 (ServerHello,
# ServerKeyExchange, ServerHelloDone); forged fragments further ahead are dropped.
_WINDOW = const(4)
_MAX_EARLY_RECORDS = const(4)
_OPENING = (hs.HT_SERVER_HELLO, hs.HT_HELLO_VERIFY_REQUEST)  # what may open a server flight
# HelloVerifyRequests one handshake takes (RFC 6347 4.2.1), whatever their cookies: the 5th ends
# it (HelloVerifyStorm). A handshake needs one; the rest leaves room for a duplicated or lost
# datagram and a cookie key that changes mid-handshake (Californium: every 60 s). A full server
# answers every ClientHello with one, and each new cookie starts the flight's retransmission
# schedule over, so without this count only handshake_timeout_ms would end it.
_MAX_HELLO_VERIFY = const(5)

# Attributes of ClientHandshake's class defaults, for rollback() (dir() would find them, but
# costs ~0.7 ms a call on MicroPython). A test checks the list.
_DEFAULTS = ("cookie", "hello_verify_count", "new_cookies", "send_seq", "recv_seq", "client_hello", "server_hello",
             "identity_hint", "master", "pending_read", "pending", "last_peer_seq", "offered_id",
             "resumed", "close_pending")


class ClientHandshake:
    """Handshake-only state, dropped once the server's Finished verifies (or the handshake
    fails). Immutable defaults are class attributes, so an instance holds only what it sets
    (MicroPython grows, and reallocates, an instance's attribute table one at a time)."""

    cookie = b""
    hello_verify_count = 0  # HelloVerifyRequests received, any cookie
    new_cookies = 0  # of them, those whose cookie differed from the one before
    send_seq = 0  # next message_seq we send
    recv_seq = None  # next message_seq expected; None until the server's first message
    client_hello = None  # the whole ClientHello message last sent
    server_hello = None
    identity_hint = None
    master = None
    pending_read = None  # the server's next-epoch ReadState, until its ChangeCipherSpec
    pending = None  # the next Epoch
    last_peer_seq = -1  # message_seq ending the server's previous flight
    offered_id = b""  # session_id offered for resumption (RFC 5246 7.3)
    resumed = False  # the server echoed offered_id: abbreviated handshake
    close_pending = None  # error of an epoch-0 close_notify or fatal alert, until the timer

    def __init__(self, conn, psk, offer, cid, suites, rng, timers, max_hs):
        """timers: (initial_timeout_ms, max_timeout_ms, max_retransmits, handshake_timeout_ms)."""
        self.conn = conn
        self.psk = psk
        self.offer = offer  # a resumable Session to offer, or None
        self.cid = cid  # the CID we offer (RFC 9146), None: no extension
        self.suites = suites
        self.rng = rng
        self.max_hs = max_hs
        self.started_ms = conn.now_ms
        self.hs_timeout = timers[3]
        self.flight = fl.Flight(timers[0], timers[1], timers[2], conn.now_ms + timers[3])
        self.client_random = rng(32)
        if offer is not None:
            self.offered_id = offer.session_id
        self.frags = Reassembly()  # server messages not yet whole or not yet due
        self.transcript = []  # whole messages covered by Finished (RFC 6347 4.2.6), as received or sent
        self.early_records = []  # next-epoch records that overtook the server's CCS, whole

    # ---- what the Connection calls ----------------------------------------------------------

    def start(self):
        self.conn.state = _ST_WAIT_SERVER_HELLO
        self._send_client_hello()

    def deadline(self):
        return self.flight.deadline

    def expired(self):
        return self.conn.now_ms - self.started_ms >= self.hs_timeout

    def on_timer(self):
        c = self.conn
        f = self.flight
        if self.close_pending is not None:  # the server's close_notify, no fatal alert after it
            c.fail(self.close_pending, None)
            return
        if self.expired() or f.exhausted():
            c.fail(self.timeout_error(), None)
            return
        f.again()
        c.stats.retransmissions += 1
        try:
            self._transmit_flight()
        except MemoryError:
            f.arm(c.now_ms)  # as if this retransmission had been lost: the next one is due later

    def timeout_error(self):
        """The error of a handshake whose timer gives up: HelloVerifyStorm if the server
        answered a ClientHello that carried its cookie with another HelloVerifyRequest, else
        HandshakeTimeout saying what was seen (dtls_lite/rare.py builds both)."""
        try:
            rare = need("dtls_lite.rare")
        except MemoryError:  # loaded from .mpy it needs a few KB: still a HandshakeTimeout
            return HandshakeTimeout("no answer from server after %d retransmissions" % self.flight.retransmits)
        return rare.timeout_error(self)

    def sent_finished(self):
        """Whether we wait for the server's Finished after sending ours (a full handshake)."""
        return self.conn.state == _ST_WAIT_FINISHED and not self.resumed

    def checkpoint(self):
        """What a datagram may change here: our attributes, the flight's, and the lists."""
        return attrs(self), attrs(self.flight), list(self.transcript), list(self.early_records)

    def rollback(self, saved):
        put_attrs(self, saved[0], _DEFAULTS)
        put_attrs(self.flight, saved[1], fl.DEFAULTS)
        self.transcript = saved[2]
        self.early_records = saved[3]
        self.frags.clear()  # changed in place: starts afresh (the server's retransmission refills it)

    def on_stray_record(self, rec):
        """A record of another epoch than the one we read."""
        pr = self.pending_read
        if pr is not None and rec[1] == 0xFE and rl.record_epoch(rec) == pr.epoch \
                and len(self.early_records) < _MAX_EARLY_RECORDS:
            # overtook the server's ChangeCipherSpec (reordering): keep for after the switch
            self.early_records.append(rec)
        else:
            self.conn.stats.records_dropped += 1

    def on_change_cipher_spec(self, payload):
        c = self.conn
        if c.state != _ST_WAIT_FINISHED or self.pending_read is None or payload != b"\x01":
            c.stats.records_dropped += 1  # duplicate or misplaced; harmless to ignore
            return
        c.install_read(self.pending_read, self.pending.read_cid)
        self.pending_read = None
        early = self.early_records
        self.early_records = []
        for rec in early:
            if c.state != _ST_WAIT_FINISHED:
                break
            c.on_record(rec)

    def on_alert(self, level, desc):
        """A close_notify or fatal alert before the handshake completed."""
        c = self.conn
        if desc != 0 and level != _LEVEL_FATAL:
            return
        err = need("dtls_lite.rare").alert_error(level, desc, self.sent_finished())
        if desc != 0 and c.read_state.epoch > 0:
            c.fail(err, None)  # authenticated: it is the server's word
            return
        # Epoch 0 is unauthenticated: a blind spoofer who knows our port could end the
        # handshake with one forged alert; and tinydtls sends close_notify, then in the next
        # datagram the fatal alert that says why. So it wins only at the timer (at most
        # initial_timeout_ms), if the server's next flight does not come first.
        self.close_pending = err
        f = self.flight
        d = c.now_ms + f.initial
        if f.deadline is None or d < f.deadline:
            f.deadline = d

    # ---- reassembly (RFC 6347 4.2.3) ----------------------------------------------------------

    def on_handshake_record(self, data):
        """Returns the offset of the record's first fragment after the handshake completed
        (the Connection's to handle), or -1."""
        off = 0
        while 0 <= off and off + hs.HS_HEADER_LEN <= len(data):
            if self.conn.handshake is not self:
                return off
            off = self._on_fragment_at(data, off)
        if 0 <= off != len(data):
            self.conn.stats.records_dropped += 1
        return -1

    def _on_fragment_at(self, data, off):
        """Handles the fragment at off; returns the offset after it, or -1 to stop the record."""
        f = hs.pull_header(data, off)  # msg_type, length, message_seq, fragment_offset, fragment_length
        end = off + hs.HS_HEADER_LEN + f[4]
        c = self.conn
        if end > len(data) or f[3] + f[4] > f[1]:
            c.stats.records_dropped += 1
            return -1
        if c.state in _ACCEPT:
            self._on_fragment(f, data[off:end])
            if c.state == _ST_CLOSED:
                return -1
        return end

    def _on_fragment(self, f, frag):
        """frag: one fragment, header included; f: its header fields."""
        if f[0] == hs.HT_HELLO_REQUEST or not self._admit(f):
            return  # RFC 5246 7.4.1.1: HelloRequest is ignored while negotiating
        if f[4] == f[1] and (f[2] == self.recv_seq or self._opens_flight(f)):
            # The usual case, a whole message that is the next one due: its bytes as received
            # are already the form that is hashed (fragment_offset 0, fragment_length = length).
            # It passes whatever the buffer holds for its message_seq (maybe a forgery).
            self.frags.discard(f[2])
            self._deliver(frag, f[2], self.conn.read_state.epoch)
        elif not self.frags.add(f, frag, self.conn.read_state.epoch, self.max_hs):
            self.conn.stats.records_dropped += 1  # no room, or scattered into too many pieces
            return
        if len(self.frags) and self.conn.handshake is self and self.conn.state != _ST_CLOSED:
            self._deliver_buffered()

    def _opens_flight(self, f):
        """Whether f is of the server's first message answering our ClientHello: its
        message_seq fixes the numbering (after a cookie exchange servers differ), but it cannot
        be ahead of our own (RFC 6347 4.2.2)."""
        return self.recv_seq is None and f[2] <= self.send_seq and \
            (f[0] == hs.HT_SERVER_HELLO or f[0] == hs.HT_HELLO_VERIFY_REQUEST)

    def _admit(self, f):
        """Whether to take the fragment: only inside a window of _WINDOW messages from the next
        one due; one delivered already may be the server's retransmission (then ours was lost)."""
        mseq = f[2]
        if self.recv_seq is None:
            end = self.send_seq + _WINDOW
        elif mseq < self.recv_seq:
            # A retransmitted final message of the server's previous flight means our last
            # flight was lost: send it again (RFC 6347 4.2.4).
            if mseq == self.last_peer_seq and f[3] + f[4] == f[1]:
                self.flight.repeats += 1
                self._resend_last_flight()
            return False
        else:
            end = self.recv_seq + _WINDOW
        if mseq >= end:
            self.conn.stats.records_dropped += 1  # a forgery, or far too early to be worth memory
            return False
        if f[1] > self.max_hs:
            if mseq != self.recv_seq and not self._opens_flight(f):
                self.conn.stats.records_dropped += 1
                return False
            raise ProtocolError(hs.ALERT_HANDSHAKE_FAILURE, "handshake message of %d bytes exceeds "
                                "max_handshake_size %d" % (f[1], self.max_hs))
        return True

    def _deliver(self, msg, mseq, epoch):
        self.recv_seq = mseq + 1
        if len(self.frags):
            self.frags.drop_below(mseq + 1)
        self._on_message(msg, epoch)

    def _deliver_buffered(self):
        """Delivers every complete message that is due, in message_seq order."""
        c = self.conn
        while len(self.frags):  # each turn takes one message out, or returns
            mseq = self.recv_seq
            if mseq is None:
                mseq = self.frags.first_complete(_OPENING, self.send_seq + 1)
                if mseq is None:
                    return
            got = self.frags.pop(mseq)
            if got is None:
                return
            self._deliver(got[0], mseq, got[1])
            if c.handshake is not self or c.state == _ST_CLOSED:
                return

    def _on_message(self, msg, epoch):
        """One whole handshake message (header included, as hashed) that arrived in epoch."""
        t = msg[0]
        state = self.conn.state
        if t not in _ACCEPT[state]:
            raise ProtocolError(hs.ALERT_UNEXPECTED_MESSAGE, "unexpected handshake message %d in state %d"
                                % (t, state))
        body = msg[hs.HS_HEADER_LEN:]
        if t == hs.HT_HELLO_VERIFY_REQUEST:
            self._on_hello_verify_request(body)
        elif t == hs.HT_FINISHED:
            if epoch == 0:  # a Finished must arrive under the new keys (RFC 5246 7.4.9)
                raise ProtocolError(hs.ALERT_UNEXPECTED_MESSAGE, "Finished before ChangeCipherSpec")
            self._on_finished(body, msg)
        else:
            self.transcript.append(msg)
            if t == hs.HT_SERVER_HELLO:
                self._on_server_hello(body)
            elif t == hs.HT_SERVER_KEY_EXCHANGE:
                self.identity_hint = hs.parse_server_key_exchange(body)
                self.conn.state = _ST_WAIT_SERVER_HELLO_DONE
            else:
                if body:
                    raise ProtocolError(hs.ALERT_DECODE_ERROR, "ServerHelloDone with a body")
                self.last_peer_seq = self.recv_seq - 1
                self._send_client_finished_flight()

    # ---- messages -----------------------------------------------------------------------------

    def _send_client_hello(self):
        if self.client_hello is None:
            suites = self._offered_suites()
            body = hs.client_hello_body(self.client_random, self.offered_id, self.cookie, suites,
                                        rl.SUITE_PSK_AES_128_CBC_SHA256 in suites, self.cid)
        else:  # after a HelloVerifyRequest: the same hello, with the new cookie
            body = hs.client_hello_with_cookie(self.client_hello, self.cookie)
        self.client_hello = hs.whole_message(hs.HT_CLIENT_HELLO, self.send_seq, body)
        self.send_seq += 1
        self.recv_seq = None
        self._start_flight([(self.conn.write_state, rl.CT_HANDSHAKE, self.client_hello)])

    def _offered_suites(self):
        # Resuming, offer only the session's suite (RFC 5246 7.4.1.2 asks for at least it): the
        # server has shown it takes it, and the hello, sent twice with a cookie, stays small.
        if self.offered_id:
            return (self.offer.suite,)
        return self.suites

    def _on_hello_verify_request(self, body):
        cookie = hs.parse_hello_verify_request(body)
        self.hello_verify_count += 1
        new = cookie != self.cookie
        if new:
            self.new_cookies += 1
        if self.hello_verify_count >= _MAX_HELLO_VERIFY:
            # No alert: the cookie exchange keeps no state on the server (RFC 6347 4.2.1) and
            # an epoch-0 alert proves nothing; it would only cost a datagram of radio time.
            self.conn.fail(need("dtls_lite.rare").storm_error(self), None)
            return
        if not new:
            self.recv_seq = None  # a duplicate: our ClientHello with this cookie is already out
            return
        st = self.conn.stats
        st.round_trips += 1
        st.hello_verify = True
        self.cookie = cookie
        # RFC 6347 4.2.1: the same hello again, now with the cookie, as a new message_seq;
        # the first hello and the HelloVerifyRequest stay out of the transcript.
        self._send_client_hello()

    def _on_server_hello(self, body):
        c = self.conn
        suites = self._offered_suites()
        sh = hs.ServerHello(body, suites, rl.SUITE_PSK_AES_128_CBC_SHA256 in suites, self.cid is not None)
        if sh.etm and sh.suite != rl.SUITE_PSK_AES_128_CBC_SHA256:
            sh.etm = False  # RFC 7366 3: meaningless for AEAD suites
        self.server_hello = sh
        c.stats.round_trips += 1
        self.transcript.insert(0, self.client_hello)
        c.suite = sh.suite
        if self.offered_id and sh.session_id == self.offered_id:
            self._resume(sh)
        else:
            # A new (or no) session ID: the server forgot ours; go on with a full handshake.
            c.state = _ST_WAIT_SERVER_KEY_EXCHANGE

    def _resume(self, sh):
        """The server echoed our session ID: abbreviated handshake (RFC 5246 7.3), the server
        sends ChangeCipherSpec and Finished next."""
        s = self.offer
        if sh.suite != s.suite:
            raise ProtocolError(hs.ALERT_ILLEGAL_PARAMETER, "resumed session changed suite %s -> %s"
                                % (rl.suite_name(s.suite), rl.suite_name(sh.suite)))
        if not sh.ems:  # RFC 7627 5.3: abort when a resumed EMS session comes back without it
            raise ProtocolError(hs.ALERT_HANDSHAKE_FAILURE, "server resumed without extended master secret")
        if sh.etm != s.etm:  # RFC 7366 3.1: the resumed session keeps its MAC order
            raise ProtocolError(hs.ALERT_ILLEGAL_PARAMETER, "resumed session changed encrypt-then-MAC")
        self.resumed = True
        self.master = s.master_secret
        self._new_epoch(sh)
        self.conn.state = _ST_WAIT_FINISHED

    def _send_client_finished_flight(self):
        c = self.conn
        c.identity_hint = self.identity_hint
        cke = self._next_message(hs.HT_CLIENT_KEY_EXCHANGE, hs.client_key_exchange_body(c.identity))
        # CKE and CCS go out in epoch 0, the Finished in epoch 1.
        ws = c.write_state
        flight = [(ws, rl.CT_HANDSHAKE, cke), (ws, rl.CT_CHANGE_CIPHER_SPEC, b"\x01")]
        # One hash serves as RFC 7627's session_hash and as our Finished's transcript hash:
        # both cover every message up to and including the ClientKeyExchange.
        th = crypto.sha256(b"".join(self.transcript))
        sh = self.server_hello
        self.master = hs.master_secret(hs.psk_premaster(self.psk), th if sh.ems else None,
                                       self.client_random, sh.server_random)
        e = self._new_epoch(sh)
        c.install_write(e.write, e.write_cid)
        verify = hs.verify_data(self.master, b"client finished", th)
        flight.append((e.write, rl.CT_HANDSHAKE, self._next_message(hs.HT_FINISHED, verify)))
        c.state = _ST_WAIT_FINISHED
        self._start_flight(flight)

    def _new_epoch(self, sh):
        """Epoch 1 from the master secret and this handshake's randoms. RFC 9146 3: each side
        names the CID it receives; the server's goes in the records we send, ours (maybe empty)
        in the server's, if it took the extension at all."""
        kb = hs.key_block(self.master, self.client_random, sh.server_random, rl.key_block_len(sh.suite))
        cid = sh.cid
        e = self.pending = Epoch(1, sh.suite, sh.etm, kb, cid or b"",
                                 self.cid if cid is not None else b"", self.rng)
        self.pending_read = e.read
        c = self.conn
        c.write_cid = e.write_cid  # read_cid now: a tls12_cid record may overtake the CCS
        c.read_cid = e.read_cid
        return e

    def _next_message(self, msg_type, body):
        """Our next handshake message, whole, added to the transcript."""
        msg = hs.whole_message(msg_type, self.send_seq, body)
        self.send_seq += 1
        self.transcript.append(msg)
        return msg

    def _on_finished(self, body, msg):
        expected = hs.finished_verify_data(self.master, b"server finished", b"".join(self.transcript))
        if not crypto.ct_equal(expected, body):
            raise ProtocolError(hs.ALERT_DECRYPT_ERROR, "server Finished does not verify: wrong PSK?")
        c = self.conn
        sh = self.server_hello
        if not self.resumed:
            c.stats.round_trips += 1
            session = Session(sh.session_id, self.master, sh.suite, sh.ems, sh.etm)
            c.connected("full", session, self.pending, self.client_random, None)
            return
        # Abbreviated: our ChangeCipherSpec and Finished (over ClientHello, ServerHello and the
        # server's Finished) are the last flight. No timer for it: if the server's Finished
        # comes again, our flight was lost and the Connection sends it again (RFC 6347 4.2.4).
        self.transcript.append(msg)
        verify = hs.finished_verify_data(self.master, b"client finished", b"".join(self.transcript))
        e = self.pending
        flight = [(c.write_state, rl.CT_CHANGE_CIPHER_SPEC, b"\x01"),
                  (e.write, rl.CT_HANDSHAKE, self._next_message(hs.HT_FINISHED, verify))]
        for m in flight:
            self._queue_message(m)
        c.flush()
        c.stats.flights_sent += 1
        c.connected("abbreviated", self.offer, e, self.client_random, (flight, (msg[4] << 8) | msg[5]))

    # ---- our flights (RFC 6347 4.2.4) -------------------------------------------------------

    def _start_flight(self, flight):
        self.flight.start(flight)
        self.close_pending = None  # the server answered: that close_notify was forged or stale
        self._transmit_flight()

    def _transmit_flight(self):
        """(Re)protect every message of the flight with fresh sequence numbers and send."""
        c = self.conn
        c.stats.flights_sent += 1
        for m in self.flight.messages:
            self._queue_message(m)
        c.flush()
        self.flight.sent(c.now_ms, True)

    def _resend_last_flight(self):
        """The server sent its previous flight again: ours was lost (RFC 6347 4.2.4), so send it
        again. These re-sends spend the timer's budget (max_retransmits) and double its period
        like a timer retransmission, and after the first they come at least half a period apart:
        replaying a message makes us send no more than plain loss would, and never moves the
        handshake deadline."""
        f = self.flight
        if self.close_pending is not None or self.expired() or not f.may_repeat(self.conn.now_ms):
            return
        f.again()
        self.conn.stats.retransmissions += 1
        self._transmit_flight()

    def _queue_message(self, m):
        """m: (write_state, content_type, payload) of the flight."""
        ws = m[0]
        c = self.conn
        if m[1] == rl.CT_HANDSHAKE and len(m[2]) + ws.overhead() > c.mtu \
                and m[2][0] != hs.HT_CLIENT_HELLO:  # never fragment a ClientHello
            t, length, mseq, _, _ = hs.pull_header(m[2], 0)
            room = c.mtu - ws.overhead() - hs.HS_HEADER_LEN
            for off in range(0, length, room):
                frag = m[2][hs.HS_HEADER_LEN + off:hs.HS_HEADER_LEN + off + room]
                c.queue_record(ws.protect(rl.CT_HANDSHAKE, hs.push_header(t, length, mseq, off, len(frag)) + frag))
        else:
            c.queue_record(ws.protect(m[1], m[2]))
