# One DTLS client run with Connection ID options, on MicroPython or CPython, reporting one JSON
# line on stdout (as tools/run_client.py does). It drives the sans-I/O Connection over its own
# UDP sockets, so one connection can move to a new local address and port mid-way (what a NAT
# rebinding or a node waking elsewhere looks like to the server). Used by tests/test_cid_interop.py.
#
#   micropython tools/cid_client.py HOST PORT IDENTITY PSK_HEX [options]
#   options: --cid HEX|empty|off  (the CID we offer; default: the library's, empty)
#            --suite HEX  --bind HOST:PORT  --reply-ms N  --timeout-ms N  --retransmits N
#            --send TEXT  (repeatable, in order with --move; each waits for one reply)
#            --move HOST:PORT  (close the socket, go on from a new one bound there; port 0: any)
#            --expect-close  (after the exchanges, wait for the server's close_notify)
#            --resume TEXT  (then a second connection from a new socket resuming the session,
#                            RFC 5246 7.3, with the same CID offer; send TEXT, wait for a reply)
import json
import socket
import sys

from runtime import ticks_diff, ticks_us  # noqa: E402  (also puts the repo root on sys.path)

from dtls_lite import connection as cn  # noqa: E402
from dtls_lite.client import resolve  # noqa: E402
from dtls_lite.errors import ConnectionClosed  # noqa: E402
from dtls_lite.record import suite_name  # noqa: E402


def parse(argv):
    if len(argv) < 4:
        raise SystemExit("usage: cid_client.py HOST PORT IDENTITY PSK_HEX [options]")
    o = {"host": argv[0], "port": int(argv[1]), "identity": argv[2].encode(), "psk": bytes.fromhex(argv[3]),
         "suites": [], "steps": [], "bind": None, "options": {}, "reply_ms": 3000, "expect_close": False}
    i = 4
    while i < len(argv):
        a = argv[i]
        v = argv[i + 1] if i + 1 < len(argv) else None
        i += 2
        if a == "--cid":
            o["options"]["cid"] = None if v == "off" else b"" if v == "empty" else bytes.fromhex(v)
        elif a == "--suite":
            o["suites"].append(int(v, 16))
        elif a == "--bind":
            o["bind"] = host_port(v)
        elif a == "--send":
            o["steps"].append(("send", v.encode()))
        elif a == "--move":
            o["steps"].append(("move", host_port(v)))
        elif a == "--reply-ms":
            o["reply_ms"] = int(v)
        elif a == "--timeout-ms":
            o["options"]["initial_timeout_ms"] = int(v)
        elif a == "--retransmits":
            o["options"]["max_retransmits"] = int(v)
        elif a == "--resume":
            o["resume"] = v.encode()
        elif a == "--expect-close":
            o["expect_close"] = True
            i -= 1
        else:
            raise SystemExit("unknown option " + a)
    if o["suites"]:
        o["options"]["suites"] = o["suites"]
    return o


def host_port(v):
    h, p = v.rsplit(":", 1)
    return h.strip("[]"), int(p)


class Link:
    """The connection plus the socket it currently uses; time in ms since start."""

    def __init__(self, conn, server, family):
        self.conn = conn
        self.server = server
        self.family = family
        self.sock = None
        self.t0 = ticks_us()
        self.rx = []
        self.moves = 0

    def now(self):
        return ticks_diff(ticks_us(), self.t0) // 1000

    def open(self, bind):
        if self.sock is not None:
            self.sock.close()
            self.moves += 1
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        if bind is not None:
            self.sock.bind(resolve(bind[0], bind[1])[1])
        self.sock.connect(self.server)

    def transmit(self):
        for d in self.conn.datagrams_to_send():
            self.sock.send(d)

    def pump(self, deadline):
        """Send what is queued, wait for one datagram (until the timer or deadline), handle it."""
        self.transmit()
        wake = self.conn.timer()
        if wake is None or deadline < wake:
            wake = deadline
        self.sock.settimeout(max(wake - self.now(), 1) / 1000)
        try:
            data = self.sock.recv(2048)
        except OSError:  # timeout (or ICMP unreachable): the timer decides
            data = None
        if data is not None:
            self.conn.receive(data, self.now())
            self.transmit()
        self.conn.handle_timer(self.now())
        self.transmit()
        while True:
            ev = self.conn.next_event()
            if ev is None:
                break
            if ev[0] == cn.EVENT_DATA:
                self.rx.append(ev[1])

    def wait(self, ms):
        """Next application payload, None on timeout, b"" once the connection closed."""
        deadline = self.now() + ms
        while not self.rx and self.conn.state != cn.ST_CLOSED and self.now() < deadline:
            self.pump(deadline)
        if self.rx:
            return self.rx.pop(0)
        return b"" if self.conn.state == cn.ST_CLOSED else None


def handshake(link):
    c = link.conn
    c.connect(link.now())
    while c.state != cn.ST_CONNECTED:
        if c.state == cn.ST_CLOSED:
            raise c.error or ConnectionClosed("closed during the handshake")
        link.pump(link.now() + 60000)


def resume(o, link, result):
    """A second connection on a new socket, resuming the first one's session."""
    session = link.conn.session
    link.conn = cn.Connection(o["identity"], o["psk"], session=session, **o["options"])
    link.open(None)
    handshake(link)
    c = link.conn
    link.conn.send(o["resume"])
    reply = link.wait(o["reply_ms"])
    result["resumed"] = {"kind": c.stats.handshake_kind, "write_cid": c.write_cid.hex(),
                         "read_cid": c.read_cid.hex(), "received": None if reply is None else reply.decode()}
    c.close()
    link.transmit()


def run(o):
    result = {"runtime": sys.implementation.name, "received": [], "moves": 0}
    link = None
    try:
        family, server = resolve(o["host"], o["port"])
        link = Link(cn.Connection(o["identity"], o["psk"], **o["options"]), server, family)
        link.open(o["bind"])
        handshake(link)
        c = link.conn
        result["suite"] = suite_name(c.suite)
        result["write_cid"] = c.write_cid.hex()
        result["read_cid"] = c.read_cid.hex()
        for kind, v in o["steps"]:
            if kind == "move":
                link.open(v)
                continue
            c.send(v)
            reply = link.wait(o["reply_ms"])
            result["received"].append(None if reply is None else reply.decode())
        if o["expect_close"]:
            result["peer_closed"] = link.wait(o["reply_ms"]) == b""
        c.close()
        link.transmit()
        if "resume" in o:
            resume(o, link, result)
        result["ok"] = True
    except Exception as e:  # reported, not raised: the caller checks the error type and text
        result["ok"] = False
        result["error"] = type(e).__name__
        result["message"] = str(e)
    if link is not None:
        result["moves"] = link.moves
        result["stats"] = link.conn.stats.as_dict()
        if link.sock is not None:
            link.sock.close()
    return result


if __name__ == "__main__":
    print(json.dumps(run(parse(sys.argv[1:]))))
