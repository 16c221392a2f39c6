# The UDP client around the sans-I/O Connection; runs on MicroPython and CPython.
# Driver owns the socket and the clocks and holds everything a client does except waiting for
# a datagram: the wake policy's use (connect), request()'s steps (adaptive wait, retry,
# fallback), sending, what a received datagram or a timer does. Every protocol decision is
# Connection's, what to do with saved state on a wake is dtls_lite/wake.py's table, and
# persistence (stores, the sequence reservation, probing, the fallback's session) is
# dtls_lite/keeper.py's, loaded only with a store. The waits are the shells': DTLSClient here
# (blocking: poll or a socket timeout) and dtls_lite/aio.py's AsyncDTLSClient (asyncio), which
# builds on this module and is never imported by it. Driver lives here, not in a module of its
# own, so that the blocking client, the one a device runs, loads no module more than before.
import socket
import time

from dtls_lite import connection as cn
from dtls_lite import wake
from dtls_lite.compat import MICROPYTHON, const, need
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


# request()'s phases: what the record last sent waits for
_RQ_START = const(5)  # nothing sent yet
_RQ_LAST = const(0)  # its reply, whatever comes
_RQ_EXCHANGE = const(1)  # a continued connection's reply: silence falls back
_RQ_PROBE = const(2)  # a continued wake's first record: one RTO
_RQ_RETRY = const(3)  # its second copy: 2 RTO at most
_RQ_HANDSHAKE = const(4)  # the fallback's handshake; then the record goes once more

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
        return need("dtls_lite.state").ip_bytes(sockaddr[0]), sockaddr[1]
    a = socket.sockaddr(sockaddr)
    return bytes(a[1]), a[2]


def _wall_clock():
    return int(time.time())


