# Runs on the emulated ESP32 (MicroPython 1.16 and later): one portable test module, with the
# output protocol of tests/mp_runner.py ("PASS name" / "FAIL name" + traceback, then
# "mp_runner: N passed, N failed"), plus one "HEAP name free_before free_after" line per test so
# that the host can show the heap around each test. No sys.path games: everything sits in
# the board's root, because every failed lookup costs a FAT directory scan (slow in QEMU).
#
#   import emurun; emurun.main('test_connection')
#
# fromhex(): what the host rewrites `bytes.fromhex` to in the test sources it compiles for a
# 1.16 board (MicroPython 1.16 has no bytes.fromhex; dtls_lite itself never calls it).
import gc
import sys


def fromhex(s):
    from binascii import unhexlify
    return unhexlify(s.replace(" ", "").replace("\n", ""))


def _tests(mod):
    names = []
    for name in dir(mod):
        if name.startswith("test_"):
            obj = getattr(mod, name)
            if callable(obj) and not isinstance(obj, type):
                names.append(name)
    names.sort()
    return names


def main(modname):
    # The ESP32 firmware starts lwIP when the network module initialises: until then even
    # getaddrinfo('127.0.0.1', ...) fails (OSError -201). An application has its network up
    # before it makes sockets; so does this runner (no interface is started).
    import network  # noqa: F401
    gc.collect()
    print("HEAP <start> %d %d" % (gc.mem_free(), gc.mem_alloc()))
    try:
        mod = __import__(modname)
    except BaseException as e:  # noqa: B902 - report anything, including MemoryError
        print("FAIL <import %s>" % modname)
        sys.print_exception(e)
        print("mp_runner: 0 passed, 1 failed")
        return
    gc.collect()
    print("HEAP <import> %d %d" % (gc.mem_free(), gc.mem_alloc()))
    passed = failed = 0
    setup = getattr(mod, "setup_module", None)
    if setup is not None:
        try:
            setup()
        except BaseException as e:  # noqa: B902
            print("FAIL setup_module")
            sys.print_exception(e)
            print("mp_runner: 0 passed, 1 failed")
            return
    for name in _tests(mod):
        gc.collect()
        before = gc.mem_free()
        try:
            getattr(mod, name)()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: B902
            print("FAIL %s" % name)
            sys.print_exception(e)
            failed += 1
        else:
            print("PASS %s" % name)
            passed += 1
        gc.collect()
        print("HEAP %s %d %d" % (name, before, gc.mem_free()))
    teardown = getattr(mod, "teardown_module", None)
    if teardown is not None:
        try:
            teardown()
        except BaseException as e:  # noqa: B902
            print("FAIL teardown_module")
            sys.print_exception(e)
            failed += 1
    print("mp_runner: %d passed, %d failed" % (passed, failed))
