# Blocking UDP adapter around the sans-I/O Connection; runs on MicroPython and CPython.
# It owns the socket and the clock and nothing else: every protocol decision is Connection's.
import socket
import time

from dtls_lite import connection as cn
from dtls_lite.errors import ConnectionClosed, HandshakeTimeout, UsageError

try:
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
except AttributeError:  # CPython
    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b


class _Clock:
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
    try:
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
    except OSError as e:
        raise UsageError("cannot resolve %s: %s" % (host, e))
    return ai[0], ai[-1]


class DTLSClient:
    """A DTLS 1.2 PSK client over one UDP socket.

    with DTLSClient("127.0.0.1", 5684, b"Client_identity", psk) as c:
        c.send(b"hello"); reply = c.recv(2000)
    Keyword arguments after psk go to Connection (suites, mtu, initial_timeout_ms,
    max_retransmits, rng, ...). bind=(host, port) fixes the local address and port.
    """

    def __init__(self, host, port, identity, psk, bind=None, connect=True, **options):
        self.conn = cn.Connection(identity, psk, **options)
        family, self.server = resolve(host, port)
        self._where = "%s port %d" % (host, port)
        self._clock = _Clock()
        self._rx = []
        self.port_unreachable = 0  # ICMP port-unreachable reports seen (no server listening?)
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if bind is not None:
                self._sock.bind(resolve(bind[0], bind[1])[1])
            self._sock.connect(self.server)
            if connect:
                self.connect()
        except BaseException:
            self._sock.close()
            raise

    @property
    def stats(self):
        return self.conn.stats

    def connect(self):
        """Run the handshake; raises HandshakeTimeout, AlertReceived or ProtocolError."""
        self.conn.connect(self._clock.now())
        while self.conn.state != cn.ST_CONNECTED:
            if self.conn.state == cn.ST_CLOSED:
                raise self.conn.error or ConnectionClosed("closed during the handshake")
            self._pump(None)

    def send(self, data):
        self.conn.send(data)
        self._transmit()

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
        if self._sock is None:
            return
        self.conn.close()
        try:
            self._transmit()
        except OSError:
            pass  # the close_notify is a courtesy; the socket goes regardless
        self._sock.close()
        self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _transmit(self):
        for d in self.conn.datagrams_to_send():
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
            elif ev[0] == cn.EVENT_CLOSED and ev[1] is not None:
                err = ev[1]
                if isinstance(err, HandshakeTimeout) and self.port_unreachable:
                    err = HandshakeTimeout("%s; ICMP port unreachable %d times: is a server listening"
                                           " on %s?" % (err, self.port_unreachable, self._where))
                raise err