class Driver:
    """A DTLS 1.2 PSK client over one UDP socket, but for the waits (see the module header):
    DTLSClient and aio.AsyncDTLSClient are this plus how they wait. The arguments are
    DTLSClient's (its docstring)."""

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
        # True: a continued connection whose first request has not gone yet; None: the server
        # sent data on this connection this wake, it is alive (no new attribute: with one more
        # interned name, a handshake no longer fit test_mp32's 70 KB heap from .mpy)
        self._probing = False
        self.rto_ms = None  # what the continued connection's first request waited (request())
        self.retries = 0  # records request() sent again on a continued connection
        self._rq = None  # request(): [phase, data, timeout_ms, t0, clean, rto] of the one under way
        self._keeper = None
        self._counter = None  # reserve_counter() without a store: in memory only
        if store is not None or session_store is not None:
            keeper = need("dtls_lite.keeper", "dtls_lite.state")
            self._keeper = keeper.Keeper(self.conn.identity, psk, _addr_key(self.server), store, session_store,
                                         auto_handshake_timeout_s, self._wall)
        if socket_factory is not None and not callable(socket_factory):
            raise UsageError("socket_factory must be a function: socket_factory(family) -> socket")
        self._sock = socket_factory(family) if socket_factory else socket.socket(family, socket.SOCK_DGRAM)
        # One buffer for every datagram received, made while the heap is young: CPython
        # receives into it (recv_into); MicroPython has no recv_into and its recv(n) allocates n
        # bytes per datagram, so there the socket is non-blocking, poll() waits and readinto()
        # takes what is queued: datagrams back to back, whole records all (a record never spans
        # datagrams, RFC 6347 4.1.1), which receive() parses one by one as it would anyway.
        # (DTLSClient's wait; aio.AsyncDTLSClient sets the socket up its own way.)
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._recv_into = getattr(self._sock, "recv_into", None)
        self._poll = None
        try:
            if bind is not None:
                try:
                    self._sock.bind(resolve(bind[0], bind[1])[1])
                except OSError:
                    if bind[1]:
                        raise
                    # lwIP's bind() resolves the address again and refuses port 0 (-201, the
                    # ESP32 firmware): left unbound, the socket gets an ephemeral port and the
                    # interface's address at connect(), which is what port 0 asks for
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

    @property
    def wire(self):
        """What this client put on and took off the wire, over every connection it used."""
        st = self.conn.stats
        p = self._past
        return {"datagrams_sent": p[0] + st.datagrams_sent, "bytes_sent": p[1] + st.bytes_sent,
                "datagrams_received": p[2] + st.datagrams_received,
                "bytes_received": p[3] + st.bytes_received,
                "handshake_datagrams": self._hs[0], "handshake_bytes": self._hs[1]}

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

    def reserve_counter(self, n=1):
        """The first of n consecutive values of a 32-bit counter (each value (c + i) & 0xFFFFFFFF)
        that the application never gets twice, across deep sleep, crashes and new handshakes:
        with store=, the stored state already holds a reservation above them when this
        returns (it is saved first when the stored one is used up, as record sequence numbers
        are). dtls_lite.coap takes its message IDs and tokens from it. The first boot (nothing
        stored, or a refused blob) starts at a random value; the session_store copy keeps no
        counter. Needs a connection: UsageError before connect() or during a handshake."""
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 0x10000:
            raise UsageError("reserve_counter(n): n must be an int in 1..65536, not %r" % (n,))
        if self.conn.session is None or self.conn.handshake_in_flight:
            raise UsageError("reserve_counter() needs a connection: connect() first")
        rng = self._options.get("rng")
        if rng is None:
            from dtls_lite.crypto import random_bytes as rng
        k = self._keeper
        if k is None:
            if self._counter is None:
                self._counter = int.from_bytes(rng(4), "big")
            c = self._counter
            self._counter = c + n
            return c & 0xFFFFFFFF
        return k.take(n, rng, self.conn, self._local_key, self._last_heard)

    @property
    def app_data(self):
        """Up to 64 bytes the application keeps in the saved state with the keys (saved by
        save()/suspend(), loaded by connect(); not in the session_store copy); needs a store."""
        return b"" if self._keeper is None else self._keeper.app_data

    @app_data.setter
    def app_data(self, data):
        if self._keeper is None:
            raise UsageError("app_data needs a store")
        if not isinstance(data, (bytes, bytearray)) or len(data) > 64:
            raise UsageError("app_data must be bytes, 0..64 long")
        self._keeper.app_data = bytes(data)

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

    # ---- connect(): the wake policy ---------------------------------------------------------

    def _start(self):
        """connect() up to the wait: decide as the wake policy says, restore a continued
        connection or start a handshake. True if a handshake was started."""
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
            return False
        if action == wake.ABBREVIATED:
            self._handshake(need("dtls_lite.keeper").session_of(saved))
        else:
            self._handshake()
        return True

    def _handshake(self, session=False):
        """Start a handshake: of self.conn (a fresh Connection) if session is False, else of a
        new Connection offering session (None: a full handshake). The shell then waits while
        _handshaking()."""
        if session is not False:
            st = self.conn.stats
            p = self._past
            p[0] += st.datagrams_sent
            p[1] += st.bytes_sent
            p[2] += st.datagrams_received
            p[3] += st.bytes_received
            self.conn = cn.Connection(self._identity, self._psk, session=session, **self._options)
        if self._keeper is not None:
            self._keeper.reserved = False  # new keys: nothing of theirs is stored yet
        # Load the handshake code before reading the clock: from a slow flash that takes long
        # enough to spend the first flight's timer and even handshake_timeout_ms (seen under
        # emulation), and the timers are for the network.
        need(cn.HANDSHAKE_MODULES[0], *cn.HANDSHAKE_MODULES)
        self.conn.connect(self._clock.now())

    def _handshaking(self):
        """True while the handshake waits for the peer; raises if it failed; once it is done,
        counts it, logs the keys and saves (before False)."""
        if self.conn.state == cn.ST_CLOSED:
            raise self.conn.error or ConnectionClosed("closed during the handshake")
        if self.conn.state != cn.ST_CONNECTED:
            return True
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
        return False

    # ---- request(): one record, one reply, the fallback -------------------------------------

    def _exchange(self, data, timeout_ms):
        """The first step of request(data, timeout_ms), as _step() gives them."""
        self._rq = [_RQ_START, data, timeout_ms, 0, True, 0]
        return self._step(None)

    def _step(self, data):
        """request()'s next step (done, arg), given what the last one gave: the reply to a wait
        (bytes, b"" if the server closed, None on timeout), None after a handshake. (True,
        reply): request() returns reply; (False, ms): recv(ms); (None, None): the fallback's
        handshake started, wait while _handshaking().

        A continued connection's first record (_RQ_PROBE): servers drop records of a
        connection they lost (restart, eviction) without a word, so silence is the only sign,
        and the wait for it is what a node pays before it resumes. The record waits one RTO
        (the server's smoothed RTT from earlier wakes, kept in the state: keeper.rto()); if no
        reply came, it goes once more as a new record (a new sequence number: never a nonce
        twice) and waits 2 RTO; both waits end within timeout_ms. A lost datagram costs a
        record, not a handshake; a restarted server costs 3 RTO, then the fallback: resume (a
        full handshake if the session is gone too) and send once more, waiting timeout_ms.
        The retry may deliver data twice, as the fallback always could, and a slow server may
        then answer twice: an application sending several requests per wake matches replies
        to requests (e.g. CoAP message IDs and tokens). Once the server sent data on this
        connection this wake, a request is a plain send and wait: its silence is loss."""
        reply = data
        rq = self._rq
        phase = rq[0]
        k = self._keeper
        wait = rq[2]
        if phase == _RQ_START:
            phase = _RQ_LAST
            # Silence means "forgotten" only until the server answered once this wake; after
            # that a lost datagram is loss (the application retransmits, e.g. CoAP 4.2), and a
            # handshake for it would cost more than the retransmission.
            if self.conn.stats.handshake_kind == "continued" and self._probing is not None:
                phase = _RQ_EXCHANGE
                if self._probing:
                    self._probing = False
                    phase = _RQ_PROBE
                    limit = wait if wait is not None else 0x3FFFFFFF  # None: no bound but RTO's
                    wait = rq[5] = self.rto_ms = k.rto(self._options.get("initial_timeout_ms", 1000), limit)
        elif phase == _RQ_HANDSHAKE:
            phase = _RQ_LAST
        elif reply is not None:
            if phase == _RQ_RETRY:
                if reply:
                    k.backed_off()  # Karn: which copy was answered is unknown, no sample
            elif reply and rq[4] and k is not None:  # a reply to this record alone: an RTT sample
                k.sample(self._clock.now() - rq[3])
            return True, reply
        elif phase == _RQ_LAST:
            return True, None
        else:  # silence on a continued connection
            if phase == _RQ_PROBE:
                if wait is None:
                    wait = 0x3FFFFFFF
                wait = rq[3] + wait - self._clock.now()
                if wait > 2 * rq[5]:
                    wait = 2 * rq[5]
                if wait > 0 and self.conn.state == cn.ST_CONNECTED:
                    self.retries += 1
                    Driver.send(self, rq[1])  # a new record: a new sequence number
                    rq[0] = _RQ_RETRY
                    return False, wait
            session, self.wake_action = k.fallback(self.conn)
            self.wake_reason = "the continued connection got no reply"
            self._handshake(session)
            rq[0] = _RQ_HANDSHAKE
            return None, None
        rq[0] = phase
        rq[3] = self._clock.now()
        rq[4] = not self._rx  # a reply queued before the send is not this record's
        Driver.send(self, rq[1])
        return False, wait

    # ---- recv() and the pump ----------------------------------------------------------------

    def _take(self, deadline):
        """What recv() returns now: the next payload, b"" once closed, None at the deadline;
        or else, once what is queued went out, the ms to wait for a datagram (an int: until
        the connection's timer or the deadline, at least 1; -1: no bound)."""
        if self._rx:
            return self._rx.pop(0)
        if self.conn.state == cn.ST_CLOSED:
            return b""
        now = self._clock.now()
        if deadline is not None and now >= deadline:
            return None
        if self._sock is None:
            raise ConnectionClosed("client is closed")
        self._transmit()
        ms = self.conn.timer()
        if deadline is not None and (ms is None or deadline < ms):
            ms = deadline
        return -1 if ms is None else max(ms - now, 1)

    def _receive(self, data):
        """After a wait: the datagram received (None: none), the timers, the events."""
        now = self._clock.now()
        if data is not None:
            self.conn.receive(data, now)
            self._transmit()  # the answer goes out first: the peer is waiting for it
        self.conn.handle_timer(now)
        self._transmit()
        self._handle_events()

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
                # so is a full send buffer of a non-blocking socket (MicroPython, asyncio).
                if _is_refused(e):
                    self.port_unreachable += 1
                elif not e.args or e.args[0] != _EAGAIN:
                    raise

    def _handle_events(self):
        while True:
            ev = self.conn.next_event()
            if ev is None:
                break
            if ev[0] == cn.EVENT_DATA:
                self._rx.append(ev[1])
                self._probing = None
                self._last_heard = int(self._wall())
            elif ev[0] == cn.EVENT_CONNECTED and self.conn.stats.handshake_kind != "continued":
                self._last_heard = int(self._wall())
            elif ev[0] == cn.EVENT_CLOSED and ev[1] is not None:
                err = ev[1]
                if isinstance(err, HandshakeTimeout) and self.port_unreachable:
                    err = HandshakeTimeout("%s; ICMP port unreachable %d times: is a server listening"
                                           " on %s?" % (err, self.port_unreachable, self._where))
                raise err

    # ---- saved state ---------------------------------------------------------------------

    def _find_local(self, bind, local):
        """(ip bytes, port) this socket is bound to, or None when unknown (no fixed port):
        the wake policy continues a connection only from the same address and port."""
        if self._keeper is None:
            return None
        ip_bytes = need("dtls_lite.state").ip_bytes
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


