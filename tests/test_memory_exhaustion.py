"""MemoryError anywhere inside receive() never leaves the client half-updated (issue 7, item 2).

A script on the MicroPython unix port (small -X heapsize) runs full handshakes, with cookie
exchange and identity hint, against the scripted FakeServer. Before the client handles each
server datagram, a ballast fills the heap until only FREE bytes are left; it is freed again
right after receive() returns. Each run leaves more room than the one before (FREE grows by
STEP), so MemoryError strikes at a different allocation of the client each time, until the
heap is large enough for everything. After the first MemoryError of a run the ballast stays
off and the server retransmits its last flight.

Every run must end connected (the datagram was dropped, the retransmission completed the
handshake, the server verified our Finished, the application record arrived); receive() must
never raise, and no run may end closed or stuck. The distinct failure points (the client's
innermost frame at each MemoryError) are counted and reported; the test requires at least
MIN_POINTS of them (README's figure), so a change that stops the ballast from biting fails
here rather than passing vacuously.
"""
import json
import os
import subprocess

from support import runtimes as rt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAP = "1m"
STEP = 40  # bytes of extra room per run
# Distinct failure points the sweep must reach, the figure README gives: 40 were measured at
# commit 24d7f9d (415 runs, every one connected), 39 with the handshake split out of
# connection.py. The points are file, line and function, so any change of the client moves a
# few; a ballast that stops biting loses nearly all. Re-measure with `pytest -s`.
MIN_POINTS = 35

_SCRIPT = r"""
import gc, io, json, sys
ROOT = %(root)r
sys.path[:0] = [ROOT + "/tests/portable", ROOT + "/tests", ROOT]
from dtls_lite import connection as cn
from dtls_lite.errors import DTLSError
from fakeserver import IDENTITY, PSK, FakeServer, Rng

SLOT = [None]  # the MemoryError caught inside the client (stored without allocating)
BALLAST = [None]  # a chain of tuples: a growing list would itself need ever larger blocks


class Probe(cn.Connection):
    def _on_datagram(self, datagram):
        try:
            cn.Connection._on_datagram(self, datagram)
        except MemoryError as e:
            SLOT[0] = e
            raise


def fill(free):
    # Everything but one block of free bytes: reserve it, fill the rest of the heap to the
    # last 16-byte cell, then let the reserved block go.
    gc.collect()
    spare = bytearray(free) if free else None
    size = 16384
    while size >= 32:
        try:
            while True:
                BALLAST[0] = (BALLAST[0], bytearray(size - 32))
        except MemoryError:
            pass
        size //= 2
    try:
        while True:
            BALLAST[0] = (BALLAST[0],)
    except MemoryError:
        pass
    spare = None
    gc.collect()


def release():
    BALLAST[0] = None
    gc.collect()


def where(e):
    # The innermost frame of the client at the MemoryError (outer frames may be missing when
    # the heap is too full to record them all).
    buf = io.StringIO()
    sys.print_exception(e, buf)
    lines = [l.strip() for l in buf.getvalue().split("\n") if "dtls_lite" in l]
    return lines[-1][lines[-1].find("dtls_lite"):] if lines else "(no traceback)"


def run(free, target):
    # One handshake and one application record; the ballast is on only while the client
    # handles the target-th server datagram, until the first MemoryError.
    c = Probe(IDENTITY, PSK, rng=Rng(3))
    srv = FakeServer(hint=b"hint")
    c.connect(0)
    out = c.datagrams_to_send()
    hit = None
    data = []
    for step in range(12):
        if c.state == cn.ST_CONNECTED:
            datagram = srv.app(b"ping")  # a lost record is the application's to resend
        else:
            answer = []
            for d in out:
                answer += srv.handle(d)
            if not out:
                answer = srv.records()  # our answer never came: the server retransmits
            datagram = b"".join(answer)
        oom = c.oom_drops
        if hit is None and step == target:
            fill(free)
        try:
            c.receive(datagram, step)
        except BaseException as e:
            release()
            return {"outcome": "raised", "error": repr(e), "at": where(e), "hit": hit}
        release()
        if c.oom_drops != oom:
            hit = where(SLOT[0]) if SLOT[0] is not None else "receive() outside _on_datagram"
        SLOT[0] = None
        out = c.datagrams_to_send()
        while True:
            ev = c.next_event()
            if ev is None:
                break
            if ev[0] == cn.EVENT_DATA:
                data.append(ev[1])
        if data:
            ok = c.state == cn.ST_CONNECTED and srv.client_finished_ok is True and data == [b"ping"]
            return {"outcome": "connected" if ok else "wrong", "hit": hit}
        if c.state == cn.ST_CLOSED:
            return {"outcome": "closed", "dtls_error": isinstance(c.error, DTLSError),
                    "error": repr(c.error), "hit": hit}
    return {"outcome": "stuck", "state": c.state, "hit": hit}


# server datagrams: 0 HelloVerifyRequest, 1 ServerHello..ServerHelloDone, 2 CCS + Finished,
# 3 application data; sweep each until the heap holds everything it needs
results = []
for target in range(4):
    free = 0
    clean = 0
    for i in range(%(runs)d):
        r = run(free, target)
        r["free"] = free
        r["target"] = target
        results.append(r)
        clean = clean + 1 if r["hit"] is None else 0
        if clean >= 3:
            break
        free += %(step)d
print(json.dumps(results))
"""


def test_memory_error_anywhere_in_receive():
    micropython = rt.executable("micropython")
    script = _SCRIPT % {"root": ROOT, "runs": 2000, "step": STEP}
    p = subprocess.run([micropython, "-X", "heapsize=" + HEAP, "-c", script], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    results = json.loads(p.stdout.strip().splitlines()[-1])
    hits = [r for r in results if r["hit"] is not None]
    points = sorted(set(r["hit"] for r in hits))
    recovered = [r for r in hits if r["outcome"] == "connected"]
    top = [max(r["free"] for r in results if r["target"] == t) for t in range(4)]
    print("\nmemory exhaustion: %d runs (heap %s, free 0..%s B for server datagrams 0..3),"
          " %d hit by MemoryError at %d distinct points; %d completed after the retransmission"
          % (len(results), HEAP, "/".join(str(t) for t in top), len(hits), len(points),
             len(recovered)))
    for pt in points:
        print("  " + pt)
    bad = [r for r in results if r["outcome"] != "connected"]
    assert not bad, "%d of %d runs did not complete: %s" % (len(bad), len(results), bad[:5])
    assert len(points) >= MIN_POINTS, points
    assert results[-1]["outcome"] == "connected" and results[-1]["hit"] is None
