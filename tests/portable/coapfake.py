# A fake DTLS client for the CoAP tests (both runtimes): fake time in ms, the counter of
# reserve_counter(), and a scripted CoAP server called with every message the client sends.
# Nothing here is encrypted: it stands for DTLSClient's request/send/recv surface only.
from dtls_lite import coap

ACK, CON, NON, RST = coap.ACK, coap.CON, coap.NON, coap.RST


class Conn:
    """What coap.Client asks the DTLS connection: the largest record payload."""

    def __init__(self, size):
        self.max_data_size = size  # a property of dtls_lite.connection.Connection


class Link:
    """DTLSClient as coap.Client uses it. server(link, message) answers with link.reply();
    sent holds (now_ms, bytes, "request" or "send") of every datagram the client sent."""

    def __init__(self, server=None, counter=0x1234ABCD, mtu=None):
        self.now = 0
        self.counter = counter
        self.reserved = []  # every value reserve_counter() gave
        self.sent = []
        self.queue = []  # [at_ms, bytes] the client has yet to receive
        self.server = server
        if mtu is not None:
            self.conn = Conn(mtu)

    def clock(self):
        return self.now

    def reserve_counter(self, n=1):
        v = self.counter
        self.counter = (v + n) & 0xFFFFFFFF
        self.reserved.append(v)
        return v

    def reply(self, data, delay_ms=0):
        self.queue.append([self.now + delay_ms, data])

    def send(self, data, how="send"):
        self.sent.append((self.now, bytes(data), how))
        if self.server is not None:
            self.server(self, coap.decode(data))

    def request(self, data, timeout_ms):
        self.send(data, "request")
        return self.recv(timeout_ms)

    def recv(self, timeout_ms):
        q = self.queue
        if q:
            first = 0
            for i in range(len(q)):
                if q[i][0] < q[first][0]:
                    first = i
            at, data = q[first]
            if at <= self.now + timeout_ms:
                q.pop(first)
                if at > self.now:
                    self.now = at
                return data
        self.now += timeout_ms
        return None

    def messages(self):
        """The decoded messages the client sent."""
        return [coap.decode(s[1]) for s in self.sent]


class AsyncLink(Link):
    """Link with AsyncDTLSClient's awaitable request/send/recv (never suspends)."""

    async def send(self, data, how="send"):
        Link.send(self, data, how)

    async def request(self, data, timeout_ms):
        Link.send(self, data, "request")
        return Link.recv(self, timeout_ms)

    async def recv(self, timeout_ms):
        return Link.recv(self, timeout_ms)


def run(coro):
    """The value of a coroutine that never waits (an AsyncLink's), without an event loop."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.args[0] if e.args else None
    raise AssertionError("the coroutine waited")


def block(num, more, szx):
    return num << 4 | (8 if more else 0) | szx


def block_of(value):
    """(NUM, M, SZX) of a Block option value (bytes)."""
    v = int.from_bytes(value, "big")
    return v >> 4, v >> 3 & 1, v & 7


def answer(link, m, code, options=(), payload=b"", delay_ms=0):
    """The response to request m: piggybacked on the ACK of a CON, a NON to a NON."""
    mtype = ACK if m.type == CON else NON
    mid = m.mid if m.type == CON else (m.mid + 0x777) & 0xFFFF
    link.reply(coap.encode(mtype, code, mid, m.token, options, payload), delay_ms)


def block2_server(body, szx, etag=None, code=0x45):
    """A resource body served in blocks of 16 << szx (or smaller ones the client asks for)."""

    def handle(link, m):
        if m.type >= ACK:
            return
        num, want = 0, szx
        b2 = m.option(23)
        if b2 is not None:
            num, _, asked = block_of(b2)
            want = min(szx, asked)
        s = 16 << want
        more = (num + 1) * s < len(body)
        opts = [(23, block(num, more, want))]
        if etag is not None:
            opts.append((4, etag))
        answer(link, m, code, opts, body[num * s:(num + 1) * s])
    return handle


class Block1Server:
    """Takes a block-wise upload (2.31 Continue per block, 2.04 at the end); ask_szx: the
    block size it asks for in its 2.31 (RFC 7959 2.5), if smaller."""

    def __init__(self, ask_szx=None, final=0x44):
        self.body = bytearray()
        self.blocks = []  # (num, more, szx, len(payload)) as they arrived
        self.ask_szx = ask_szx
        self.final = final

    def __call__(self, link, m):
        if m.type >= ACK:
            return
        if m.option(27) is None:  # all in one message
            self.body.extend(m.payload)
            return answer(link, m, self.final, [], b"stored")
        num, more, szx = block_of(m.option(27))
        self.blocks.append((num, more, szx, len(m.payload)))
        assert num * (16 << szx) == len(self.body), (num, szx, len(self.body))
        self.body.extend(m.payload)
        if more:
            if self.ask_szx is not None and self.ask_szx < szx:
                szx = self.ask_szx
            answer(link, m, 0x5F, [(27, block(num, 1, szx))])
        else:
            answer(link, m, self.final, [(27, block(num, 0, szx))], b"stored")
