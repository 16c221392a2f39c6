# A small CoAP client (RFC 7252) over a dtls-lite client: GET/POST/PUT/DELETE/FETCH with
# Uri-Path/Query, Content-Format, Accept, ETag and any other option given as bytes; CON with
# retransmission (4.8) or NON; piggybacked and separate responses (5.2); block-wise transfers
# both ways (RFC 7959). One sans-I/O Exchange runs a request (feed it datagrams and timer
# expiries with an int now_ms; it says what to send and when it is done); Client (blocking,
# over DTLSClient) and AsyncClient (over aio.AsyncDTLSClient) only move its bytes and wait.
#
# Never: a server role, Observe, proxying, multicast, CoAP over plain UDP or TCP, percent-
# decoding of paths, a cache, two requests at once. It never imports dtls_lite.aio, and
# client.py never imports it.
#
# MIDs and tokens: one value of the DTLS client's persisted counter (reserve_counter()) per
# message we originate, block-wise follow-ups included: MID = its low 16 bits, token = its 4
# bytes. Tokens need only be unique per exchange (RFC 7252 5.3.1): the DTLS channel already
# authenticates every datagram, so they need no randomness against spoofing (9.1, 5.3.1's
# "at least 32 bits of randomness" guards plain UDP); the counter survives deep sleep, so a
# late response to a request of an earlier wake never matches a new one. ACKs and RSTs reuse
# the server's MID.
#
# Bounds: timeout_ms bounds a whole request (every block; a DTLS fallback handshake inside
# dtls.request() adds its own time); a reply larger than max_size is refused (CoAPError) before
# it is kept. Malformed datagrams are dropped and counted (malformed), never raised.
from dtls_lite.compat import const
from dtls_lite.errors import DTLSError, UsageError, ConnectionClosed

CON = const(0)
NON = const(1)
ACK = const(2)
RST = const(3)

# RFC 7252 4.8 transmission parameters, and our bounds
ACK_TIMEOUT_MS = const(2000)
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = const(4)
MAX_SIZE = const(16384)  # a reassembled (Block2) reply larger than this is refused
TIMEOUT_MS = const(30000)

_O_ETAG = const(4)
_O_URI_PATH = const(11)
_O_CONTENT_FORMAT = const(12)
_O_MAX_AGE = const(14)
_O_URI_QUERY = const(15)
_O_ACCEPT = const(17)
_O_BLOCK2 = const(23)
_O_BLOCK1 = const(27)
_O_SIZE2 = const(28)
_O_SIZE1 = const(60)

