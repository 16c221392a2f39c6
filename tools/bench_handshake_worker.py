# Handshake benchmark worker: runs under MicroPython or CPython, one JSON line on stdout.
#   bench_handshake_worker.py MODE HOST PORTS IDENTITY PSK_HEX [SUITE_HEX]
# MODE: "dtls-lite" (our client) or "builtin" (MicroPython's tls module, C Mbed TLS).
# PORTS: comma-separated, one fresh server per handshake; empty = import only (CPU baseline).
# --no-close: leave without close_notify, so a byte count covers the handshake alone.
import json
import socket
import sys

try:
    from time import ticks_diff, ticks_us
except ImportError:  # CPython
    from time import perf_counter_ns

    def ticks_us():
        return perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, _here.rsplit("/", 1)[0] if "/" in _here else (".." if _here == "." else "."))


def main(argv):
    close = "--no-close" not in argv
    argv = [a for a in argv if a != "--no-close"]
    mode, host, ports, identity, psk = argv[0], argv[1], argv[2], argv[3], bytes.fromhex(argv[4])
    ports = [int(p) for p in ports.split(",") if p]
    out = {"mode": mode, "runtime": sys.implementation.name, "wall_us": [], "stats": []}
    if mode == "dtls-lite":
        from dtls_lite.client import DTLSClient
        suites = [int(argv[5], 16)] if len(argv) > 5 else None
        for port in ports:
            c = DTLSClient(host, port, identity, psk, connect=False, suites=suites)
            t0 = ticks_us()
            c.connect()
            out["wall_us"].append(ticks_diff(ticks_us(), t0))
            out["stats"].append(c.stats.as_dict())
            if close:
                c.close()
    elif mode == "builtin":
        import tls
        for port in ports:
            ctx = tls.SSLContext(tls.PROTOCOL_DTLS_CLIENT)
            ctx.verify_mode = tls.CERT_NONE
            ctx.psk_identity = identity
            ctx.psk_key = psk
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(socket.getaddrinfo(host, port)[0][-1])
            t0 = ticks_us()
            ss = ctx.wrap_socket(s)  # runs the whole handshake
            out["wall_us"].append(ticks_diff(ticks_us(), t0))
            out["cipher"] = ss.cipher()[0] if hasattr(ss, "cipher") else None
            if close:
                ss.close()
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(out))


main(sys.argv[1:])
