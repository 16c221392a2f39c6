# The worker side of the tools: imported by the programs that run on MicroPython and CPython
# alike (tools/wake.py, run_client.py, cid_client.py and tools/workers/bench_*.py). It puts the
# repo root on sys.path and gives say() and a microsecond clock. The drivers' side (CPython
# only: starting workers, reading their CPU time) is tools/benchkit.py.
import sys

# this file's folder (tools/); the workers in tools/workers/ put it on sys.path themselves
_tools = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
ROOT = _tools + "/.."
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
try:  # DTLS_LITE_LIB: a folder with dtls_lite compiled to .mpy, found before the sources
    from os import getenv
except ImportError:
    getenv = None
LIB = getenv and getenv("DTLS_LITE_LIB")
if LIB:
    sys.path.insert(0, LIB)


def say(line):
    """One line to stdout at once (the benchmark's parent process waits for it)."""
    sys.stdout.write(line + "\n")
    try:
        sys.stdout.flush()
    except AttributeError:  # MicroPython's stdout is unbuffered
        pass


try:
    from time import ticks_diff, ticks_us  # noqa: F401
except ImportError:  # CPython
    from time import perf_counter_ns

    def ticks_us():
        return perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b


def need_asyncio():
    """Make `import asyncio` work on the 32-bit unix port the tests build (tools/build_mp32.sh):
    it freezes no modules, so asyncio comes from the MicroPython 1.25 sources it was built
    from (extmod/asyncio: what a firmware freezes, over the port's built-in _asyncio)."""
    try:
        import asyncio  # noqa: F401
        return
    except ImportError:
        pass
    import os
    src = ROOT + "/.peers/mp32/src"
    for d in os.listdir(src):
        if d.startswith("micropython-"):
            sys.path.append(src + "/" + d + "/extmod")
            return


def builtin_dtls(host, port, identity, psk):
    """(SSLContext, connected UDP socket) of MicroPython's built-in `tls` DTLS-PSK client (C
    Mbed TLS), the reference the benchmarks measure against: ctx.wrap_socket(s) runs its
    handshake."""
    import socket
    import tls
    ctx = tls.SSLContext(tls.PROTOCOL_DTLS_CLIENT)
    ctx.verify_mode = tls.CERT_NONE
    ctx.psk_identity = identity
    ctx.psk_key = psk
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(socket.getaddrinfo(host, port)[0][-1])
    return ctx, s
