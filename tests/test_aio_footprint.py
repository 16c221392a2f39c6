"""What the asyncio client costs on MicroPython (issue 16 item 5): on top of the blocking client
with its stores and asyncio, importing dtls_lite.aio (compiled to .mpy) loads that one module
and takes its own bytecode's heap, nothing more; the blocking client never loads it
(tests/test_layout.py). The 32-bit 1.25 port freezes no modules, so its asyncio is the 1.25
package compiled to .mpy here; the 64-bit 1.29 port has asyncio frozen.

Measured 2026-12-06 (gc.mem_alloc() after gc.collect(), the same steps as
tools/workers/import_heap.py): dtls_lite.aio 1.75 KB on micropython32 from .mpy (frozen into
the firmware: 0.5 KB), 2.4 KB on the 64-bit port; the bounds below are those plus ~40%."""
import glob
import os
import subprocess
import tempfile

import pytest

from support import runtimes as rt

BOUND = {"micropython32": 2560, "micropython": 3584}

_SCRIPT = """
import sys, gc
sys.path[:] = %r
import dtls_lite.client, dtls_lite.store, dtls_lite.keeper, asyncio
gc.collect()
before = set(sys.modules)
m0 = gc.mem_alloc()
import dtls_lite.aio
gc.collect()
print('aio', gc.mem_alloc() - m0, sorted(set(sys.modules) - before))
print('file', sys.modules['dtls_lite.aio'].__file__)
"""


def _compile(mpy_cross, src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    subprocess.run([mpy_cross, "-O1", "-s", os.path.basename(src), "-o", dst, src], check=True,
                   capture_output=True, timeout=60)


@pytest.mark.parametrize("runtime", ["micropython", "micropython32"])
def test_importing_the_async_client_costs_only_its_own_module(runtime):
    mpy_cross = rt.mpy_cross(runtime)
    with tempfile.TemporaryDirectory(prefix="dtls-lite-aio-heap-") as tmp:
        for src in glob.glob(os.path.join(rt.ROOT, "dtls_lite", "*.py")):
            _compile(mpy_cross, src, os.path.join(tmp, "dtls_lite", os.path.basename(src)[:-3] + ".mpy"))
        path = [tmp, ".frozen"]
        if runtime == "micropython32":  # no frozen asyncio: the 1.25 package as .mpy
            src_dirs = glob.glob(os.path.join(rt.ROOT, ".peers", "mp32", "src", "micropython-*", "extmod", "asyncio"))
            assert src_dirs, "the MicroPython 1.25 sources are missing: run `make mp32`"
            for src in glob.glob(os.path.join(src_dirs[0], "*.py")):
                if not src.endswith("manifest.py"):
                    _compile(mpy_cross, src, os.path.join(tmp, "asyncio", os.path.basename(src)[:-3] + ".mpy"))
        p = subprocess.run([rt.executable(runtime), "-c", _SCRIPT % (path,)], cwd=tmp,
                           capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    line = [x for x in out.splitlines() if x.startswith("aio ")][0]
    heap = int(line.split()[1])
    print(runtime, line)
    assert line.endswith("['dtls_lite.aio']"), out  # the one module, nothing else loaded with it
    assert "aio.mpy" in out, out  # compiled, not the source
    assert 0 < heap <= BOUND[runtime], (heap, BOUND[runtime])
