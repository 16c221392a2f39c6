# Blocking UDP adapter around the sans-I/O Connection; runs on MicroPython and CPython.
# It owns the socket and the clocks, and pumps datagrams: every protocol decision is
# Connection's, what to do with saved state on a wake is dtls_lite/wake.py's table, and
# persistence (stores, the sequence reservation, probing, the fallback of request()) is
# dtls_lite/keeper.py's, loaded only with a store.
import socket
import time

from dtls_lite import connection as cn
from dtls_lite import wake
from dtls_lite.compat import MICROPYTHON
from dtls_lite.errors import ConnectionClosed, HandshakeTimeout, UsageError

# The receive buffer. On MicroPython, where it is heap a node carries all the time: the largest
# UDP payload an Ethernet or WiFi link carries unfragmented over IPv4 (1500 - 20 - 8); a longer
# datagram is cut and its records dropped. On CPython (the desktop, any server): any UDP payload.
RECV_SIZE = 1472 if MICROPYTHON else 65507

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
_EAGAIN = 11


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
        if port:
            raise UsageError("cannot resolve %s: %s" % (host, e))
        # lwIP (the ESP32 firmware) refuses service 0 (EAI_SERVICE, -201): resolve with 1,
        # then bind to port 0 (its sockaddr is an (ip, port) tuple)
        try:
            ai = socket.getaddrinfo(host, 1, 0, socket.SOCK_DGRAM)[0]
        except OSError:
            raise UsageError("cannot resolve %s: %s" % (host, e))
        return ai[0], (ai[-1][0], 0)
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
        self._forced = False
        self._last_heard = None  # wall-clock s of the last authenticated record from the server
        self.saved = None  # the SavedState loaded at connect(), if any
        self.wake_action = None  # "continue", "abbreviated" or "full" once connect() decided
        self.wake_reason = None
        self._past = [0, 0, 0, 0]  # datagrams/bytes sent/received by connections replaced this wake
        self._hs = [0, 0]  # handshake datagrams and bytes (both ways) this wake
        self._probing = False  # a continued connection whose server has not answered yet
        self.rto_ms = None  # what the continued connection's first request waited (request())
        self.retries = 0  # records request() sent again on a continued connection
        self._keeper = None
        if store is not None or session_store is not None:
            from dtls_lite.keeper import Keeper
            self._keeper = Keeper(self.conn.identity, psk, _addr_key(self.server), store, session_store,
                                  auto_handshake_timeout_s, self._wall)
        if socket_factory is not None and not callable(socket_factory):
            raise UsageError("socket_factory must be a function: socket_factory(family) -> socket")
        self._sock = socket_factory(family) if socket_factory else socket.socket(family, socket.SOCK_DGRAM)
        # One buffer for every datagram received, made while the heap is young: CPython
        # receives into it (recv_into); MicroPython has no recv_into and its recv(n) allocates n
        # bytes per datagram, so there the socket is non-blocking, poll() waits and readinto()
        # takes what is queued: datagrams back to back, whole records all (a record never spans
        # datagrams, RFC 6347 4.1.1), which receive() parses one by one as it would anyway.
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._recv_into = getattr(self._sock, "recv_into", None)
        self._poll = None
        try:
            if bind is not None:
                self._sock.bind(resolve(bind[0], bind[1])[1])
            self._sock.connect(self.server)
            if self._recv_into is None:
                import select
                self._poll = select.poll()
                self._poll.register(self._sock, select.POLLIN)
                self._sock.settimeout(0)
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

    @property
    def state_error(self):
        """Why a stored blob was refused (a StateError), if it was."""
        return None if self._keeper is None else self._keeper.state_error

    def connect(self):
        """Continue, resume or handshake as the wake policy says; raises HandshakeTimeout,
        AlertReceived or ProtocolError when a handshake fails (the stored state is kept)."""
        if self.conn.state != cn.ST_IDLE:
            raise UsageError("connect() called twice")
        k = self._keeper
        facts = 0
        if k is not None:
            self.saved = k.load()
            facts = k.facts(self.saved, self.conn.suites, self._local_key, self._forced)
        elif self._forced:
            facts = wake.FORCED
        action, self.wake_reason = wake.decide(facts)
        self.wake_action = wake.ACTION_NAMES[action]
        saved = self.saved
        if action == wake.CONTINUE:
            self.conn.restore(saved, self._clock.now())
            k.restored(self.conn)
            self._probing = True
            self._last_heard = saved.last_exchange_s
            self._handle_events()
            return
        if action == wake.ABBREVIATED:
            from dtls_lite.keeper import session_of
            self._new_conn(session_of(saved))
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
        if self._keeper is not None:
            self._keeper.reserved = False  # new keys: nothing of theirs is stored yet
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
        if self._keeper is not None:
            if not st.retransmissions and st.round_trips:  # Karn: no flight was sent twice
                self._keeper.sample(st.handshake_ms // st.round_trips)
            self.save()  # "probing": the old state is replaced only now that this one works

    def request(self, data, timeout_ms=2000):
        """Send data as one record and wait for one reply (bytes, None on timeout, b"" if the
        server closed). A continued connection that gets no reply may be dead on the server
        (restarted, evicted): then resume (a full handshake if the session is gone too) and
        send once more, waiting timeout_ms. Its first request does not wait timeout_ms for
        that: see _probe()."""
        if self.conn.stats.handshake_kind != "continued":
            return self._exchange(data, timeout_ms)
        if self._probing:
            self._probing = False
            reply = self._probe(data, timeout_ms)
        else:
            reply = self._exchange(data, timeout_ms)
        if reply is None:
            session, self.wake_action = self._keeper.fallback(self.conn)
            self.wake_reason = "the continued connection got no reply"
            self._new_conn(session)
            self._handshake()
            reply = self._exchange(data, timeout_ms)
        return reply

    def _exchange(self, data, timeout_ms):
        """send(), then recv(timeout_ms); a reply to this record alone is an RTT sample."""
        clean = not self._rx  # a reply queued before the send is not this record's
        t0 = self._clock.now()
        self.send(data)
        reply = self.recv(timeout_ms)
        if reply and clean and self._keeper is not None:
            self._keeper.sample(self._clock.now() - t0)
        return reply

    def _probe(self, data, timeout_ms):
        """The first request of a continued connection. Servers drop records of a connection
        they lost (restart, eviction) without a word, so silence is the only sign, and the
        wait for it is what a node pays before it resumes. The record waits one RTO (the
        server's smoothed RTT from earlier wakes, kept in the state: keeper.rto()); if no reply
        came, it goes once more as a new record (a new sequence number: never a nonce twice)
        and waits 2 RTO; both waits end within timeout_ms. A lost datagram costs a record,
        not a handshake; a restarted server costs 3 RTO, then the fallback. The retry may
        deliver data twice, as the fallback always could, and a slow server may then answer
        twice: an application sending several requests per wake matches replies to requests
        (e.g. CoAP message IDs and tokens)."""
        k = self._keeper
        limit = timeout_ms if timeout_ms is not None else 0x3FFFFFFF  # None: no bound but RTO's
        rto = self.rto_ms = k.rto(self._options.get("initial_timeout_ms", 1000), limit)
        t0 = self._clock.now()
        clean = not self._rx
        self.send(data)
        reply = self.recv(rto)
        if reply is None:
            wait = t0 + limit - self._clock.now()
            if wait > 2 * rto:
                wait = 2 * rto
            if wait > 0 and self.conn.state == cn.ST_CONNECTED:
                self.retries += 1
                self.send(data)
                reply = self.recv(wait)
                if reply:
                    k.backed_off()  # Karn: which copy was answered is unknown, no sample
        elif reply and clean:
            k.sample(self._clock.now() - t0)
        return reply

    def send(self, data):
        self.conn.send(data)
        self._transmit()

    def save(self):
        """Persist the session and, if connected, the connection with a fresh sequence
        reservation. UsageError while a handshake is in flight or without a store."""
        if self._keeper is None:
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
            if self._keeper is not None and not self.conn.handshake_in_flight:
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
        if self._keeper is not None:
            try:
                self._persist()
            except OSError:
                pass  # a store that cannot be written keeps its older, still valid state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- saved state ---------------------------------------------------------------------

    def _find_local(self, bind, local):
        """(ip bytes, port) this socket is bound to, or None when unknown (no fixed port):
        the wake policy continues a connection only from the same address and port."""
        if self._keeper is None:
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

    def _persist(self):
        self._keeper.persist(self.conn, self._local_key, self._last_heard)

    # ---- the pump ------------------------------------------------------------------------

    def _transmit(self):
        out = self.conn.datagrams_to_send()
        if out and self._keeper is not None:
            out = self._keeper.guard(self.conn, out, self._local_key, self._last_heard)
        for d in out:
            try:
                self._sock.send(d)
            except OSError as e:
                # ICMP errors are unauthenticated and often transient (server restarting):
                # count them and let the retransmission timer decide, as for a lost datagram;
                # so is a full send buffer of the non-blocking socket (MicroPython).
                if _is_refused(e):
                    self.port_unreachable += 1
                elif not e.args or e.args[0] != _EAGAIN:
                    raise

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
        """Received bytes (a memoryview of the buffer), or None once the connection's timer or
        the deadline is due."""
        wake_ms = self.conn.timer()
        if deadline is not None and (wake_ms is None or deadline < wake_ms):
            wake_ms = deadline
        wait = -1 if wake_ms is None else max(wake_ms - self._clock.now(), 1)
        try:
            if self._poll is not None:
                for _ in self._poll.ipoll(wait):  # ipoll: no list per call
                    n = self._sock.readinto(self._buf)  # None: woken with nothing queued
                    return self._view[:n] if n else None
                return None
            self._sock.settimeout(None if wake_ms is None else wait / 1000)
            return self._view[:self._recv_into(self._buf)]
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
