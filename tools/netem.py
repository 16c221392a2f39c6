"""The one UDP relay of the tools and tests (CPython only, loopback): it forwards between clients
and one server, logs every datagram, and can impair the link (seeded loss, duplication,
reordering, delay, NAT rebinding, a dead link) and route by Connection ID (what a CID-aware load
balancer does in front of a DTLS server).

    with netem.Relay(upstream=(srv.host, srv.port), seed=7, loss=0.2, dup=0.05, reorder=0.1,
                     delay_ms=(0, 30)) as r:
        run the client against r.address (or 127.0.0.1:r.port) ...
        r.captured        # [(direction, bytes, t), ...] every datagram the relay received
        r.log             # the same with each datagram's fate: [(direction, bytes, t, fate)]
        r.records(UP)     # [(client (host, port), bytes)] of one direction, in order
        r.counts          # per direction: received, dropped, duplicated, reordered, sent
        r.rebind()        # from now on the server sees a NEW source port (a NAT rebinding)
        r.dead = True     # drop everything both ways (a dead link)
        Relay(..., dead_after=2)   # the link dies after the first 2 datagrams (any direction)
        Relay(..., fate=f)         # f(direction, n, data) -> copies: a scripted link
    with netem.Relay((srv.host, srv.port), cid_len=6) as front:   # a CID-routing front
        front.cid_moves   # times an association followed its CID to a new client address
        front.dropped     # tls12_cid datagrams whose CID no association has (or too many clients)
        front.associations  # [Association(client, cids)], in order of creation

Directions: UP is client -> server, DOWN is server -> client. Settings given to Relay apply to
both; `up={...}` / `down={...}` override them per direction (keys: loss, dup, reorder,
delay_ms, reorder_hold_ms, rate_kbps, in_order); the attributes `r.up` / `r.down` (Link
objects) may also be changed while the relay runs, e.g. `r.down.loss = 1.0`.

A slow link (what tools/links.py's profiles use): rate_kbps=N serialises each direction at N
kbit/s, a datagram's UDP payload plus HEADER_BYTES (IPv4 + UDP) queued behind the one before
it (a datagram leaves the bottleneck at max(arrival, previous departure) + size / rate), then
its delay from delay_ms is added (propagation and jitter). in_order=True never lets a
datagram overtake an earlier one of the same direction (jitter without reordering, as a
cellular bearer delivers in order). Neither draws from the seeded generators: the n-th
datagram's fate for a seed is the same with or without them.

Associations. Like a NAT, every client address gets its own upstream socket (an association),
so the server sees one stable address per client. With cid_len, a datagram whose first record
is tls12_cid (content type 25) is routed by the CID in its header (cid_len bytes after the
sequence number, RFC 9146 4; a load balancer knows the length of the CIDs its servers assign),
and the association's client address becomes the datagram's source: replies go there. Anything
else (the handshake before a CID exists, a connection without CID) is routed by client address.
The relay learns an association's CID from the server's ServerHello (connection_id extension,
RFC 9146 3) as it passes, or from the first tls12_cid datagram of a known client address. Like
any load balancer it cannot authenticate records: the server's own checks stay the authority.

Fates. A datagram's fate is drawn from a random.Random per direction seeded from `seed`: the
n-th datagram of a direction gets the same fate in every run with that seed, whatever the
thread timing (fates: "drop", "send", "dup" = sent twice, "reorder" = held back until the next
datagram of that direction has gone out, or for at most reorder_hold_ms; "dead"; "unrouted" =
a CID no association has). Each copy gets its own delay drawn from delay_ms (uniform,
milliseconds), so delays reorder datagrams too.

One thread, one selector; every loop is bounded (MAX_QUEUE datagrams in flight, MAX_CAPTURE
logged, MAX_CLIENTS associations); the thread stops and all sockets close on exit.
"""
import heapq
import random
import selectors
import socket
import struct
import threading
import time

UP = "up"      # client -> server
DOWN = "down"  # server -> client
MAX_QUEUE = 10000
MAX_CAPTURE = 200000
MAX_CLIENTS = 64
_POLL_S = 0.05  # longest the thread sleeps without checking for stop
HEADER_BYTES = 28  # IPv4 (20) + UDP (8) header, serialised with each datagram when rate_kbps is set
_CT_HANDSHAKE = 22
_CT_TLS12_CID = 25
_HT_SERVER_HELLO = 2
_EXT_CONNECTION_ID = 54


