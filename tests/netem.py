"""A lossy-link UDP relay on loopback for tests (CPython only): seeded loss, duplication,
reordering and delay, a capture of every datagram, NAT rebinding and a dead link.

    with netem.Relay(upstream=(srv.host, srv.port), seed=7, loss=0.2, dup=0.05, reorder=0.1,
                     delay_ms=(0, 30)) as r:
        run the client against r.address ...
        r.captured        # [(direction, bytes, t), ...] every datagram the relay received
        r.counts          # per direction: received, dropped, duplicated, reordered, sent
        r.rebind()        # from now on the server sees a NEW source port (a NAT rebinding)
        r.dead = True     # drop everything both ways (a dead link)
        Relay(..., dead_after=2)   # the link dies after the first 2 datagrams (any direction)

Directions: UP is client -> server, DOWN is server -> client. Settings given to Relay apply to
both; `up={...}` / `down={...}` override them per direction (keys: loss, dup, reorder,
delay_ms, reorder_hold_ms); the attributes `r.up` / `r.down` (Link objects) may also be
changed while the relay runs, e.g. `r.down.loss = 1.0`.

Like a NAT, every client address gets its own upstream socket, so the server sees one address
per client. A datagram's fate is drawn from a random.Random per direction seeded from `seed`:
the n-th datagram of a direction gets the same fate in every run with that seed, whatever the
thread timing (fates: "drop", "send", "dup" = sent twice, "reorder" = held back until the next
datagram of that direction has gone out, or for at most reorder_hold_ms). Each copy gets its own
delay drawn from delay_ms (uniform, milliseconds), so delays reorder datagrams too.

One thread, one selector; every loop is bounded (MAX_QUEUE datagrams in flight, MAX_CAPTURE
captured, MAX_CLIENTS mappings); the thread stops and all sockets close on exit.
"""
import heapq
import random
import selectors
import socket
import threading
import time

UP = "up"      # client -> server
DOWN = "down"  # server -> client
MAX_QUEUE = 10000
MAX_CAPTURE = 200000
MAX_CLIENTS = 64
_POLL_S = 0.05  # longest the thread sleeps without checking for stop


class Link:
    """The impairments of one direction (plain attributes; change them at any time)."""

    def __init__(self, loss=0.0, dup=0.0, reorder=0.0, delay_ms=(0, 0), reorder_hold_ms=100):
        for name, p in (("loss", loss), ("dup", dup), ("reorder", reorder)):
            if not 0.0 <= p <= 1.0:
                raise ValueError("%s must be a probability, got %r" % (name, p))
        if isinstance(delay_ms, (int, float)):
            delay_ms = (delay_ms, delay_ms)
        lo, hi = delay_ms
        if not 0 <= lo <= hi:
            raise ValueError("delay_ms must be (lo, hi) with 0 <= lo <= hi")
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.delay_ms = (lo, hi)
        self.reorder_hold_ms = reorder_hold_ms

    def __repr__(self):
        return "Link(loss=%r, dup=%r, reorder=%r, delay_ms=%r)" % (
            self.loss, self.dup, self.reorder, self.delay_ms)


