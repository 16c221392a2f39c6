# Blocking UDP adapter around the sans-I/O Connection; runs on MicroPython and CPython.
# It owns the socket, the clocks and the optional state store: every protocol decision is
# Connection's, and what to do with saved state on a wake is dtls_lite/wake.py's table.
# Nonce safety (DESIGN.md section 4): once a connection's keys are in the store, no record
# leaves with a sequence number at or above the stored reservation; _transmit() saves a new
# reservation first.
import socket
import time

from dtls_lite import connection as cn
from dtls_lite import wake
from dtls_lite.errors import ConnectionClosed, DTLSError, HandshakeTimeout, UsageError

_RESERVE = 64  # sequence numbers reserved per save: one store write per 64 records at most

try:
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
except AttributeError:  # CPython
    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b


class Clock:
    """Milliseconds since creation that never wrap (MicroPython ticks wrap after ~12 days)."""

    def __init__(self):
        self._last = _ticks_ms()
        self._now = 0

    def now(self):
        t = _ticks_ms()
        self._now += _ticks_diff(t, self._last)
        self._last = t
        return self._now


_ECONNREFUSED = 111  # Linux and lwIP (ESP32) alike


def _is_refused(e):
    # An ICMP port unreachable for an earlier datagram, reported on a connected UDP socket.
    return e.args and e.args[0] == _ECONNREFUSED


def _is_timeout(e):
    # CPython raises socket.timeout/TimeoutError; MicroPython OSError EAGAIN (unix) or ETIMEDOUT (ESP32)
    return (e.args and e.args[0] in (11, 110)) or type(e).__name__ in ("timeout", "TimeoutError")


def resolve(host, port):
    """(family, sockaddr) of host:port; IPv6 literals and names work on both runtimes."""
    if not isinstance(host, str):
        raise UsageError("host must be a str (name or address), not %s" % type(host).__name__)
    # getaddrinfo would take "5684", 5684.0 or True, and wrap 70000 silently
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise UsageError("port must be an int in 0..65535, not %r" % (port,))
    try:
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
    except OSError as e:
        raise UsageError("cannot resolve %s: %s" % (host, e))
    return ai[0], ai[-1]


def _addr_key(sockaddr):
    """(ip bytes, port) of a resolved address: a tuple on CPython and ESP32, raw bytes on
    the MicroPython unix port."""
    if isinstance(sockaddr, tuple):
        from dtls_lite.state import ip_bytes
        return ip_bytes(sockaddr[0]), sockaddr[1]
    a = socket.sockaddr(sockaddr)
    return bytes(a[1]), a[2]


def _wall_clock():
    return int(time.time())