_METHODS = ("GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "IPATCH")  # codes 0.01..0.07
# Reason phrases by class (2, 4, 5), then detail (2.01 first, 4.00 and 5.00 first): RFC 7252
# 12.1.2, RFC 7959 (2.31, 4.08), RFC 8132 (4.09, 4.22), RFC 8516 (4.29)
_REASONS = ("Created|Deleted|Valid|Changed|Content||||||||||||||||||||||||||Continue", "",
            "Bad Request|Unauthorized|Bad Option|Forbidden|Not Found|Method Not Allowed|Not Acceptable|"
            "|Request Entity Incomplete|Conflict|||Precondition Failed|Request Entity Too Large|"
            "|Unsupported Content-Format||||||||Unprocessable Entity||||||Too Many Requests",
            "Internal Server Error|Not Implemented|Bad Gateway|Service Unavailable|Gateway Timeout"
            "|Proxying Not Supported")
_SIZES = (16, 32, 64, 128, 256, 512, 1024)  # block sizes by SZX (RFC 7959 2.2)
_DEFAULT_MESSAGE = const(1152)  # RFC 7252 4.6: the message size when nothing better is known


class CoAPError(DTLSError):
    """The server broke CoAP (a block-wise mismatch, a reply over max_size, ...)."""


class CoAPTimeout(CoAPError):
    """No response within the request's timeout_ms, or no ACK after max_retransmit."""


class CoAPReset(CoAPError):
    """The server answered the request with a Reset (RST): it could not process it."""


def _check(name, v, lo):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise UsageError("%s must be an int >= %d" % (name, lo))


# ---- the codec ---------------------------------------------------------------------------------

def _uint(v):
    """An unsigned option value in as few bytes as it takes (0: none, RFC 7252 3.2)."""
    n = 0
    while v >> (n << 3):
        n += 1
    return v.to_bytes(n, "big")


def _value(v):
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFFFFFF:
        return _uint(v)
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    raise UsageError("bad option value %r" % (v,))


def encode(mtype, code, mid, token=b"", options=(), payload=b""):
    """A CoAP message: options [(number, bytes|str|uint)] go out in number order, repeated
    ones in the order given."""
    if len(token) > 8:
        raise UsageError("token > 8 bytes")
    opts = []
    for o in options:  # a stable insertion sort: MicroPython's list.sort() is not stable
        num = o[0]
        if not isinstance(num, int) or isinstance(num, bool) or not 0 < num <= 0xFFFF:
            raise UsageError("bad option number %r" % (num,))
        i = len(opts)
        opts.append(o)
        while i and opts[i - 1][0] > num:
            opts[i] = opts[i - 1]
            i -= 1
        opts[i] = o
    b = bytearray((0x40 | mtype << 4 | len(token), code, mid >> 8 & 0xFF, mid & 0xFF))
    b.extend(token)
    last = 0
    for num, val in opts:
        val = _value(val)
        p = len(b)
        b.append(0)
        for v in (num - last, len(val)):  # the delta nibble, then the length's (RFC 7252 3.1)
            b[p] <<= 4
            if v < 13:
                b[p] |= v
            elif v < 269:
                b[p] |= 13
                b.append(v - 13)
            else:
                b[p] |= 14
                b.append((v - 269) >> 8)
                b.append((v - 269) & 0xFF)
        b.extend(val)
        last = num
    if payload:
        b.append(0xFF)
        b.extend(payload)
    return bytes(b)


def decode(data):
    """The Message in a datagram; CoAPError if it is not a well-formed CoAP message."""
    try:
        n = len(data)
        h = data[0]
        p = 4 + (h & 15)
        m = Message(h >> 4 & 3, data[1], data[2] << 8 | data[3], bytes(data[4:p]))
        # version 1, TKL 0..8, the whole token; an Empty message is the header only (4.1)
        ok = h >> 6 == 1 and h & 15 < 9 and p <= n and (m.code or n == 4)
        num = 0
        while ok and p < n:
            h = data[p]
            p += 1
            if h == 0xFF:
                ok = p < n  # a marker before nothing is a format error (RFC 7252 3)
                break
            d = h >> 4
            for i in (0, 1):  # the delta, then the length: 13 and 14 take 1 and 2 more bytes
                if d == 13:
                    d = data[p] + 13
                    p += 1
                elif d == 14:
                    d = (data[p] << 8 | data[p + 1]) + 269
                    p += 2
                elif d == 15:
                    ok = False
                if not i:
                    num += d
                    d = h & 15
            ok = ok and p + d <= n and num <= 0xFFFF
            m.options.append((num, bytes(data[p:p + d])))
            p += d
    except IndexError:
        ok = False
    if not ok:
        raise CoAPError("malformed message")
    m.payload = bytes(data[p:])
    return m


def _block(v):
    """(NUM, M, SZX) of a Block1/Block2 value (RFC 7959 2.2)."""
    v = int.from_bytes(v, "big") if len(v) <= 3 else -1
    if v < 0 or v & 7 == 7:  # SZX 7 is BERT (RFC 8323), for CoAP over TCP only
        raise CoAPError("bad Block option")
    return v >> 4, v >> 3 & 1, v & 7


class Message:
    """A decoded CoAP message; the response a request returns (for a block-wise reply: the
    last block's header and options, the whole payload)."""

    def __init__(self, mtype, code, mid, token):
        self.type = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = []  # [(number, bytes)] in wire order
        self.payload = b""

    def option(self, number):
        """The first value of option number, or None."""
        for o in self.options:
            if o[0] == number:
                return o[1]
        return None

    def __getattr__(self, name):
        # code_text, reason, content_format, max_age (60 s when absent, RFC 7252 5.10.5), etag
        c = self.code
        if name == "code_text":
            return "%d.%02d" % (c >> 5, c & 31)
        if name == "reason":
            c = (c >> 5) - 2
            d = (self.code & 31) - (c == 0)
            r = _REASONS[c].split("|") if 0 <= c < 4 and d >= 0 else ()
            return r[d] if d < len(r) else ""
        if name == "etag":
            return self.option(_O_ETAG)
        if name == "content_format" or name == "max_age":
            v = self.option(_O_CONTENT_FORMAT if name[0] == "c" else _O_MAX_AGE)
            return (None if name[0] == "c" else 60) if v is None else int.from_bytes(v, "big")
        raise AttributeError(name)

    def __str__(self):
        r = self.reason
        return self.code_text + " " + r if r else self.code_text


# ---- one request: the sans-I/O exchange ---------------------------------------------------------

class Exchange:
    """One request and its response, block-wise follow-ups included. The driver sends what
    take() gives (ACKs, RSTs and retransmissions; the new message last: its first transmission),
    then waits until timer() (an absolute now_ms) for a datagram: receive(data, now_ms), then
    handle_timer(now_ms); until done; then result() returns the response or raises."""

    def __init__(self, cc, code, opts, payload, con, timeout_ms, szx, now):
        self._cc = cc
        self._code = code
        self._opts = opts  # the request's options but block-wise ones
        self._payload = payload  # what is left to send: b"" once an upload is over
        self._type = CON if con else NON
        self._deadline = now + timeout_ms
        self.done = False
        self._out = []
        self._result = None
        self._szx2 = szx  # Block2 size we ask for (None: the server's)
        self._num2 = 0
        self._body = None  # the Block2 reply so far
        self._etag = None
        self._szx1 = szx
        self._num1 = None  # Block1 block under way; None: no upload (or it is over)
        self._new(now)
        # the largest CoAP message one record carries (the DTLS MTU less the record overhead)
        conn = getattr(cc._dtls, "conn", None)
        budget = _DEFAULT_MESSAGE if conn is None else conn.max_data_size
        if szx is not None and len(payload) > 16 << szx or len(self._msg) > budget:
            # the largest block that fits a message with these options (Block2 if asked
            # included), Block1 (at most 5 bytes) and Size1 (2 + its value) (RFC 7959 4)
            room = budget - (len(self._msg) - len(payload)) - 7 - len(_uint(len(payload)))
            if szx is None:
                szx = 6
            while szx >= 0 and 16 << szx > room:
                szx -= 1
            if szx < 0:
                raise UsageError("options too long")
            self._szx1 = szx
            self._num1 = 0
            self._build()  # the same MID and token: the first message never went out

    def _new(self, now):
        """Originate the next message: a fresh counter value for its MID and token."""
        cc = self._cc
        v = cc._dtls.reserve_counter(1)
        self._mid = v & 0xFFFF
        self._token = bytes((v >> 24 & 0xFF, v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF))
        self._build()
        self._tries = 0
        self._next = None
        if self._type == CON:
            r = cc._rng(2)  # the first timeout: random in [ACK_TIMEOUT, ACK_TIMEOUT * factor]
            self._rto = cc.ack_timeout_ms + cc._spread * (r[0] << 8 | r[1]) // 0xFFFF
            self._next = now + self._rto
        cc.sent += 1

    def _build(self):
        opts = self._opts
        payload = self._payload
        n1 = self._num1
        more = 0
        if n1 is not None:  # a Block1 request (RFC 7959 2.5), Size1 (the total) on the first
            s = 16 << self._szx1
            more = 8 if (n1 + 1) * s < len(payload) else 0
            opts = opts + [(_O_BLOCK1, n1 << 4 | more | self._szx1)] + ([] if n1 else [(_O_SIZE1, len(payload))])
            payload = payload[n1 * s:(n1 + 1) * s]
        if self._szx2 is not None and not more:  # Block2 early, or the block wanted (RFC 7959 2.4)
            opts = opts + [(_O_BLOCK2, self._num2 << 4 | self._szx2)]
        self._msg = self._fresh = encode(self._type, self._code, self._mid, self._token, opts, payload)

    def take(self):
        """(messages to send now, the new message to send last or None)."""
        out, fresh = self._out, self._fresh
        self._out = []
        self._fresh = None
        return out, fresh

    def timer(self):
        n = self._next
        return self._deadline if n is None or n > self._deadline else n

    def result(self):
        if isinstance(self._result, Exception):
            raise self._result
        return self._result

    def _finish(self, result):
        self.done = True
        self._result = result

    def handle_timer(self, now):
        cc = self._cc
        if self.done:
            return
        if now >= self._deadline:
            self._finish(CoAPTimeout("no response within timeout_ms"))
        elif self._next is not None and now >= self._next:
            if self._tries >= cc.max_retransmit:  # RFC 7252 4.2: give up
                self._finish(CoAPTimeout("no ACK after %d retransmissions" % self._tries))
                return
            self._tries += 1
            self._rto *= 2
            self._next = now + self._rto
            self._out.append(self._msg)
            cc.sent += 1
            cc.retransmissions += 1

    def receive(self, data, now):
        if self.done:
            return
        cc = self._cc
        try:
            m = decode(data)
        except CoAPError:
            cc.malformed += 1
            return
        t = m.type
        mine = m.token == self._token
        if t >= ACK:
            if m.mid != self._mid or m.code and not mine:
                cc.ignored += 1  # a late ACK or RST of an earlier message
                return
            if t == RST:
                self._finish(CoAPReset("reset by the server (RST)"))
                return
            self._next = None  # ACKed: no more retransmissions, wait for the response
            if not m.code:
                return  # empty: a separate response follows
        else:
            ours = m.code >> 5 >= 2 and mine  # a separate response (RFC 7252 5.2.2)
            if t == CON:
                # Ours gets an ACK, and so does a duplicate of one we ACKed (our ACK was lost,
                # 4.5); any other CON a Reset (4.2): it stops the server retransmitting what
                # nobody waits for. A NON that is not ours needs no word (4.3).
                a = cc._acked
                self._out.append(encode(ACK if ours or m.mid in a else RST, 0, m.mid))
                cc.sent += 1
                if ours:
                    cc._acked = a[-3:] + [m.mid]
            if not ours:
                cc.ignored += 1
                return
            self._next = None
        try:
            self._response(m, now)
        except CoAPError as e:
            self._finish(e)

    def _response(self, m, now):
        cc = self._cc
        n1 = self._num1
        if n1 is not None:  # an upload under way
            s = 16 << self._szx1
            self._num1 = None
            if (n1 + 1) * s < len(self._payload) and m.code >> 5 == 2:  # not the last block
                b1 = m.option(_O_BLOCK1)
                num, szx = n1, self._szx1
                if b1 is not None:
                    num, more, szx = _block(b1)
                elif m.code != 0x5F:  # a 2.xx says which block it acks (RFC 7959 2.3); a 2.31
                    num = -1  # without Block1 (libcoap 4.3's coap-server) acks this one
                if num != n1:
                    raise CoAPError("Block1 mismatch")
                if szx < self._szx1:  # the server asks for smaller blocks (RFC 7959 2.5)
                    self._num1 = (num + 1) << (self._szx1 - szx)
                    self._szx1 = szx
                else:
                    self._num1 = n1 + 1
                self._new(now)
                return
            self._payload = b""  # the last block's response, or an error, is the response
        b2 = m.option(_O_BLOCK2)
        body = self._body
        size2 = int.from_bytes(m.option(_O_SIZE2) or b"", "big")  # the whole, announced
        if len(m.payload) + (len(body) if body else 0) > cc.max_size or size2 > cc.max_size:
            raise CoAPError("reply over max_size")
        if b2 is None:
            if body is not None:
                raise CoAPError("Block2 missing")
            self._finish(m)
            return
        num, more, szx = _block(b2)
        s = 16 << szx
        if body is None:
            body = self._body = bytearray()
            self._etag = m.etag
        if num * s != len(body) or more and len(m.payload) != s or m.etag != self._etag:
            raise CoAPError("Block2 NUM, size or ETag mismatch")
        body.extend(m.payload)
        if not more:
            m.payload = bytes(body)
            self._finish(m)
            return
        if self._szx2 is None or szx < self._szx2:
            self._szx2 = szx
        if self._code != 5:
            self._payload = b""  # Block2 follow-ups carry no payload but FETCH's (RFC 8132 2.3.2)
        self._num2 = len(body) >> (self._szx2 + 4)
        self._new(now)


# ---- the clients: only how to wait ------------------------------------------------------------

class Client:
    """CoAP requests over a connected dtls_lite DTLSClient, one at a time.

    cc = Client(dtls); r = cc.get("/sensors/t"); print(r, r.payload)
    rng(n) gives the random part of the first ACK timeout (os.urandom by default); clock() the
    time in ms (a dtls_lite.client.Clock by default). The RFC 7252 4.8 parameters are
    overridable for lossy links and tests. A payload that does not fit one record (the DTLS
    client's conn.max_data_size, 1152 bytes without one: RFC 7252 4.6) goes block-wise, in
    the largest power-of-two block (1024 at most) that fits with the options; block_size=
    fixes the block size both ways. Counters: sent (messages, retransmissions, ACKs and RSTs
    included), retransmissions, malformed (datagrams dropped), ignored (not our answer)."""

    def __init__(self, dtls, rng=None, ack_timeout_ms=ACK_TIMEOUT_MS, ack_random_factor=ACK_RANDOM_FACTOR,
                 max_retransmit=MAX_RETRANSMIT, max_size=MAX_SIZE, clock=None):
        _check("ack_timeout_ms", ack_timeout_ms, 1)
        _check("max_retransmit", max_retransmit, 0)
        _check("max_size", max_size, 16)
        if not ack_random_factor >= 1:
            raise UsageError("ack_random_factor must be >= 1")
        self._dtls = dtls
        if rng is None:
            import os
            rng = os.urandom
        self._rng = rng
        if clock is None:
            from dtls_lite.client import Clock
            clock = Clock().now
        self._clock = clock
        self.ack_timeout_ms = ack_timeout_ms
        self._spread = int(ack_timeout_ms * (ack_random_factor - 1))  # the one float, here
        self.max_retransmit = max_retransmit
        self.max_size = max_size
        self._acked = []  # the last MIDs of separate responses we ACKed: duplicates get it again
        self.sent = 0  # messages sent (retransmissions, ACKs and RSTs included)
        self.retransmissions = 0
        self.malformed = 0  # datagrams that were not CoAP, dropped
        self.ignored = 0  # well-formed messages that were no answer to the request under way

    def request(self, method, path, payload=None, query=None, content_format=None, accept=None,
                etag=None, confirmable=True, timeout_ms=TIMEOUT_MS, block_size=None, options=None):
        """Send a request; its response (a Message: for a block-wise reply, the last block's
        header and options and the whole payload), whatever its code. Raises CoAPTimeout,
        CoAPReset, CoAPError (the server broke the protocol), ConnectionClosed, UsageError."""
        if payload is None:
            payload = b""
        elif isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, (bytes, bytearray)):
            raise UsageError("payload must be bytes or str")
        _check("timeout_ms", timeout_ms, 1)
        try:
            code = _METHODS.index(method.upper()) + 1
            szx = None if block_size is None else _SIZES.index(block_size)
            if isinstance(path, (list, tuple)):  # segments as they are (may hold "/" or "?")
                opts = [(_O_URI_PATH, s) for s in path]
            else:  # "/a/b?x=1&y": split at "?", "&" and "/"; "/" alone is no Uri-Path (6.5)
                i = path.find("?")
                if i >= 0:
                    query = path[i + 1:]
                    path = path[:i]
                path = path[1:] if path[:1] == "/" else path
                opts = [(_O_URI_PATH, s) for s in path.split("/")] if path else []
            if isinstance(query, str):
                query = query.split("&")
            opts += [(_O_URI_QUERY, s) for s in query or ()]
            for num, v in ((_O_CONTENT_FORMAT, content_format), (_O_ACCEPT, accept)):
                if v is not None:
                    opts.append((num, v + 0))  # a number (a str would pass as bytes)
            if isinstance(etag, (bytes, bytearray)):
                etag = (etag,)
            opts += [(_O_ETAG, e) for e in etag or ()]
            opts += options or ()
            encode(0, 0, 0, b"", opts)  # checks option numbers and values before anything goes
        except UsageError:
            raise
        except (AttributeError, TypeError, ValueError, IndexError):
            raise UsageError("bad method %r, path, query, etag, block_size or options" % (method,))
        return self._run(Exchange(self, code, opts, bytes(payload), confirmable, timeout_ms, szx, self._clock()))

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, payload, **kw):
        return self.request("POST", path, payload, **kw)

    def put(self, path, payload, **kw):
        return self.request("PUT", path, payload, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def fetch(self, path, payload, **kw):
        return self.request("FETCH", path, payload, **kw)


    def _step(self, ex, data):
        """Feed the exchange what a wait gave (None: nothing); the ms until its timer."""
        if data == b"":
            raise ConnectionClosed("DTLS closed")
        now = self._clock()
        if data is not None:
            ex.receive(data, now)
        ex.handle_timer(now)
        w = ex.timer() - now
        return w if w > 0 else 0

    def _run(self, ex):
        # A new message's first transmission goes through dtls.request(): on a continued
        # connection its server may have forgotten, that resumes or handshakes and sends the
        # same bytes again. Retransmissions, ACKs and RSTs are plain sends (request() would
        # take the answer to an earlier copy as an RTT sample of this one: Karn's rule);
        # the waits are recv().
        d = self._dtls
        data = None
        while True:
            w = self._step(ex, data)
            out, new = ex.take()
            for m in out:
                d.send(m)
            if ex.done:
                return ex.result()
            data = d.request(new, w or 1) if new else d.recv(w) if w else None


class AsyncClient(Client):
    """Client over a connected dtls_lite.aio.AsyncDTLSClient: `r = await cc.get("/x")`.
    The same Exchange; only the waits are awaited."""

    async def _run(self, ex):
        d = self._dtls
        data = None
        while True:
            w = self._step(ex, data)
            out, new = ex.take()
            for m in out:
                await d.send(m)
            if ex.done:
                return ex.result()
            data = (await d.request(new, w or 1)) if new else (await d.recv(w)) if w else None
