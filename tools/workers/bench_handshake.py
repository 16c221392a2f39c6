# Handshake benchmark worker (tools/bench_handshake.py): runs under MicroPython or CPython,
# driven over stdin/stdout.
#   workers/bench_handshake.py HOST IDENTITY PSK_HEX [--no-close] CLIENT:PORT ...
# CLIENT: "dtls-lite" (our client, CCM_8) or "builtin" (MicroPython's tls module, C Mbed TLS).
# One handshake per CLIENT:PORT, each on its own fresh server, in the order given (so two
# clients can alternate and meet the same machine conditions).
# Protocol: the worker prints "ready" once imported; then per handshake it waits for a line on
# stdin, runs the handshake and prints "done WALL_US", so the parent can read this process's
# CPU time around exactly that handshake. At the end it prints one JSON line with the stats
# of the first dtls-lite handshake and the built-in's cipher, and waits for a last line.
# --no-close: leave without close_notify, so a byte count covers the handshake alone.
import json
import sys

sys.path.insert(1, sys.path[0] + "/..")  # tools/
from runtime import builtin_dtls, say as _say, ticks_diff, ticks_us  # noqa: E402  (also puts the repo root on sys.path)


def run_dtls_lite(host, port, identity, psk, close, out):
    from dtls_lite.client import DTLSClient
    from dtls_lite.connection import Connection
    # Many handshakes in one process: keep the handshake's modules loaded between them, as
    # every handshake of a wake finds them (measured: re-importing them costs a handshake
    # from .py ~8 ms on MicroPython); a device's one handshake per boot imports them once.
    Connection.drop_handshake_code = False
    from dtls_lite.record import SUITE_PSK_AES_128_CCM_8
    c = DTLSClient(host, port, identity, psk, connect=False, suites=[SUITE_PSK_AES_128_CCM_8])
    t0 = ticks_us()
    c.connect()
    wall = ticks_diff(ticks_us(), t0)
    if "stats" not in out:
        out["stats"] = c.stats.as_dict()
    if close:
        c.close()
    return wall


def run_builtin(host, port, identity, psk, close, out):
    ctx, s = builtin_dtls(host, port, identity, psk)
    t0 = ticks_us()
    ss = ctx.wrap_socket(s)  # runs the whole handshake
    wall = ticks_diff(ticks_us(), t0)
    out["cipher"] = ss.cipher()[0]
    if close:
        ss.close()
    return wall


def main(argv):
    close = "--no-close" not in argv
    argv = [a for a in argv if a != "--no-close"]
    host, identity, psk = argv[0], argv[1], bytes.fromhex(argv[2])
    jobs = []
    for item in argv[3:]:
        name, port = item.split(":")
        jobs.append(({"dtls-lite": run_dtls_lite, "builtin": run_builtin}[name], int(port)))
    out = {"runtime": sys.implementation.name}
    if any(fn is run_builtin for fn, _ in jobs):
        import tls  # noqa: F401  (import cost outside the measured handshakes)
    if any(fn is run_dtls_lite for fn, _ in jobs):
        import dtls_lite.client  # noqa: F401
    _say("ready")
    for fn, port in jobs:
        sys.stdin.readline()
        _say("done %d" % fn(host, port, identity, psk, close, out))
    _say(json.dumps(out))
    sys.stdin.readline()


main(sys.argv[1:])