class DTLSClient:
    """A DTLS 1.2 PSK client over one UDP socket.

    with DTLSClient("127.0.0.1", 5684, b"Client_identity", psk) as c:
        c.send(b"hello"); reply = c.recv(2000)
    Keyword arguments after psk go to Connection (suites, mtu, initial_timeout_ms,
    max_retransmits, rng, ...). bind=(host, port) fixes the local address and port.
    socket_factory(family), if given, makes the datagram socket instead of socket.socket (a
    wrapper that traces or filters datagrams, as the desktop CLI's).

    With store= (dtls_lite.store), the session and the connection survive the process (deep
    sleep): connect() continues, resumes or does a full handshake as dtls_lite/wake.py's
    table says; suspend() saves and lets go without close_notify.
    """

    def __init__(self, host, port, identity, psk, bind=None, connect=True, store=None,
                 session_store=None, auto_handshake_timeout_s=None, wall_clock=None, local=None,
                 keylog=None, socket_factory=None, **options):
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise UsageError("port must be an int in 1..65535, not %r" % (port,))
        if bind is not None and (not isinstance(bind, (tuple, list)) or len(bind) != 2):
            raise UsageError("bind must be a (host, port) pair, e.g. ('0.0.0.0', 5684), not %r" % (bind,))
        if auto_handshake_timeout_s is not None and (
                not isinstance(auto_handshake_timeout_s, int) or isinstance(auto_handshake_timeout_s, bool)
                or auto_handshake_timeout_s < 0):
            raise UsageError("auto_handshake_timeout_s must be an int >= 0 or None")
        for st in (store, session_store):
            if st is not None and not (hasattr(st, "load") and hasattr(st, "save")):
                raise UsageError("a store needs load() and save(data) methods")
        if keylog is not None and not callable(keylog):
            raise UsageError("keylog must be a callable taking one NSS key log line")
        self._keylog = keylog
        self._identity = identity
        self._psk = psk
        self._options = options
        self.conn = cn.Connection(identity, psk, **options)
        family, self.server = resolve(host, port)
        self._where = "%s port %d" % (host, port)
        self._clock = Clock()
        if wall_clock is not None and not callable(wall_clock):
            raise UsageError("wall_clock must be a function returning seconds")
        self._wall = wall_clock or _wall_clock
        self._rx = []
        self.port_unreachable = 0  # ICMP port-unreachable reports seen (no server listening?)
        self._store = store
        self._session_store = session_store
        self._idle_s = auto_handshake_timeout_s
        self._forced = False
        self._reserved = None  # write_seq the store holds for self.conn's keys (None: not stored)
        self._saved_session_id = None  # session ID last written to session_store
        self._last_heard = None  # wall-clock s of the last authenticated record from the server
        self.saved = None  # the SavedState loaded at connect(), if any
        self.state_error = None  # why a stored blob was refused (a StateError), if it was
        self.wake_action = None  # "continue", "abbreviated" or "full" once connect() decided
        self.wake_reason = None
        self._state_key = None
        self._past = [0, 0, 0, 0]  # datagrams/bytes sent/received by connections replaced this wake
        self._hs = [0, 0]  # handshake datagrams and bytes (both ways) this wake
        if store is not None or session_store is not None:
            from dtls_lite import state
            self._state_key = state.state_key(psk, self.conn.identity)
            self._server_key = _addr_key(self.server)
        if socket_factory is not None and not callable(socket_factory):
            raise UsageError("socket_factory must be a function: socket_factory(family) -> socket")
        self._sock = socket_factory(family) if socket_factory else socket.socket(family, socket.SOCK_DGRAM)
        try:
            if bind is not None:
                self._sock.bind(resolve(bind[0], bind[1])[1])
            self._sock.connect(self.server)
            self._local_key = self._find_local(bind, local)
            if connect:
                self.connect()
        except BaseException:
            self._sock.close()
            raise

    @property
    def stats(self):
        return self.conn.stats

    def force_resume(self):
        """Make the next connect() resume the session (abbreviated handshake) rather than
        continue the saved connection, e.g. when a NAT rebinding is suspected."""
        self._forced = True

    def connect(self):
        """Continue, resume or handshake as the wake policy says; raises HandshakeTimeout,
        AlertReceived or ProtocolError when a handshake fails (the stored state is kept)."""
        if self.conn.state != cn.ST_IDLE:
            raise UsageError("connect() called twice")
        facts = self._wake_facts()
        action, self.wake_reason = wake.decide(facts)
        self.wake_action = wake.ACTION_NAMES[action]
        saved = self.saved
        if action == wake.CONTINUE:
            self.conn.restore(saved, self._clock.now())
            self._reserved = saved.write_seq  # the store already holds this reservation
            self._last_heard = saved.last_exchange_s
            self._handle_events()
            return
        if action == wake.ABBREVIATED:
            self._new_conn(cn.Session(saved.session_id, saved.master_secret, saved.suite, saved.ems, saved.etm))
        self._handshake()

    def _new_conn(self, session):
        st = self.conn.stats
        p = self._past
        p[0] += st.datagrams_sent
        p[1] += st.bytes_sent
        p[2] += st.datagrams_received
        p[3] += st.bytes_received
        self.conn = cn.Connection(self._identity, self._psk, session=session, **self._options)

    @property
    def wire(self):
        """What this client put on and took off the wire, over every connection it used."""
        st = self.conn.stats
        p = self._past
        return {"datagrams_sent": p[0] + st.datagrams_sent, "bytes_sent": p[1] + st.bytes_sent,
                "datagrams_received": p[2] + st.datagrams_received,
                "bytes_received": p[3] + st.bytes_received,
                "handshake_datagrams": self._hs[0], "handshake_bytes": self._hs[1]}

    def _handshake(self):
        self._reserved = None
        self.conn.connect(self._clock.now())
        while self.conn.state != cn.ST_CONNECTED:
            if self.conn.state == cn.ST_CLOSED:
                raise self.conn.error or ConnectionClosed("closed during the handshake")
            self._pump(None)
        st = self.conn.stats
        self._hs[0] += st.datagrams_sent + st.datagrams_received
        self._hs[1] += st.bytes_sent + st.bytes_received
        self._forced = False
        if self._keylog is not None:  # before save(): keys are logged before they can be used again
            self._keylog(self.conn.keylog_line())
        if self._store is not None or self._session_store is not None:
            self.save()  # "probing": the old state is replaced only now that this one works

    def request(self, data, timeout_ms=2000):
        """Send data as one record and wait for one reply (bytes, None on timeout, b"" if the
        server closed). A continued connection that gets no reply may be dead on the server
        (restarted, evicted): then resume (a full handshake if the session is gone too) and
        send once more."""
        self.send(data)
        reply = self.recv(timeout_ms)
        if reply is None and self.conn.stats.handshake_kind == "continued":
            session = self.conn.session
            self._new_conn(session)
            self.wake_action = "abbreviated" if cn._resumable(session) else "full"
            self.wake_reason = "the continued connection got no reply"
            self._handshake()
            self.send(data)
            reply = self.recv(timeout_ms)
        return reply

    def send(self, data):
        self.conn.send(data)
        self._transmit()

    def save(self):
        """Persist the session and, if connected, the connection with a fresh sequence
        reservation. UsageError while a handshake is in flight or without a store."""
        if self._store is None and self._session_store is None:
            raise UsageError("save() needs a store")
        if self.conn.handshake_in_flight:
            raise UsageError("save() while a handshake is in flight")
        self._persist()

    def suspend(self):
        """Save and let the socket go without close_notify (deep sleep): the server keeps
        the connection, so the next wake can continue it."""
        if self._sock is None:
            return
        try:
            if (self._store is not None or self._session_store is not None) and not self.conn.handshake_in_flight:
                self._persist()
        finally:
            self._sock.close()
            self._sock = None

    def recv(self, timeout_ms=None):
        """Next application payload; None on timeout; b"" once the server closed cleanly."""
        if timeout_ms is not None:
            deadline = self._clock.now() + timeout_ms
        while not self._rx:
            if self.conn.state == cn.ST_CLOSED:
                return b""
            if timeout_ms is not None and self._clock.now() >= deadline:
                return None
            self._pump(deadline if timeout_ms is not None else None)
        return self._rx.pop(0)

    def close(self):
        """close_notify and close; a store then keeps only the session (resumable)."""
        if self._sock is None:
            return
        self.conn.close()
        try:
            self._transmit()
        except OSError:
            pass  # the close_notify is a courtesy; the socket goes regardless
        self._sock.close()
        self._sock = None
        if self._store is not None or self._session_store is not None:
            try:
                self._persist()
            except OSError:
                pass  # a store that cannot be written keeps its older, still valid state

    # ---- saved state ---------------------------------------------------------------------

    def _find_local(self, bind, local):
        """(ip bytes, port) this socket is bound to, or None when unknown (no fixed port):
        the wake policy continues a connection only from the same address and port."""
        if self._state_key is None:
            return None
        from dtls_lite.state import ip_bytes
        if local is not None:
            return ip_bytes(local[0]), local[1]
        if bind is None or not bind[1]:
            return None
        host = bind[0]
        if host in ("", "0.0.0.0", "::"):
            try:  # CPython: a connected UDP socket knows its source address
                return _addr_key(self._sock.getsockname())[0], bind[1]
            except (AttributeError, OSError):
                return None  # MicroPython has no getsockname(): pass local= instead
        return _addr_key(resolve(host, bind[1])[1])

    def _load(self):
        """The SavedState in the store (or else the session store), or None; a refused blob
        sets state_error (its reason) and counts as nothing saved. The session store is read
        either way, so that a session it already holds is not written again (flash wear)."""
        from dtls_lite import state
        found = None
        for st in (self._store, self._session_store):
            if st is None:
                continue
            try:
                blob = st.load()
            except OSError as e:  # unreadable: as if nothing were saved, never a crash
                self.state_error = state.StateError("store could not be read: %s" % (e,))
                continue
            if blob is None:
                continue
            try:
                saved = state.load(self._state_key, blob, self._server_key)
            except state.StateError as e:
                self.state_error = e
                continue
            if st is self._session_store:
                self._saved_session_id = saved.session_id
            if found is None:
                found = saved
        return found

    def _wake_facts(self):
        if self._state_key is None:
            return 0
        saved = self.saved = self._load()
        if saved is None:
            return 0
        facts = 0
        if cn._resumable(cn.Session(saved.session_id, saved.master_secret, saved.suite, saved.ems, saved.etm)) \
                and saved.suite in self.conn._suites:
            facts |= wake.SESSION
        if saved.has_connection and saved.suite in self.conn._suites:
            facts |= wake.CONNECTION
            if self._local_key is not None and saved.local == self._local_key:
                facts |= wake.SAME_LOCAL
            if saved.write_cid:
                facts |= wake.SERVER_CID
        if self._forced:
            facts |= wake.FORCED
        if self._idle_s is not None:
            last = saved.last_exchange_s
            now = int(self._wall())
            if last is None or now < last or now - last > self._idle_s:
                facts |= wake.IDLE
        return facts

    def _persist(self):
        """Write what is safe to keep. A connection that failed leaves the store as it was
        ("probing": the older state stays usable until a new handshake completes)."""
        from dtls_lite import state
        c = self.conn
        if c.session is None or (c.state == cn.ST_CLOSED and c.error is not None):
            return
        st = c.snapshot(_RESERVE)
        st.server = self._server_key
        st.local = self._local_key
        st.last_exchange_s = self._last_heard
        if self._store is not None:
            self._store.save(state.dump(self._state_key, st))
            self._reserved = st.write_seq if st.has_connection else None
        ss = self._session_store
        if ss is not None and c.session.session_id != self._saved_session_id and cn._resumable(c.session):
            st.has_connection = False  # durable copy: the session only, never a reservation
            ss.save(state.dump(self._state_key, st))
            self._saved_session_id = c.session.session_id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _transmit(self):
        out = self.conn.datagrams_to_send()
        if self._reserved is not None and out and self.conn.next_write_seq[1] > self._reserved:
            # Records numbered at or above the stored reservation are queued: reserve further
            # ahead in the store before any of them leaves (a failed save raises: none leaves).
            self._persist()
            if self._reserved is not None and self.conn.next_write_seq[1] > self._reserved:
                # Nothing was saved (the connection failed: e.g. a fatal alert is queued):
                # those numbers may be reused by a later continued wake, so they stay here.
                out = ()
        for d in out:
            try:
                self._sock.send(d)
            except OSError as e:
                # ICMP errors are unauthenticated and often transient (server restarting):
                # count them and let the retransmission timer decide, as for a lost datagram.
                if not _is_refused(e):
                    raise
                self.port_unreachable += 1

    def _pump(self, deadline):
        """Send what is queued, wait for one datagram or the next timer, handle events."""
        if self._sock is None:
            raise ConnectionClosed("client is closed")
        self._transmit()
        data = self._recv(deadline)
        now = self._clock.now()
        if data is not None:
            self.conn.receive(data, now)
            self._transmit()  # the answer goes out first: the peer is waiting for it
        self.conn.handle_timer(now)
        self._transmit()
        self._handle_events()

    def _recv(self, deadline):
        """One datagram, or None once the connection's timer or the deadline is due."""
        wake = self.conn.timer()
        if deadline is not None and (wake is None or deadline < wake):
            wake = deadline
        self._sock.settimeout(None if wake is None else max(wake - self._clock.now(), 1) / 1000)
        try:
            return self._sock.recv(2048)
        except OSError as e:
            if _is_refused(e):
                self.port_unreachable += 1
            elif not _is_timeout(e):
                raise
        return None

    def _handle_events(self):
        while True:
            ev = self.conn.next_event()
            if ev is None:
                break
            if ev[0] == cn.EVENT_DATA:
                self._rx.append(ev[1])
                self._last_heard = int(self._wall())
            elif ev[0] == cn.EVENT_CONNECTED and self.conn.stats.handshake_kind != "continued":
                self._last_heard = int(self._wall())
            elif ev[0] == cn.EVENT_CLOSED and ev[1] is not None:
                err = ev[1]
                if isinstance(err, HandshakeTimeout) and self.port_unreachable:
                    err = HandshakeTimeout("%s; ICMP port unreachable %d times: is a server listening"
                                           " on %s?" % (err, self.port_unreachable, self._where))
                raise err
