# Run one portable test module under MicroPython (no pytest there).
#
#   micropython tests/mp_runner.py test_errors        (cwd: repo root)
#
# Imports tests/portable/<module>.py, calls setup_module() if defined, then every top-level
# function whose name starts with "test_", in sorted order (MicroPython dicts are unordered),
# then teardown_module() if defined. Prints one line per test, "PASS name" or "FAIL name"
# followed by the traceback, then the summary "mp_runner: N passed, N failed".
# Exit status: 0 all passed, 1 a test failed, 2 the module could not be imported.
# Runs on CPython too (handy to compare): `python tests/mp_runner.py test_errors`.
import sys

try:
    _print_exception = sys.print_exception
except AttributeError:  # CPython
    import traceback

    def _print_exception(e, f=None):
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stdout)


def _dirname(path):
    i = path.rfind("/")
    if i < 0:
        return "."
    return path[:i] or "/"


def _setup_path():
    try:
        here = _dirname(__file__)
    except NameError:
        here = "tests"
    root = _dirname(here) if here not in (".", "") else ".."
    for p in (here + "/portable", here, root):  # here: the support package (tests/support)
        if p not in sys.path:
            sys.path.insert(0, p)


def _collect(mod):
    tests = []
    for name in dir(mod):
        if name.startswith("test_"):
            obj = getattr(mod, name)
            if callable(obj) and not isinstance(obj, type):
                tests.append(name)
    tests.sort()
    return tests


def _gc():
    try:
        import gc
        gc.collect()
    except ImportError:
        pass


def main(argv):
    if len(argv) != 2:
        print("usage: micropython tests/mp_runner.py <portable test module>")
        return 2
    modname = argv[1]
    if modname.endswith(".py"):
        modname = modname[:-3]
    if "/" in modname:
        modname = modname[modname.rfind("/") + 1:]
    _setup_path()
    try:
        mod = __import__(modname)
    except BaseException as e:  # noqa: B902 - report anything, including SyntaxError
        print("FAIL <import %s>" % modname)
        _print_exception(e)
        print("mp_runner: 0 passed, 1 failed")
        return 2

    passed = failed = 0
    tests = _collect(mod)
    setup_error = None
    setup = getattr(mod, "setup_module", None)
    if setup is not None:
        try:
            setup()
        except BaseException as e:  # noqa: B902
            setup_error = e
            print("FAIL setup_module")
            _print_exception(e)
    for name in tests:
        if setup_error is not None:
            print("FAIL %s" % name)
            print("setup_module failed: %r" % (setup_error,))
            failed += 1
            continue
        _gc()
        try:
            getattr(mod, name)()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: B902 - SystemExit in a test is a failure too
            print("FAIL %s" % name)
            _print_exception(e)
            failed += 1
        else:
            print("PASS %s" % name)
            passed += 1
    teardown = getattr(mod, "teardown_module", None)
    if teardown is not None and setup_error is None:
        try:
            teardown()
        except BaseException as e:  # noqa: B902
            print("FAIL teardown_module")
            _print_exception(e)
            failed += 1
    print("mp_runner: %d passed, %d failed" % (passed, failed))
    return 1 if failed or setup_error is not None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