def record_cid(datagram, cid_len):
    """The CID of the datagram's first record if it is a tls12_cid record, else None."""
    if len(datagram) >= 13 + cid_len and datagram[0] == _CT_TLS12_CID:
        return bytes(datagram[11:11 + cid_len])
    return None


def server_hello_cid(datagram):
    """The CID a ServerHello in this (epoch 0) datagram asks for, or None."""
    off = 0
    while off + 13 <= len(datagram):
        ctype, epoch = datagram[off], struct.unpack_from(">H", datagram, off + 3)[0]
        n = struct.unpack_from(">H", datagram, off + 11)[0]
        frag = datagram[off + 13:off + 13 + n]
        off += 13 + n
        if ctype != _CT_HANDSHAKE or epoch != 0 or len(frag) < 12 or frag[0] != _HT_SERVER_HELLO:
            continue
        body = frag[12:]  # a whole, unfragmented ServerHello is all we need to handle here
        try:
            p = 35 + body[34] + 3  # version, random, session_id, cipher_suite, compression
            end = p + 2 + struct.unpack_from(">H", body, p)[0]
            p += 2
            while p + 4 <= end:
                t, m = struct.unpack_from(">HH", body, p)
                if t == _EXT_CONNECTION_ID and m >= 1:
                    return bytes(body[p + 5:p + 5 + body[p + 4]])
                p += 4 + m
        except (IndexError, struct.error):
            return None
    return None


class Link:
    """The impairments of one direction (plain attributes; change them at any time)."""

    def __init__(self, loss=0.0, dup=0.0, reorder=0.0, delay_ms=(0, 0), reorder_hold_ms=100,
                 rate_kbps=None, in_order=False):
        for name, p in (("loss", loss), ("dup", dup), ("reorder", reorder)):
            if not 0.0 <= p <= 1.0:
                raise ValueError("%s must be a probability, got %r" % (name, p))
        if isinstance(delay_ms, (int, float)):
            delay_ms = (delay_ms, delay_ms)
        lo, hi = delay_ms
        if not 0 <= lo <= hi:
            raise ValueError("delay_ms must be (lo, hi) with 0 <= lo <= hi")
        if rate_kbps is not None and not rate_kbps > 0:
            raise ValueError("rate_kbps must be positive (or None: no serialisation delay)")
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.delay_ms = (lo, hi)
        self.reorder_hold_ms = reorder_hold_ms
        self.rate_kbps = rate_kbps
        self.in_order = bool(in_order)

    def serialisation_s(self, size):
        """Seconds the bottleneck needs for a datagram of `size` payload bytes (0 without a rate)."""
        if not self.rate_kbps:
            return 0.0
        return (size + HEADER_BYTES) * 8 / (self.rate_kbps * 1000.0)

    def __repr__(self):
        return "Link(loss=%r, dup=%r, reorder=%r, delay_ms=%r, rate_kbps=%r, in_order=%r)" % (
            self.loss, self.dup, self.reorder, self.delay_ms, self.rate_kbps, self.in_order)


class Association:
    """One client as the server sees it: its upstream socket, its current client address and
    the CIDs routed to it."""

    def __init__(self, client, sock):
        self.client = client
        self.sock = sock
        self.cids = []


