"""dtls-lite demo: a real PSK handshake and an echo exchange, on CPython and on the MicroPython
unix port, printing what happened on the wire.

    python tools/demo.py                      # starts a local OpenSSL s_server (PSK, CCM_8)
    python tools/demo.py --server HOST:PORT --identity ID --psk HEX [--message TEXT]

With --server it talks to any DTLS 1.2 PSK server instead (an echo server shows the reply;
others show whatever they answer). Exit status 0 only if every runtime succeeded.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import peers  # noqa: E402
from bench import find_micropython  # noqa: E402

RUN_CLIENT = os.path.join(ROOT, "tools", "run_client.py")


def runtimes():
    return [("CPython", sys.executable), ("MicroPython", find_micropython() or "micropython")]


def run(exe, host, port, identity, psk, message, extra):
    argv = [exe, RUN_CLIENT, host, str(port), identity, psk, "--send", message] + extra
    try:
        p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        return {"ok": False, "error": "missing runtime", "message": "%s not found (run `make venv`)" % exe}
    if p.returncode != 0 or not p.stdout.strip():
        return {"ok": False, "error": "crash", "message": (p.stderr or p.stdout).strip()[-500:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def report(name, r):
    if not r.get("ok"):
        print("%-12s FAILED: %s: %s" % (name, r.get("error"), r.get("message")))
        return False
    st = r["stats"]
    print("%-12s %s, %s handshake%s in %.2f ms" % (
        name, r["suite"], st["handshake_kind"], " (with cookie exchange)" if st["hello_verify"] else "",
        r["handshake_us"] / 1000.0))
    print("%-12s wire: sent %d datagrams / %d B, received %d datagrams / %d B, %d retransmissions"
          % ("", st["datagrams_sent"], st["bytes_sent"], st["datagrams_received"], st["bytes_received"],
             st["retransmissions"]))
    print("%-12s reply: %r" % ("", r["received"][0]))
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="HOST:PORT of a DTLS 1.2 PSK server (default: start a local one)")
    ap.add_argument("--identity", default=peers.IDENTITY)
    ap.add_argument("--psk", default=peers.PSK_HEX, help="PSK as hex")
    ap.add_argument("--message", default="hello from dtls-lite")
    ap.add_argument("--suite", action="append", default=[], help="suite as hex, e.g. C0A8 (repeatable)")
    args = ap.parse_args()
    extra = []
    for s in args.suite:
        extra += ["--suite", s]
    with contextlib.ExitStack() as stack:
        if args.server:
            host, _, port = args.server.rpartition(":")
            host = host.strip("[]")
            print("server: %s port %s (identity %s)" % (host, port, args.identity))
        else:
            srv = stack.enter_context(peers.openssl_server(
                ciphers="PSK-AES128-CCM8:@SECLEVEL=0", psk_hex=args.psk, identity=args.identity))
            host, port = srv.host, srv.port
            print("server: local OpenSSL s_server (echo, PSK, AES-128-CCM-8) on %s:%d" % (host, port))
        ok = True
        for name, exe in runtimes():
            ok = report(name, run(exe, host, port, args.identity, args.psk, args.message, extra)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
