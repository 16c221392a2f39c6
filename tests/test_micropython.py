"""Run the portable tests (tests/portable/test_*.py) under the MicroPython unix port.

Each module runs ONCE (`micropython -X heapsize=... tests/mp_runner.py MODULE`, cwd = repo
root, bounded by a timeout; support.runtimes.run_portable); its output is cached and every
test function, found with `ast` (nothing is imported here), becomes one pytest test, e.g.
`test_micropython.py::test_portable[test_crypto.py::test_ccm_rfc3610]`, that asserts its own
PASS line and shows its MicroPython traceback otherwise. `test_module_run` checks that the run
exited cleanly and that every listed test reported (catches crashes and missing lines).
Under pytest-xdist all tests of one module are one group (one worker, one run).
A missing `micropython` binary FAILS these tests; it never skips them.

Env: DTLS_LITE_MP_HEAP (default 4m), DTLS_LITE_MP_TIMEOUT (seconds per module, default 600).
tests/test_mp32.py runs the same on the 32-bit MicroPython.
"""
import pytest

from support import runtimes as rt

RUNTIME = "micropython"


@pytest.mark.parametrize("module,test", rt.portable_cases(RUNTIME))
def test_portable(module, test):
    rt.check_portable(RUNTIME, module, test)


@pytest.mark.parametrize("module", rt.portable_module_params(RUNTIME))
def test_module_run(module):
    rt.check_module_run(RUNTIME, module)


def test_portable_modules_exist():
    # An empty tests/portable would silently turn this whole file into nothing.
    assert rt.portable_modules(), "no tests/portable/test_*.py found"
