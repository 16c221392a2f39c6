"""A CoAP server over DTLS (coaps, RFC 7252 9) on aiocoap's `tinydtls_server` transport: the
aiocoap + tinydtls peer of the tests (tests/peers.py aiocoap_server, issue 17).

    .peers/coapvenv/bin/python tools/coap_server.py PORT [--host 127.0.0.1]
        [--psk HEX] [--identity ID] [--big N] [--no-dedup]

`make peers` (tools/install_peers.sh) makes .peers/coapvenv with the pinned aiocoap and
DTLSSocket (tools/coap-server-requirements.txt); DTLSSocket builds tinydtls from source.

PORT is the DTLS port clients talk to. aiocoap's tinydtls_server transport binds the port it is
given plus 1 (its default port is COAPS_PORT 5684 = COAP_PORT 5683 + 1, and an explicit port is
shifted by the same difference): this script passes PORT - 1, so the one socket it opens is
PORT. Only that transport runs (no plain CoAP socket). Loopback addresses only.

Resources (all answer piggybacked in the ACK of a CON request):
  POST /echo      2.05 Content, the request's payload back (the deduplication hazard shows here:
                  a repeated message ID from the same address gets the cached answer)
  PUT  /store     2.04 Changed, keeps the payload;  GET /store: 2.05 with what was stored
  GET  /big       2.05, BIG bytes (default 3000: Block2, RFC 7959) of a fixed pattern
  GET  /count     2.05, how many requests the resources have handled so far (decimal text):
                  a deduplicated request is answered from the cache and does not count
  GET  /.well-known/core   the links
Each handled request prints a line "request METHOD /path mid=N token=HEX from HOST:PORT
len=N payload=REPR" (a deduplicated retransmission prints none: aiocoap answers it below the
resources). Ready line: "coap_server: ready on HOST:PORT (tinydtls_server)". SIGTERM or SIGINT
ends it (exit 0).

Message deduplication (RFC 7252 4.5) stays ON, as in aiocoap by default: it is what the tests
look at. `--no-dedup` turns it off (for comparisons only). aiocoap keys it by (remote, message
ID) for EXCHANGE_LIFETIME (247 s), and the remote is the per-address DTLS object, which a new
ClientHello from the same address and port keeps: so the same MID from the same address is
deduplicated even across a new full handshake; a new address is a new remote.
"""
import argparse
import asyncio
import os
import signal
import sys

# One server per port: aiocoap sets SO_REUSEPORT by default, which would let a second server
# (or a restarted one whose predecessor still runs) share the port silently.
os.environ.setdefault("AIOCOAP_REUSE_PORT", "0")

import aiocoap  # noqa: E402
import aiocoap.resource as resource  # noqa: E402
from aiocoap.credentials import DTLS, CredentialsMap  # noqa: E402

LOOPBACK_V4 = "127."
COAP_TO_COAPS = 1  # aiocoap.numbers: COAPS_PORT - COAP_PORT


def say(*a):
    print(*a)
    sys.stdout.flush()


class Counter:
    def __init__(self):
        self.n = 0


def log_request(path, req, counter):
    counter.n += 1
    remote = req.remote.hostinfo if req.remote is not None else "?"
    say("request %s /%s mid=%d token=%s from %s len=%d payload=%r"
        % (req.code.name, path, req.mid, req.token.hex(), remote, len(req.payload), bytes(req.payload[:64])))


class Echo(resource.Resource):
    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    async def render_post(self, req):
        log_request("echo", req, self.counter)
        return aiocoap.Message(code=aiocoap.CONTENT, payload=req.payload)


class Store(resource.Resource):
    def __init__(self, counter):
        super().__init__()
        self.counter = counter
        self.value = b""

    async def render_put(self, req):
        log_request("store", req, self.counter)
        self.value = req.payload
        return aiocoap.Message(code=aiocoap.CHANGED)

    async def render_get(self, req):
        log_request("store", req, self.counter)
        return aiocoap.Message(code=aiocoap.CONTENT, payload=self.value)


class Big(resource.Resource):
    def __init__(self, counter, size):
        super().__init__()
        self.counter = counter
        self.body = big_body(size)

    async def render_get(self, req):
        log_request("big", req, self.counter)
        return aiocoap.Message(code=aiocoap.CONTENT, payload=self.body)


class Count(resource.Resource):
    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    async def render_get(self, req):
        n = self.counter.n  # this request itself not included
        log_request("count", req, self.counter)
        return aiocoap.Message(code=aiocoap.CONTENT, payload=str(n).encode())


def big_body(size):
    """The /big payload: lines "0000 abcdefghijklmnopqrstuvwxyz\\n" (32 bytes each), cut."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += b"%04d abcdefghijklmnopqrstuvwxyz\n" % i
        i += 1
    return bytes(out[:size])


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("port", type=int, help="the DTLS (coaps) port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--psk", default="73656372657450534b", help="PSK, hex")
    p.add_argument("--identity", default="Client_identity")
    p.add_argument("--big", type=int, default=3000, help="size of /big in bytes")
    p.add_argument("--no-dedup", action="store_true", help="turn message deduplication off")
    o = p.parse_args(argv)
    if not (o.host.startswith(LOOPBACK_V4) or o.host == "::1"):
        p.error("loopback addresses only (127.0.0.0/8 or ::1), not %r" % o.host)
    if not 1 < o.port < 65536:
        p.error("port out of range")
    return o


async def serve(o):
    counter = Counter()
    root = resource.Site()
    root.add_resource([".well-known", "core"],
                      resource.WKCResource(root.get_resources_as_linkheader))
    root.add_resource(["echo"], Echo(counter))
    root.add_resource(["store"], Store(counter))
    root.add_resource(["big"], Big(counter, o.big))
    root.add_resource(["count"], Count(counter))

    creds = CredentialsMap()
    creds[":client"] = DTLS(psk=bytes.fromhex(o.psk), client_identity=o.identity.encode())

    ctx = await aiocoap.Context.create_server_context(
        root, bind=(o.host, o.port - COAP_TO_COAPS), transports=["tinydtls_server"],
        server_credentials=creds)
    if o.no_dedup:  # ctx -> TokenManager -> MessageManager (aiocoap 0.4.17's layering)
        managers = [t.token_interface for t in ctx.request_interfaces
                    if hasattr(t.token_interface, "_deduplicate_message")]
        if not managers:
            raise SystemExit("coap_server: --no-dedup: no MessageManager found in this aiocoap")
        for mm in managers:
            mm._deduplicate_message = lambda message: False
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    say("coap_server: aiocoap %s, DTLSSocket %s, deduplication %s"
        % (aiocoap.meta.version, dtlssocket_version(), "off" if o.no_dedup else "on"))
    say("coap_server: ready on %s:%d (tinydtls_server)" % (o.host, o.port))
    await stop.wait()
    say("coap_server: stopping")
    await ctx.shutdown()


def dtlssocket_version():
    try:
        from importlib.metadata import version
        return version("DTLSSocket")
    except Exception:  # pragma: no cover - metadata missing
        return "?"


def main(argv=None):
    o = parse(sys.argv[1:] if argv is None else argv)
    asyncio.run(serve(o))
    return 0


if __name__ == "__main__":
    sys.exit(main())