class Relay:
    def __init__(self, upstream, seed=0, loss=0.0, dup=0.0, reorder=0.0, delay_ms=(0, 0),
                 listen_host="127.0.0.1", listen_port=0, up=None, down=None,
                 reorder_hold_ms=100, dead_after=None):
        self.upstream = (upstream[0], int(upstream[1]))
        self.seed = seed
        common = dict(loss=loss, dup=dup, reorder=reorder, delay_ms=delay_ms,
                      reorder_hold_ms=reorder_hold_ms)
        self.up = Link(**dict(common, **(up or {})))
        self.down = Link(**dict(common, **(down or {})))
        self.dead = False
        self.dead_after = dead_after
        self._seen = 0
        self.capture_truncated = False
        self._rng = {UP: random.Random("%s/up" % (seed,)), DOWN: random.Random("%s/down" % (seed,))}
        self._listen = (listen_host, listen_port)
        self._family_down = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
        self._family_up = socket.AF_INET6 if ":" in self.upstream[0] else socket.AF_INET
        self._lock = threading.Lock()
        self._log = []            # (direction, bytes, t, fate)
        self._counts = {d: dict(received=0, dropped=0, duplicated=0, reordered=0, sent=0)
                        for d in (UP, DOWN)}
        self._queue = []          # heap of (due, n, direction, sock, addr, data)
        self._n = 0
        self._held = {UP: None, DOWN: None}   # (deadline, sock, addr, data) held for reorder
        self._clients = {}        # client address -> upstream socket
        self._owner = {}          # upstream socket -> client address
        self._retired = {}        # upstream sockets closed by rebind() -> client address
        self._rebinds = 0
        self._pending_rebind = False
        self._sel = None
        self._sock = None
        self._thread = None
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self.error = None         # an unexpected exception in the relay thread, if any

    # -- public ---------------------------------------------------------------------------
    @property
    def address(self):
        """(host, port) the clients talk to."""
        return self._sock.getsockname()[:2]

    @property
    def captured(self):
        """Every datagram the relay received: [(direction, bytes, t seconds since start)]."""
        with self._lock:
            return [(d, b, t) for d, b, t, _ in self._log]

    @property
    def log(self):
        """Like captured, with each datagram's fate: [(direction, bytes, t, fate)]."""
        with self._lock:
            return list(self._log)

    @property
    def counts(self):
        with self._lock:
            return {d: dict(c) for d, c in self._counts.items()}

    def upstream_ports(self):
        """Source ports the server currently sees, one per client."""
        with self._lock:
            return sorted(s.getsockname()[1] for s in self._owner)

    def rebind(self):
        """A NAT rebinding: every client gets a new upstream socket (a new source port) for
        the datagrams it forwards from now on (also those still delayed in the relay); the old
        mapping is gone, so whatever the server still sends to the old port is lost. Returns
        when the relay thread has done it (at most 2 s)."""
        with self._lock:
            self._pending_rebind = True
            want = self._rebinds + 1
        deadline = time.monotonic() + 2.0
        while self._rebinds < want:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("relay thread did not rebind (error: %r)" % (self.error,))
            time.sleep(0.002)

    @property
    def rebinds(self):
        return self._rebinds

    def start(self):
        self._sock = socket.socket(self._family_down, socket.SOCK_DGRAM)
        self._sock.bind(self._listen)
        self._sock.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._sock, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="netem-relay", daemon=True)
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        for s in list(self._owner) + [self._sock]:
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        if self._sel is not None:
            self._sel.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- relay thread ---------------------------------------------------------------------
    def _now(self):
        return time.monotonic() - self._t0

    def _run(self):
        try:
            while not self._stop.is_set():
                if self._pending_rebind:
                    self._do_rebind()
                timeout = _POLL_S
                now = self._now()
                if self._queue:
                    timeout = min(timeout, max(0.0, self._queue[0][0] - now))
                for held in self._held.values():
                    if held is not None:
                        timeout = min(timeout, max(0.0, held[0] - now))
                for key, _ in self._sel.select(timeout):
                    self._receive(key.fileobj)
                self._flush()
        except BaseException as e:  # noqa: B902  (kept for the test to report)
            self.error = e

    def _do_rebind(self):
        with self._lock:
            self._pending_rebind = False
        for client, old in list(self._clients.items()):
            self._sel.unregister(old)
            old.close()
            self._retired[old] = client
            self._new_upstream(client, replace=old)
        self._rebinds += 1

    def _new_upstream(self, client, replace=None):
        s = socket.socket(self._family_up, socket.SOCK_DGRAM)
        s.bind(("::1" if self._family_up == socket.AF_INET6 else "127.0.0.1", 0))
        s.setblocking(False)
        self._sel.register(s, selectors.EVENT_READ, None)
        with self._lock:
            if replace is not None:
                del self._owner[replace]
            self._clients[client] = s
            self._owner[s] = client
        return s

    def _receive(self, sock):
        for _ in range(64):  # bounded drain per wake-up
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable reported on the socket: ignore
                return
            if sock is self._sock:
                direction = UP
                out = self._clients.get(addr)
                if out is None:
                    if len(self._clients) >= MAX_CLIENTS:
                        continue
                    out = self._new_upstream(addr)
                dest = self.upstream
            else:
                direction = DOWN
                client = self._owner.get(sock)
                if client is None or addr[:2] != self._upstream_sockaddr(addr):
                    continue  # not from the server: a NAT drops it too
                out, dest = self._sock, client
            self._decide(direction, data, out, dest)

    def _upstream_sockaddr(self, addr):
        # compare host and port only (IPv6 addresses carry flow info and scope id)
        host = self.upstream[0]
        if host == "localhost":
            host = addr[0]
        return (host, self.upstream[1])

    def _decide(self, direction, data, out, dest):
        link = self.up if direction == UP else self.down
        rng = self._rng[direction]
        # Always draw the same numbers per datagram so the n-th datagram's fate depends only on
        # the seed and n, not on settings changed midway or on whether the link is dead.
        r_loss, r_dup, r_reorder = rng.random(), rng.random(), rng.random()
        d1, d2 = rng.uniform(*link.delay_ms), rng.uniform(*link.delay_ms)
        now = self._now()
        self._seen += 1
        if self.dead_after is not None and self._seen > self.dead_after:
            self.dead = True
        if self.dead:
            fate = "dead"
        elif r_loss < link.loss:
            fate = "drop"
        elif r_dup < link.dup:
            fate = "dup"
        elif r_reorder < link.reorder and self._held[direction] is None:
            fate = "reorder"
        else:
            fate = "send"
        with self._lock:
            c = self._counts[direction]
            c["received"] += 1
            if len(self._log) < MAX_CAPTURE:
                self._log.append((direction, bytes(data), now, fate))
            else:
                self.capture_truncated = True
            if fate in ("dead", "drop"):
                c["dropped"] += 1
            elif fate == "dup":
                c["duplicated"] += 1
            elif fate == "reorder":
                c["reordered"] += 1
        if fate in ("dead", "drop"):
            return
        if fate == "reorder":
            self._held[direction] = (now + link.reorder_hold_ms / 1000.0, out, dest, data)
            return
        self._enqueue(now + d1 / 1000.0, direction, out, dest, data)
        if fate == "dup":
            self._enqueue(now + d2 / 1000.0, direction, out, dest, data)
        held = self._held[direction]
        if held is not None:  # the held datagram goes right after this one
            self._held[direction] = None
            self._enqueue(now + d1 / 1000.0 + 0.0005, direction, held[1], held[2], held[3])

    def _enqueue(self, due, direction, sock, dest, data):
        if len(self._queue) >= MAX_QUEUE:
            with self._lock:
                self._counts[direction]["dropped"] += 1
            return
        self._n += 1
        heapq.heappush(self._queue, (due, self._n, direction, sock, dest, data))

    def _flush(self):
        now = self._now()
        for direction, held in list(self._held.items()):
            if held is not None and held[0] <= now:
                self._held[direction] = None
                self._enqueue(now, direction, held[1], held[2], held[3])
        while self._queue and self._queue[0][0] <= now:
            _, _, direction, sock, dest, data = heapq.heappop(self._queue)
            if sock.fileno() < 0:  # rebound meanwhile: it leaves through the new mapping
                sock = self._clients.get(self._retired.get(sock))
                if sock is None:
                    continue
            if self.dead:
                continue
            try:
                sock.sendto(data, dest)
            except OSError:
                continue
            with self._lock:
                self._counts[direction]["sent"] += 1
