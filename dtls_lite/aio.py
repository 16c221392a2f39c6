# The asyncio client: dtls_lite.client's Driver (wake policy, keeper, request()'s steps, the
# pump) with waits that let other tasks run. Nothing here decides anything: this module is
# only how to wait for a datagram or a timer without blocking the event loop, on CPython's
# asyncio and MicroPython's (1.17 or newer; tested on 1.25 and 1.29).
#
# The wait, without a polling loop:
# - CPython: the socket is non-blocking and loop.sock_recv_into() waits on the loop's selector.
# - MicroPython: asyncio.StreamReader over the non-blocking socket; its readinto() parks the
#   task in asyncio's poller (select.poll of the loop, woken by POLLIN) and then calls the
#   socket's readinto(), which takes every datagram queued, as DTLSClient's does.
# Both bound a wait with wait_for (the connection's next timer, the caller's timeout): on
# MicroPython that is a Task, a runner coroutine and a sleep per wait: about 1.1 KB of garbage
# per request on the 32-bit port (3.3 KB for the whole request with the blocking client, 4.4
# with this one), never a busy loop; a timeout cancels the read, which takes the socket out of
# the poller. Sending never waits: UDP send on a non-blocking socket either queues the
# datagram or fails with EAGAIN, counted as a loss (the timers resend).
#
# One task at a time uses a client (a second one waiting on the same socket is a UsageError).
# A task cancelled inside connect(), request(), send() or recv() leaves the client usable:
# sequence numbers are taken when a record is built, never given back, so no nonce is used
# twice; a handshake it interrupted is finished by the next call.
try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from dtls_lite import client as cl
from dtls_lite.errors import UsageError


class AsyncDTLSClient(cl.Driver):
    """DTLSClient for asyncio: the same constructor arguments (but connect=: this one connects
    in `await c.connect()` or `async with`), the same wake policy, stores and reservation.

    async with AsyncDTLSClient("127.0.0.1", 5684, b"Client_identity", psk, store=s) as c:
        reply = await c.request(b"hello", 2000)
        c.suspend()
    The host is resolved in the constructor (getaddrinfo blocks: pass an address).
    """

    def __init__(self, host, port, identity, psk, **kwargs):
        self._waiting = False
        kwargs["connect"] = False  # connect() is a coroutine: `await c.connect()`, `async with`
        cl.Driver.__init__(self, host, port, identity, psk, **kwargs)
        # not DTLSClient's wait (a poll object of its own on MicroPython): asyncio's
        self._stream = None
        try:
            if self._poll is not None:
                self._poll.unregister(self._sock)
                self._poll = None
            self._sock.setblocking(False)
            if self._recv_into is None:  # MicroPython
                if not hasattr(asyncio.StreamReader, "readinto"):
                    raise UsageError("AsyncDTLSClient needs MicroPython 1.17 or newer (Stream.readinto)")
                self._stream = asyncio.StreamReader(self._sock)
        except BaseException:
            self._sock.close()
            raise

    async def connect(self):
        """Continue, resume or handshake as the wake policy says (DTLSClient.connect())."""
        if self.conn.handshake_in_flight:  # a connect() cancelled mid-handshake
            await self._handshake_wait()
        elif self._start():
            await self._handshake_wait()

    async def request(self, data, timeout_ms=2000):
        """DTLSClient.request(): one record, one reply (None on timeout, b"" once closed), the
        adaptive wait and the fallback of a continued connection."""
        if self.conn.handshake_in_flight:  # the fallback of a cancelled request()
            await self._handshake_wait()
        done, arg = self._exchange(data, timeout_ms)
        while not done:
            if done is False:
                done, arg = self._step(await self.recv(arg))
            else:
                await self._handshake_wait()
                done, arg = self._step(None)
        return arg

    async def send(self, data):
        if self.conn.handshake_in_flight:
            await self._handshake_wait()
        cl.Driver.send(self, data)

    async def recv(self, timeout_ms=None):
        """Next application payload; None on timeout; b"" once the server closed cleanly."""
        deadline = None if timeout_ms is None else self._clock.now() + timeout_ms
        while True:
            r = self._take(deadline)
            if not isinstance(r, int):
                return r
            await self._pump(r)

    async def close(self):
        """close_notify and close (DTLSClient.close())."""
        cl.Driver.close(self)

    async def __aenter__(self):
        if self.wake_action is None:
            try:
                await self.connect()
            except BaseException:  # no __aexit__ follows: let the socket go (DTLSClient does)
                self.suspend()  # saves nothing of a failed or interrupted handshake
                raise
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # ---- the wait --------------------------------------------------------------------------

    async def _handshake_wait(self):
        while self._handshaking():
            await self._pump(self._take(None))  # no payload comes before Finished

    async def _pump(self, ms):
        """Wait up to ms (-1: no bound) for a datagram, then handle it, the timers, the events."""
        if self._waiting:
            raise UsageError("another task is waiting on this client")
        self._waiting = True
        try:
            data = await self._recv(ms)
        finally:
            self._waiting = False
        self._receive(data)

    async def _recv(self, ms):
        """Received bytes (a memoryview of the buffer), or None after ms (-1: no bound)."""
        try:
            if self._stream is not None:
                rd = self._stream.readinto(self._buf)
                n = await (rd if ms < 0 else asyncio.wait_for_ms(rd, ms))
                return self._view[:n] if n else None
            rd = asyncio.get_event_loop().sock_recv_into(self._sock, self._buf)
            return self._view[:await (rd if ms < 0 else asyncio.wait_for(rd, ms / 1000))]
        except asyncio.TimeoutError:
            return None
        except OSError as e:
            # ICMP port unreachable (ECONNREFUSED, Linux and lwIP alike), unauthenticated:
            # counted, as a timeout; EAGAIN: woken with nothing queued
            if e.args and e.args[0] == 111:
                self.port_unreachable += 1
            elif not e.args or e.args[0] != 11:
                raise
        return None