class DTLSClient(Driver):
    """A DTLS 1.2 PSK client over one UDP socket, blocking.

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

    def connect(self):
        """Continue, resume or handshake as the wake policy says; raises HandshakeTimeout,
        AlertReceived or ProtocolError when a handshake fails (the stored state is kept)."""
        if self._start():
            self._handshake_wait()

    def _handshake_wait(self):
        while self._handshaking():
            self._receive(self._recv(self._take(None)))  # no payload comes before Finished

    def request(self, data, timeout_ms=2000):
        """Send data as one record and wait for one reply (bytes, None on timeout, b"" if the
        server closed). A continued connection that gets no reply may be dead on the server
        (restarted, evicted): then resume (a full handshake if the session is gone too) and
        send once more, waiting timeout_ms. Its first request does not wait timeout_ms for
        that: it waits one RTO, sends once more and waits 2 RTO (Driver._step)."""
        done, arg = self._exchange(data, timeout_ms)
        while not done:
            if done is False:
                done, arg = self._step(self.recv(arg))
            else:
                self._handshake_wait()
                done, arg = self._step(None)
        return arg

    def recv(self, timeout_ms=None):
        """Next application payload; None on timeout; b"" once the server closed cleanly."""
        deadline = None if timeout_ms is None else self._clock.now() + timeout_ms
        while True:
            r = self._take(deadline)
            if not isinstance(r, int):
                return r
            self._receive(self._recv(r))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- the wait --------------------------------------------------------------------------

    def _recv(self, ms):
        """Received bytes (a memoryview of the buffer), or None after ms (-1: no bound)."""
        try:
            if self._poll is not None:
                for _ in self._poll.ipoll(ms):  # ipoll: no list per call
                    n = self._sock.readinto(self._buf)  # None: woken with nothing queued
                    return self._view[:n] if n else None
                return None
            self._sock.settimeout(None if ms < 0 else ms / 1000)
            return self._view[:self._recv_into(self._buf)]
        except OSError as e:
            if _is_refused(e):  # an ICMP report, unauthenticated: counted, as a timeout
                self.port_unreachable += 1
            elif not _is_timeout(e):
                raise
        return None
