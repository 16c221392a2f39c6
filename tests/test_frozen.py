"""dtls_lite frozen into a 32-bit MicroPython firmware, as a device ships it: the bytecode stays
in the binary (flash on a board), so importing it costs little heap.

The firmware is the 32-bit 1.25 unix port (tools/build_mp32.sh --manifest) with the repo's
manifest.py frozen in, node="unix": dtls_lite without the desktop command line, ports/node.py,
ports/unix/unixboard.py and ports/esp32/rtcstore.py. The test builds it into
.peers/bin/micropython32-frozen; make keeps the build in .peers/mp32/ and redoes only what a
changed source needs (~1 s; ~30 s from nothing, with the 32-bit sources and Mbed TLS that
`make peers` leaves there). A firmware that cannot be built FAILS these tests (never skips).

- with nothing but the frozen modules on sys.path, a node imports what a wake needs in
  IMPORT_FROZEN_MAX bytes of heap;
- a node wake (ports/node.py with the unix board: handshake, one reading echoed, state saved in
  the RTC file and the session file) and then, in a new process, a continued wake (no
  handshake) against pion both fit HEAP_FROZEN bytes of heap; the same wake with far too
  little heap fails with MemoryError, so the heap limit is real.
"""
import fcntl
import json
import os
import re
import subprocess
import time

import pytest

import peers

import footprint  # tools/ (on sys.path: tests/conftest.py): the one copy of the build steps

ROOT = peers.ROOT
pytestmark = pytest.mark.xdist_group("frozen")  # one firmware build per test process

# Regression bounds measured on this firmware (tree of 2026-11-29, after the rare-path cuts):
# the two wakes worked at every heap from 33 KB to 46 KB (1 KB steps, 3 runs each) and failed
# at 32 KB and below (the client's 2 KB receive buffer does not fit the fragmented heap); the
# heap in use after the imports of _WAKE was 15.4 KB (tools/footprint.py --heap, without the
# script's own objects: 14.1 KB). HEAP_FROZEN is the smallest working heap plus 5 KB; an
# ESP32 starts with ~56 KB (DESIGN.md 5).
HEAP_FROZEN = "38k"
IMPORT_FROZEN_MAX = 17 * 1024
HEAP_TOO_SMALL = "16k"

_STATE = {}


def firmware():
    """Path of the frozen firmware, brought up to date once per test session (make redoes
    only what changed); pytest.fail (never skip) if it cannot be built."""
    if "path" not in _STATE:
        os.makedirs(peers.PEERS_BIN, exist_ok=True)
        # one build at a time in .peers/mp32, also across test processes running side by side
        with open(os.path.join(peers.PEERS_BIN, ".frozen-build.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _STATE["path"], _STATE["build_s"], _ = footprint.build_frozen()
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                pytest.fail("building the frozen firmware failed: %s" % e, pytrace=False)
    return _STATE["path"]


# One wake as ports/unix/main.py runs it, with only the frozen modules importable. It first
# imports what a wake imports and prints the heap in use, then runs the wake: node.run()
# prints the report (one JSON line) and "deep sleeps" (the process exits 0).
_WAKE = """
import sys, gc
sys.path[:] = ['.frozen']
import node
from unixboard import UnixBoard
import dtls_lite.client, dtls_lite.store, dtls_lite.state
gc.collect()
print('imported', gc.mem_alloc(), dtls_lite.client.__file__, node.__file__)
class cfg:
    pass
for k, v in %r:
    setattr(cfg, k, v)
node.run(cfg, UnixBoard(cfg, sleep=False))
"""


def _wake(fw, heap, srv, tmp):
    values = [("SERVER_HOST", srv.host), ("SERVER_PORT", srv.port), ("IDENTITY", srv.identity),
              ("PSK_HEX", srv.psk_hex), ("NODE_NAME", "frozen"), ("BIND_HOST", "127.0.0.1"),
              ("SLEEP_MS", 0), ("REPLY_TIMEOUT_MS", 2000), ("INITIAL_TIMEOUT_MS", 500),
              ("MAX_RETRANSMITS", 3), ("RTC_FILE", os.path.join(tmp, "rtc.bin")),
              ("SESSION_FILE", os.path.join(tmp, "session.bin")), ("WIFI_DOWN_FILE", None)]
    p = subprocess.run([fw, "-X", "heapsize=" + heap, "-c", _WAKE % (values,)], cwd=tmp,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    reports = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    return p.returncode, (reports[0] if len(reports) == 1 else None), out


def test_frozen_firmware_imports_from_flash(tmp_path):
    fw = firmware()
    p = subprocess.run([fw, "-c", "import sys\nsys.path[:] = ['.frozen']\n"
                        "import node, unixboard, rtcstore, dtls_lite.client, dtls_lite.store\n"
                        "import dtls_lite.state, dtls_lite.wake, dtls_lite.rare\n"
                        "print(sys.maxsize, sys.implementation.version[:2], "
                        "dtls_lite.client.__file__)\n"
                        "import dtls_lite.cli\n"], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    # 32-bit 1.25, dtls_lite frozen (a frozen module's __file__ is its name in the manifest,
    # no .mpy); the desktop command line is left out of the firmware
    assert "2147483647 (1, 25) dtls_lite/client.py" in out, out
    assert "no module named 'dtls_lite.cli'" in out, out


def test_node_wakes_fit_a_small_heap_frozen(pion_server, tmp_path):
    fw = firmware()
    tmp = str(tmp_path)
    rc, first, out = _wake(fw, HEAP_FROZEN, pion_server, tmp)
    assert rc == 0 and first is not None, out
    assert first["ok"] and first["echoed"], out
    assert first["action"] == "full" and first["kind"] == "full", out
    imported = int(re.search(r"imported (\d+) dtls_lite/client\.py node\.py", out).group(1))
    assert imported < IMPORT_FROZEN_MAX, out
    rc, second, out = _wake(fw, HEAP_FROZEN, pion_server, tmp)  # after "deep sleep"
    assert rc == 0 and second is not None, out
    assert second["ok"] and second["echoed"], out
    assert second["reset"] == "deepsleep" and second["kind"] == "continued", out
    assert second["wire"]["handshake_datagrams"] == 0 and second["port"] == first["port"], out
    # the server saw one handshake and both readings
    for _ in range(100):
        if pion_server.output().count("\necho ") >= 2:
            break
        time.sleep(0.02)
    log = pion_server.output()
    assert log.count("handshake done from") == 1 and log.count("\necho ") == 2, log


def test_far_too_small_heap_fails(pion_server, tmp_path):
    rc, report, out = _wake(firmware(), HEAP_TOO_SMALL, pion_server, str(tmp_path))
    # node.wake() never raises: it reports the MemoryError; or the import itself runs out
    assert (report is not None and not report["ok"] and report["error"] == "MemoryError") \
        or (rc != 0 and "MemoryError" in out), out
