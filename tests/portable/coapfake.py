# A fake DTLS client for the CoAP tests (both runtimes): fake time in ms, the counter of
# reserve_counter(), and a scripted CoAP server called with every message the client sends.
# Nothing there is encrypted: Link stands for DTLSClient's request/send/recv surface only.
# Server is the real thing's counterpart: fakeserver.FakeServer (DTLS) behind loopback UDP in
# a thread, the same scripted CoAP servers inside its records.
import os

from dtls_lite import coap
from udp import bound, sleep_ms as _sleep_ms  # noqa: F401 (bound: test_coap_client's)

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

    def __init__(self, ask_szx=None, final=0x44, bare=False):
        self.body = bytearray()
        self.blocks = []  # (num, more, szx, len(payload)) as they arrived
        self.ask_szx = ask_szx
        self.final = final
        self.bare = bare  # 2.31 without Block1 after the first block (libcoap 4.3's coap-server)

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
            answer(link, m, 0x5F, [] if self.bare and num else [(27, block(num, 1, szx))])
        else:
            answer(link, m, self.final, [(27, block(num, 0, szx))], b"stored")


class Replies:
    """The servers above answer through link.reply(); Server collects the answers here."""

    def __init__(self):
        self.out = []

    def reply(self, data, delay_ms=0):
        self.out.append(data)


class Server:
    """FakeServer over loopback UDP in a thread; handler(replies, message) answers each CoAP
    message the client sends (drop_app: lose the next so many first; drop: the indexes in
    app_data of those to lose). restart() forgets every connection and session (a server
    process restarted)."""

    def __init__(self, handler):
        self.handler = handler
        self.sock, self.port = bound()
        self.sock.settimeout(0.02)
        self.restart()
        self.drop_app = 0
        self.drop = ()
        self.app_data = []  # every CoAP message that arrived, as bytes
        self.done = self.stopped = False
        import _thread  # Server's imports: only tests/portable/test_coap_client.py needs them
        _thread.start_new_thread(self._serve, ())

    def restart(self):
        from fakeserver import FakeServer
        self.srv = FakeServer(cookie=b"", session_id=os.urandom(32))

    def _serve(self):
        try:
            while not self.done:
                try:
                    data, addr = self.sock.recvfrom(2048)
                except OSError:
                    continue
                srv = self.srv
                n = len(srv.received)
                answer = srv.handle(data)
                out = [b"".join(answer)] if answer else []
                for ctype, plain in srv.received[n:]:
                    if ctype != 23:  # application_data (RFC 5246 6.2.1)
                        continue
                    self.app_data.append(plain)
                    if self.drop_app or len(self.app_data) - 1 in self.drop:
                        self.drop_app -= self.drop_app > 0
                        continue
                    r = Replies()
                    self.handler(r, coap.decode(plain))
                    out += [srv.app(d) for d in r.out]
                for d in out:
                    self.sock.sendto(d, addr)
        finally:
            self.stopped = True

    def close(self):
        self.done = True
        for _ in range(100):
            if self.stopped:
                break
            _sleep_ms(10)
        self.sock.close()
