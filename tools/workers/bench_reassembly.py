# Reassembly benchmark worker (tools/bench.py, section reassembly): the same program on both
# runtimes, one JSON line out.
#   workers/bench_reassembly.py REPEATS
# The server's ServerKeyExchange, made 1, 2 or 4 KB long by its PSK identity hint, reaches the
# client in 1-byte or 64-byte fragments, packed into datagrams of at most ~1.3 KB, in order or
# in reverse order. Measured: microseconds per fragment through Connection.receive() (records,
# window, buffer, delivery) and through reassembly.Reassembly alone (best of REPEATS runs), and
# on MicroPython the heap allocated per fragment.
import gc
import json
import sys

sys.path.insert(1, sys.path[0] + "/..")  # tools/
from runtime import ROOT, ticks_diff, ticks_us  # noqa: E402  (also puts the repo root on sys.path)

sys.path.insert(0, ROOT + "/tests/portable")
from dtls_lite import connection as cn  # noqa: E402
from dtls_lite import handshake as hs  # noqa: E402
from dtls_lite import reassembly  # noqa: E402
from fakeserver import IDENTITY, PSK, FakeServer, Rng  # noqa: E402

REPEATS = int(sys.argv[1])


def ske_fragments(size, frag):
    # the client after the ServerHello, and the 12-byte-header fragments of a size-byte SKE
    c = cn.Connection(IDENTITY, PSK, rng=Rng(3), max_handshake_size=8192)
    srv = FakeServer(cookie=None, hint=b"h" * (size - 2))
    c.connect(0)
    flight = srv.handle(c.datagrams_to_send()[0])
    c.receive(flight[0], 1)
    msg = srv.flight[1][2]
    t, length, mseq = msg[0], size, (msg[4] << 8) | msg[5]
    out = []
    for off in range(0, size, frag):
        body = msg[12 + off:12 + off + frag]
        out.append(hs.push_header(t, length, mseq, off, len(body)) + body)
    return c, srv, out


def best(xs):
    # the minimum: on a shared machine every disturbance only adds time
    return min(xs)


try:
    from micropython import mem_total
except ImportError:
    mem_total = None


def via_connection(size, frag, reverse):
    runs = []
    for _ in range(REPEATS):
        c, srv, frags = ske_fragments(size, frag)
        if reverse:
            frags = frags[::-1]
        per = max(1, 1300 // len(frags[0]))
        datagrams = [srv.write0.protect(22, b"".join(frags[i:i + per])) for i in range(0, len(frags), per)]
        gc.collect()
        t = ticks_us()
        for d in datagrams:
            c.receive(d, 2)
        runs.append(ticks_diff(ticks_us(), t) / len(frags))
        assert c.state == cn.ST_WAIT_SERVER_HELLO_DONE, c.state
    return best(runs)


def alone(size, frag, reverse):
    runs = []
    for _ in range(REPEATS):
        _, _, frags = ske_fragments(size, frag)
        if reverse:
            frags = frags[::-1]
        n = len(frags)
        mseq = hs.pull_header(frags[0], 0)[2]
        blob = memoryview(b"".join(frags))  # one object: 4,096 live ones would slow each GC
        frags = None
        r = reassembly.Reassembly()
        gc.collect()
        a = mem_total() if mem_total else 0
        t = ticks_us()
        off = 0
        for _ in range(n):
            f = hs.pull_header(blob, off)
            end = off + 12 + f[4]
            r.add(f, blob[off:end], 0, 8192)
            off = end
        got = r.pop(mseq)
        runs.append(ticks_diff(ticks_us(), t) / n)
        if mem_total:
            key = "%s_%dB_from_%dB_alloc_bytes_per_fragment" % (
                "reverse" if reverse else "in_order", size, frag)
            ALLOC[key] = (mem_total() - a) / n
        assert got is not None and len(got[0]) == size + 12
    return best(runs)


ALLOC = {}


if sys.implementation.name == "micropython":
    # touch every page of the heap once: first-touch page faults of the unix port's heap
    # would otherwise be charged to whichever run first reaches new memory
    junk = []
    try:
        while True:
            junk.append(bytearray(32768))
    except MemoryError:
        junk = None
    gc.collect()
out = {"runtime": sys.implementation.name}
for name, fn in (("connection", via_connection), ("reassembly", alone)):
    res = {}
    for order in ("in_order", "reverse"):
        for size, frag in ((1024, 1), (2048, 1), (4096, 1), (4096, 64)):
            res["%s_%dB_from_%dB_us_per_fragment" % (order, size, frag)] = fn(size, frag, order == "reverse")
    out[name] = res
if ALLOC:
    out["reassembly_alloc"] = ALLOC
print(json.dumps(out))