class Relay:
    def __init__(self, upstream, seed=0, loss=0.0, dup=0.0, reorder=0.0, delay_ms=(0, 0),
                 listen_host="127.0.0.1", listen_port=0, up=None, down=None,
                 reorder_hold_ms=100, dead_after=None, cid_len=None, fate=None, rate_kbps=None,
                 in_order=False):
        self.upstream = (upstream[0], int(upstream[1]))
        # fate(direction, n, data) -> copies to forward (0 drops, 2 duplicates), n counting the
        # direction's datagrams from 0: a scripted link instead of the seeded draws
        self.fate = fate
        self.seed = seed
        self.cid_len = cid_len
        common = dict(loss=loss, dup=dup, reorder=reorder, delay_ms=delay_ms,
                      reorder_hold_ms=reorder_hold_ms, rate_kbps=rate_kbps, in_order=in_order)
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
        self._log = []            # (direction, bytes, t, fate, client)
        self._counts = {d: dict(received=0, dropped=0, duplicated=0, reordered=0, sent=0)
                        for d in (UP, DOWN)}
        self._queue = []          # heap of (due, n, direction, association, addr, data)
        self._n = 0
        self._held = {UP: None, DOWN: None}   # (deadline, association, addr, data) for reorder
        self._busy = {UP: 0.0, DOWN: 0.0}     # when each direction's bottleneck is free (rate_kbps)
        self._last_due = {UP: 0.0, DOWN: 0.0}  # latest delivery time queued (in_order)
        self._by_addr = {}        # client address -> Association
        self._by_cid = {}         # CID -> Association
        self._by_sock = {}        # upstream socket -> Association
        self.associations = []
        self.cid_moves = 0
        self.dropped = 0
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
    def port(self):
        return self.address[1]

    @property
    def captured(self):
        """Every datagram the relay received: [(direction, bytes, t seconds since start)]."""
        with self._lock:
            return [(d, b, t) for d, b, t, _, _ in self._log]

    @property
    def log(self):
        """Like captured, with each datagram's fate: [(direction, bytes, t, fate)]."""
        with self._lock:
            return [(d, b, t, f) for d, b, t, f, _ in self._log]

    def logged(self):
        """How many datagrams are in the log so far (for slicing with since())."""
        with self._lock:
            return len(self._log)

    def since(self, n):
        """[(direction, client, bytes)] of the datagrams logged after the first n."""
        with self._lock:
            return [(d, c, b) for d, b, _, _, c in self._log[n:]]

    def records(self, direction):
        """[(client (host, port), bytes)] of one direction, in order."""
        with self._lock:
            return [(c, b) for d, b, _, _, c in self._log if d == direction]

    @property
    def counts(self):
        with self._lock:
            return {d: dict(c) for d, c in self._counts.items()}

    def upstream_ports(self):
        """Source ports the server currently sees, one per client."""
        with self._lock:
            return sorted(a.sock.getsockname()[1] for a in self.associations if a.sock is not None)

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
        """NAT rebindings done by rebind()."""
        return self._rebinds

    def start(self):
        if self._thread is not None:
            return self
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
        for s in list(self._by_sock) + [self._sock]:
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
        except BaseException as e:  # noqa: B902  (kept for the caller to report)
            self.error = e

    def _do_rebind(self):
        with self._lock:
            self._pending_rebind = False
        for a in list(self.associations):
            if a.sock is None:
                continue
            self._sel.unregister(a.sock)
            del self._by_sock[a.sock]
            a.sock.close()
            self._upstream_socket(a)
        self._rebinds += 1

    def _upstream_socket(self, a):
        s = socket.socket(self._family_up, socket.SOCK_DGRAM)
        s.bind(("::1" if self._family_up == socket.AF_INET6 else "127.0.0.1", 0))
        s.setblocking(False)
        self._sel.register(s, selectors.EVENT_READ, None)
        with self._lock:
            a.sock = s
            self._by_sock[s] = a

    def _associate(self, addr):
        """The association datagrams from addr go through, made if new (None when full)."""
        a = self._by_addr.get(addr)
        if a is None:
            if len(self.associations) >= MAX_CLIENTS:
                return None
            a = Association(addr, None)
            self._upstream_socket(a)
            with self._lock:
                self.associations.append(a)
                self._by_addr[addr] = a
        return a

    def _route_up(self, data, addr):
        """The association a datagram from the client at addr goes through, or None."""
        cid = record_cid(data, self.cid_len) if self.cid_len is not None else None
        if cid is None:
            return self._associate(addr)
        a = self._by_cid.get(cid)
        if a is None:
            a = self._by_addr.get(addr)
            if a is None:
                return None
            self._learn(a, cid)
        if a.client != addr:  # a new address or port: the association follows the CID
            self.cid_moves += 1
            a.client = addr
            self._by_addr[addr] = a
        return a

    def _learn(self, a, cid):
        if cid not in a.cids:
            a.cids.append(cid)
        self._by_cid[cid] = a

    def _receive(self, sock):
        for _ in range(64):  # bounded drain per wake-up
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable reported on the socket: ignore
                return
            if sock is self._sock:
                a = self._route_up(data, addr)
                if a is None:
                    self.dropped += 1
                    self._record(UP, data, self._now(), "unrouted", addr)
                    continue
                self._decide(UP, data, a, self.upstream, addr)
            else:
                a = self._by_sock.get(sock)
                if a is None or addr[:2] != self._upstream_sockaddr(addr):
                    continue  # not from the server: a NAT drops it too
                if self.cid_len is not None:
                    cid = server_hello_cid(data)
                    if cid:
                        self._learn(a, cid)
                self._decide(DOWN, data, a, a.client, a.client)

    def _upstream_sockaddr(self, addr):
        # compare host and port only (IPv6 addresses carry flow info and scope id)
        host = self.upstream[0]
        if host == "localhost":
            host = addr[0]
        return (host, self.upstream[1])

    def _record(self, direction, data, now, fate, client):
        with self._lock:
            c = self._counts[direction]
            c["received"] += 1
            if len(self._log) < MAX_CAPTURE:
                self._log.append((direction, bytes(data), now, fate, client))
            else:
                self.capture_truncated = True
            if fate in ("dead", "drop", "unrouted"):
                c["dropped"] += 1
            elif fate == "dup":
                c["duplicated"] += 1
            elif fate == "reorder":
                c["reordered"] += 1

    def _decide(self, direction, data, a, dest, client):
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
        elif self.fate is not None:
            copies = self.fate(direction, self._counts[direction]["received"], data)
            fate = "drop" if copies == 0 else "dup" if copies > 1 else "send"
        elif r_loss < link.loss:
            fate = "drop"
        elif r_dup < link.dup:
            fate = "dup"
        elif r_reorder < link.reorder and self._held[direction] is None:
            fate = "reorder"
        else:
            fate = "send"
        self._record(direction, data, now, fate, client)
        if fate in ("dead", "drop"):
            return
        if fate == "reorder":
            self._held[direction] = (now + link.reorder_hold_ms / 1000.0, a, dest, data)
            return
        out = self._serialise(direction, link, len(data), now)
        self._enqueue(out + d1 / 1000.0, direction, a, dest, data, link.in_order)
        if fate == "dup":
            out2 = self._serialise(direction, link, len(data), now)
            self._enqueue(out2 + d2 / 1000.0, direction, a, dest, data, link.in_order)
        held = self._held[direction]
        if held is not None:  # the held datagram goes right after this one
            self._held[direction] = None
            self._enqueue(out + d1 / 1000.0 + 0.0005, direction, held[1], held[2], held[3])

    def _serialise(self, direction, link, size, now):
        """When a datagram that arrived at `now` leaves the direction's bottleneck (rate_kbps)."""
        if not link.rate_kbps:
            return now
        out = max(now, self._busy[direction]) + link.serialisation_s(size)
        self._busy[direction] = out
        return out

    def _enqueue(self, due, direction, a, dest, data, in_order=False):
        if len(self._queue) >= MAX_QUEUE:
            with self._lock:
                self._counts[direction]["dropped"] += 1
            return
        if in_order:  # never before an earlier datagram of this direction
            due = max(due, self._last_due[direction])
        self._last_due[direction] = max(due, self._last_due[direction])
        self._n += 1
        heapq.heappush(self._queue, (due, self._n, direction, a, dest, data))

    def _flush(self):
        now = self._now()
        for direction, held in list(self._held.items()):
            if held is not None and held[0] <= now:
                self._held[direction] = None
                self._enqueue(now, direction, held[1], held[2], held[3])
        while self._queue and self._queue[0][0] <= now:
            _, _, direction, a, dest, data = heapq.heappop(self._queue)
            if self.dead:
                continue
            # UP leaves through the association's current upstream socket (a rebinding
            # meanwhile moves it); DOWN through the socket the clients talk to
            sock = a.sock if direction == UP else self._sock
            try:
                sock.sendto(data, dest)
            except OSError:
                continue
            with self._lock:
                self._counts[direction]["sent"] += 1
