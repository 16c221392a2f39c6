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
# The DTLS client: a request's first message goes out through dtls.request() (the fallback of
# a continued connection whose server forgot it), everything else through send() and recv().
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
_DEFAULT_MESSAGE = const(1152)  # RFC 7252 4.6: the message size when nothing better is known

# Heap (MicroPython): every new name (attribute, argument, global) is a qstr that stays in
# RAM, and a qstr pool that fills doubles; so this module reuses names the client already
# interned (rto, end, repeats, _buf, _datagram, ...) and keeps its tables in the functions.


class CoAPError(DTLSError):
    """The server broke CoAP (a block-wise mismatch, a reply over max_size, ...)."""


class CoAPTimeout(CoAPError):
    """No response within the request's timeout_ms, or no ACK after max_retransmit."""


class CoAPReset(CoAPError):
    """The server answered the request with a Reset (RST): it could not process it."""


def _check_int(name, v, lo):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise UsageError("%s must be an int >= %d" % (name, lo))


# ---- the codec ---------------------------------------------------------------------------------

def _uint(v):
    """An unsigned option value in as few bytes as it takes (0: none, RFC 7252 3.2)."""
    n = 0
    while v >> (n << 3):
        n += 1
    return v.to_bytes(n, "big")


def encode(type, code, mid, token=b"", options=(), payload=b""):
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
    b = bytearray((0x40 | type << 4 | len(token), code, mid >> 8 & 0xFF, mid & 0xFF))
    b.extend(token)
    last = 0
    for num, val in opts:
        if isinstance(val, int) and not isinstance(val, bool) and 0 <= val <= 0xFFFFFFFF:
            val = _uint(val)
        elif isinstance(val, str):
            val = val.encode()
        elif not isinstance(val, (bytes, bytearray)):
            raise UsageError("bad option value %r" % (val,))
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
        raise CoAPError("malformed message")  # its Block option
    return v >> 4, v >> 3 & 1, v & 7


class Message:
    """A decoded CoAP message; the response a request returns (for a block-wise reply: the
    last block's header and options, the whole payload)."""

    def __init__(self, type, code, mid, token):
        self.type = type
        self.code = code
        self.mid = mid
        self.token = token
        self.options = []  # [(number, bytes)] in wire order
        self.payload = b""

    def option(self, n):
        """The first value of option number n, or None."""
        for o in self.options:
            if o[0] == n:
                return o[1]
        return None

    def __getattr__(self, name):
        # code_text, reason, content_format, max_age (60 s when absent, RFC 7252 5.10.5), etag
        c = self.code
        if name == "code_text":
            return "%d.%02d" % (c >> 5, c & 31)
        if name == "reason":
            # by class (2, 4, 5), then detail (2.01, 4.00, 5.00 first): RFC 7252 12.1.2,
            # RFC 7959 (2.31, 4.08), RFC 8132 (4.09, 4.22), RFC 8516 (4.29)
            r = ("Created/Deleted/Valid/Changed/Content//////////////////////////Continue", "",
                 "Bad Request/Unauthorized/Bad Option/Forbidden/Not Found/Method Not Allowed/"
                 "Not Acceptable//Request Entity Incomplete/Conflict///Precondition Failed/"
                 "Request Entity Too Large//Unsupported Content-Format////////Unprocessable Entity"
                 "//////Too Many Requests",
                 "Internal Server Error/Not Implemented/Bad Gateway/Service Unavailable/"
                 "Gateway Timeout/Proxying Not Supported")
            d = c & 31
            c = (c >> 5) - 2
            r = r[c].split("/") if 0 <= c < 4 else ()
            d -= c == 0
            return r[d] if 0 <= d < len(r) else ""
        if name == "etag":
            return self.option(_O_ETAG)
        if name == "max_age":
            c = self.option(_O_MAX_AGE)
            return 60 if c is None else int.from_bytes(c, "big")
        if name == "content_format":
            c = self.option(_O_CONTENT_FORMAT)
            return None if c is None else int.from_bytes(c, "big")
        raise AttributeError(name)

    def __str__(self):
        r = self.reason
        return self.code_text + " " + r if r else self.code_text


# ---- one request: the sans-I/O exchange ---------------------------------------------------------

class Exchange:
    """One request and its response, block-wise follow-ups included. The driver sends what
    take() gives (ACKs, RSTs, retransmissions, follow-ups; then the request's first message,
    once), then waits until timer() (an absolute now_ms) for a datagram: receive(data, now_ms),
    then handle_timer(now_ms); until done (None until then, then the outcome): result()
    returns the response or raises."""

    def __init__(self, cc, code, options, payload, type, timeout_ms, szx, now):
        self.cc = cc
        self.code = code
        self.options = options  # the request's, but block-wise ones
        self.type = type
        self.end = now + timeout_ms
        self.done = None
        self._out = []
        self._start = None  # then True until take() gave the first message
        self._szx2 = szx  # the Block2 size we ask for (None: the server's)
        self._num2 = 0
        self._buf = None  # the Block2 reply so far (and self.etag its first block's ETag)
        self._szx1 = szx
        self._num1 = None  # the Block1 block under way; None: no upload (or it is over)
        self.payload = b""
        self._new(now)  # the header and options alone, to see what room they leave
        self.payload = payload  # what is left to send: b"" once an upload is over
        # a payload that does not fit the largest message one record carries (the DTLS MTU
        # less the record overhead) goes in the largest blocks that do, with Block1 (at most
        # 5 bytes more; RFC 7959 4); block_size (szx) caps them
        conn = getattr(cc.dtls, "conn", None)
        n = (_DEFAULT_MESSAGE if conn is None else conn.max_data_size) - len(self._datagram) - 1  # 0xFF
        if szx is not None and len(payload) > 16 << szx or len(payload) > n:
            n -= 5
            if szx is None:
                szx = 6
            while szx >= 0 and 16 << szx > n:
                szx -= 1
            if szx < 0:
                raise UsageError("options too long")
            self._szx1 = szx
            self._num1 = 0
        self._new(now, False)  # the same MID and token: the first message never went out
        self._start = True

    def _new(self, now, new=True):
        """Encode the next message; new: a new one (a counter value for its MID and token,
        its own timers), else the current one again."""
        cc = self.cc
        if new:
            v = cc.dtls.reserve_counter(1)
            self.mid = v & 0xFFFF
            self.token = bytes((v >> 24 & 0xFF, v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF))
            self.retransmissions = 0
            self._schedule_ms = None  # when the next retransmission is due
            if self.type == CON:
                r = cc.rng(2)  # the first timeout: random in [ACK_TIMEOUT, ACK_TIMEOUT * factor]
                lo = cc.ack_timeout_ms
                self.rto = lo + (cc.max_timeout_ms - lo) * (r[0] << 8 | r[1]) // 0xFFFF
                self._schedule_ms = now + self.rto
            cc.sent += 1
        opts = self.options
        payload = self.payload
        n = self._num1
        more = 0
        if n is not None:  # a Block1 request (RFC 7959 2.5; no Size1: it is optional, 4)
            s = 16 << self._szx1
            more = 8 if (n + 1) * s < len(payload) else 0
            opts = opts + [(_O_BLOCK1, n << 4 | more | self._szx1)]
            payload = payload[n * s:(n + 1) * s]
        if self._szx2 is not None and not more:  # Block2 early, or the block wanted (RFC 7959 2.4)
            opts = opts + [(_O_BLOCK2, self._num2 << 4 | self._szx2)]
        self._datagram = encode(self.type, self.code, self.mid, self.token, opts, payload)
        if self._start is not None:  # a follow-up (a block): sent as any other message
            self._out.append(self._datagram)

    def take(self):
        """(messages to send now, the request's first message if it is yet to go, or None)."""
        out = self._out
        self._out = []
        new = self._datagram if self._start else None
        self._start = False
        return out, new

    def timer(self):
        n = self._schedule_ms
        return self.end if n is None or n > self.end else n

    def result(self):
        if isinstance(self.done, Exception):
            raise self.done
        return self.done

    def handle_timer(self, now):
        cc = self.cc
        if self.done:
            return
        if now >= self.end:
            self.done = CoAPTimeout("timeout_ms passed")
        elif self._schedule_ms is not None and now >= self._schedule_ms:
            if self.retransmissions >= cc.max_retransmit:  # RFC 7252 4.2: give up
                self.done = CoAPTimeout("no ACK after %d retransmissions" % self.retransmissions)
                return
            self.retransmissions += 1
            self.rto *= 2
            self._schedule_ms = now + self.rto
            self._out.append(self._datagram)
            cc.sent += 1
            cc.retransmissions += 1

    def receive(self, data, now):
        if self.done:
            return
        cc = self.cc
        try:
            m = decode(data)
        except CoAPError:
            cc.malformed += 1
            return
        t = m.type
        mine = m.token == self.token
        if t >= ACK:
            if m.mid != self.mid or m.code and not mine:
                cc.ignored += 1  # a late ACK or RST of an earlier message
                return
            if t == RST:
                self.done = CoAPReset("server reset (RST)")
                return
            self._schedule_ms = None  # ACKed: no more retransmissions, wait for the response
            if not m.code:
                return  # empty: a separate response follows
        else:
            ours = m.code >> 5 >= 2 and mine  # a separate response (RFC 7252 5.2.2)
            if t == CON:
                # Ours gets an ACK, and so does a duplicate of one we ACKed (our ACK was lost,
                # 4.5); any other CON a Reset (4.2): it stops the server retransmitting what
                # nobody waits for. A NON that is not ours needs no word (4.3).
                a = cc.repeats
                self._out.append(encode(ACK if ours or m.mid in a else RST, 0, m.mid))
                cc.sent += 1
                if ours:
                    cc.repeats = a[-3:] + [m.mid]
            if not ours:
                cc.ignored += 1
                return
            self._schedule_ms = None
        try:
            self._response(m, now)
        except CoAPError as e:
            self.done = e

    def _response(self, m, now):
        """Our response: the next block to send or fetch, or the outcome."""
        cc = self.cc
        n = self._num1
        if n is not None:  # an upload under way
            s = 16 << self._szx1
            self._num1 = None
            if (n + 1) * s < len(self.payload) and m.code >> 5 == 2:  # not the last block
                b1 = m.option(_O_BLOCK1)
                num, szx = n, self._szx1
                if b1 is not None:
                    num, more, szx = _block(b1)
                elif m.code != 0x5F:  # a 2.xx says which block it acks (RFC 7959 2.3);
                    num = -1  # a 2.31 without Block1 (libcoap 4.3's coap-server) acks this one
                if num != n:
                    raise CoAPError("block-wise mismatch: NUM, size or ETag")
                if szx < self._szx1:  # the server asks for smaller blocks (RFC 7959 2.5)
                    self._num1 = (num + 1) << (self._szx1 - szx)
                    self._szx1 = szx
                else:
                    self._num1 = n + 1
                self._new(now)
                return
            self.payload = b""  # the last block's response, or an error, is the response
        b2 = m.option(_O_BLOCK2)
        buf = self._buf
        size2 = int.from_bytes(m.option(_O_SIZE2) or b"", "big")  # the whole, announced
        if len(m.payload) + (len(buf) if buf else 0) > cc.max_size or size2 > cc.max_size:
            raise CoAPError("reply over max_size")
        if b2 is None:
            if buf is not None:
                raise CoAPError("block-wise mismatch: NUM, size or ETag")
            self.done = m
            return
        num, more, szx = _block(b2)
        s = 16 << szx
        if buf is None:
            buf = self._buf = bytearray()
            self.etag = m.etag
        if num * s != len(buf) or more and len(m.payload) != s or m.etag != self.etag:
            raise CoAPError("block-wise mismatch: NUM, size or ETag")
        buf.extend(m.payload)
        if not more:
            m.payload = bytes(buf)
            self.done = m
            return
        if self._szx2 is None or szx < self._szx2:
            self._szx2 = szx
        if self.code != 5:
            self.payload = b""  # follow-ups carry no payload but FETCH's (RFC 8132 2.3.2)
        self._num2 = len(buf) >> (self._szx2 + 4)
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
        _check_int("ack_timeout_ms", ack_timeout_ms, 1)
        _check_int("max_retransmit", max_retransmit, 0)
        _check_int("max_size", max_size, 16)
        if not ack_random_factor >= 1:
            raise UsageError("ack_random_factor must be >= 1")
        self.dtls = dtls
        if rng is None:
            import os
            rng = os.urandom
        self.rng = rng
        if clock is None:
            from dtls_lite.client import Clock
            clock = Clock().now
        self._clock = clock
        self.ack_timeout_ms = ack_timeout_ms
        self.max_timeout_ms = int(ack_timeout_ms * ack_random_factor)  # the first timeout's top
        self.max_retransmit = max_retransmit
        self.max_size = max_size
        self.repeats = []  # the last MIDs of separate responses we ACKed: their repeats get it again
        self.sent = 0  # messages sent (retransmissions, ACKs and RSTs included)
        self.retransmissions = 0
        self.malformed = 0  # datagrams that were not CoAP, dropped
        self.ignored = 0  # well-formed messages that were no answer to the request under way

    def request(self, method, path, payload=None, query=None, content_format=None, accept=None,
                etag=None, confirmable=True, timeout_ms=TIMEOUT_MS, block_size=None, options=None):
        """Send a request; its response (a Message: for a block-wise reply, the last block's
        header and options and the whole payload), whatever its code. Raises CoAPTimeout,
        CoAPReset, CoAPError (the server broke the protocol), ConnectionClosed, UsageError."""
        _check_int("timeout_ms", timeout_ms, 1)
        try:
            # bytes, bytearray, memoryview or str (an int would make that many zero bytes)
            if isinstance(payload, str):
                payload = payload.encode()
            payload = bytes(memoryview(b"" if payload is None else payload))
            code = ("get", "post", "put", "delete", "fetch", "patch", "ipatch").index(method.lower()) + 1
            szx = None if block_size is None else (16, 32, 64, 128, 256, 512, 1024).index(block_size)
            if not isinstance(path, (list, tuple)):  # a list: segments as they are ("/", "?")
                i = path.find("?")  # "/a/b?x=1&y": split at "?", "&" and "/"
                if i >= 0:
                    query = path[i + 1:]
                    path = path[:i]
                path = path[1:] if path[:1] == "/" else path
                path = path.split("/") if path else ()  # "/" alone: no Uri-Path (RFC 7252 6.5)
            if isinstance(query, str):
                query = query.split("&")
            if isinstance(etag, (bytes, bytearray)):
                etag = (etag,)
            opts = []
            for s in path:
                opts.append((_O_URI_PATH, s))
            for s in query or ():
                opts.append((_O_URI_QUERY, s))
            for s in etag or ():
                opts.append((_O_ETAG, s))
            for num, v in ((_O_CONTENT_FORMAT, content_format), (_O_ACCEPT, accept)):
                if v is not None:
                    opts.append((num, v + 0))  # a number (a str would pass as bytes)
            opts += options or ()
            encode(0, 0, 0, b"", opts)  # checks option numbers and values before anything goes
        except UsageError:
            raise
        except (AttributeError, TypeError, ValueError, IndexError):
            raise UsageError("bad method %r, path, payload, query, etag, block_size or options" % (method,))
        return self._exchange(Exchange(self, code, opts, payload, CON if confirmable else NON, timeout_ms,
                                       szx, self._clock()))

    def get(self, path, **kw):
        return self.request("get", path, **kw)

    def post(self, path, payload, **kw):
        return self.request("post", path, payload, **kw)

    def put(self, path, payload, **kw):
        return self.request("put", path, payload, **kw)

    def delete(self, path, **kw):
        return self.request("delete", path, **kw)

    def fetch(self, path, payload, **kw):
        return self.request("fetch", path, payload, **kw)

    def _step(self, x, data):
        """Feed Exchange x what a wait gave (None: nothing); the ms until its timer."""
        if data == b"":
            raise ConnectionClosed("DTLS closed")
        now = self._clock()
        if data is not None:
            x.receive(data, now)
        x.handle_timer(now)
        w = x.timer() - now
        return w if w > 0 else 0

    def _exchange(self, x):
        # The request's first message goes out through dtls.request(): on a continued
        # connection its server may have forgotten, that resumes or handshakes and sends the
        # same bytes again. Everything after is a plain send and the waits are recv(): once
        # the server answered, silence is loss, which CoAP retransmission handles (request()
        # on a continued connection not yet answered this wake resumes on silence, and would
        # take the answer to an earlier copy as an RTT sample of this one).
        d = self.dtls
        data = None
        while True:
            w = self._step(x, data)
            out, new = x.take()
            for m in out:
                d.send(m)
            if x.done:
                return x.result()
            data = d.request(new, w or 1) if new else d.recv(w) if w else None


class AsyncClient(Client):
    """Client over a connected dtls_lite.aio.AsyncDTLSClient: `r = await cc.get("/x")`.
    The same Exchange; only the waits are awaited."""

    async def _exchange(self, x):
        d = self.dtls
        data = None
        while True:
            w = self._step(x, data)
            out, new = x.take()
            for m in out:
                await d.send(m)
            if x.done:
                return x.result()
            data = (await d.request(new, w or 1)) if new else (await d.recv(w)) if w else None
