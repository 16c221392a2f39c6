"""Full-handshake benchmark (CPython driver): dtls-lite on CPython and on the MicroPython unix
port, and MicroPython's built-in `tls` DTLS-PSK client (C Mbed TLS) as the reference, all
against OpenSSL s_server on loopback in the same run.

- wall time: measured inside the client process around the handshake call;
- CPU time: the client process's user+sys time read by this parent (rusage of the waited
  child), minus the least of three same-runtime runs that only import, divided by the
  handshake count (process start-up noise is a few ms: use enough handshakes);
- wire: datagrams and DTLS payload bytes both ways of one handshake (no close_notify),
  counted by a UDP relay in this process.
Each handshake gets a fresh server: they serve one association at a time and the built-in
client does not end its association when closed.
"""
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
from contextlib import ExitStack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import peers  # noqa: E402

WORKER = os.path.join(ROOT, "tools", "bench_handshake_worker.py")
# The built-in client offers no CCM suite, so the server allows CCM_8 (ours) and GCM (its pick).
CIPHERS = "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:@SECLEVEL=0"
CCM_8 = "C0A8"


def micropython():
    from bench import find_micropython
    exe = find_micropython()
    if not exe:
        raise SystemExit("micropython not found next to %s: run `make venv`" % sys.executable)
    return exe


class Relay:
    """Forwards UDP between one client and one server on loopback, counting both directions."""

    def __init__(self, server_port):
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = [0, 0]  # client -> server: datagrams, bytes
        self.down = [0, 0]
        self._client = None
        self._stop = False
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr == self.server:
                if self._client is not None:
                    self.down[0] += 1
                    self.down[1] += len(data)
                    self.sock.sendto(data, self._client)
            else:
                self._client = addr
                self.up[0] += 1
                self.up[1] += len(data)
                self.sock.sendto(data, self.server)

    def close(self):
        self._stop = True
        self._thread.join(1)
        self.sock.close()


def _run_worker(exe, mode, ports, suite=None, close=True):
    argv = [exe, WORKER, mode, "127.0.0.1", ",".join(str(p) for p in ports), peers.IDENTITY, peers.PSK_HEX]
    if suite:
        argv.append(suite)
    if not close:
        argv.append("--no-close")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit("benchmark worker failed (%s %s):\n%s%s" % (exe, mode, p.stdout, p.stderr))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(p.stdout.strip().splitlines()[-1]), cpu


def _measure(exe, mode, n, suite):
    with ExitStack() as stack:
        servers = [stack.enter_context(peers.openssl_server(ciphers=CIPHERS)) for _ in range(n)]
        out, cpu = _run_worker(exe, mode, [s.port for s in servers], suite)
    # same runtime and imports, no handshake; start-up time varies, so take the least of three
    cpu0 = min(_run_worker(exe, mode, [], suite)[1] for _ in range(3))
    with peers.openssl_server(ciphers=CIPHERS) as srv:
        relay = Relay(srv.port)
        try:
            _run_worker(exe, mode, [relay.port], suite, close=False)
        finally:
            relay.close()
    wall = [u / 1000.0 for u in out["wall_us"]]
    return {
        "client": mode, "runtime": out["runtime"], "handshakes": n,
        "suite": out.get("cipher") or "TLS_PSK_WITH_AES_128_CCM_8",
        "wall_ms_median": round(statistics.median(wall), 3), "wall_ms_min": round(min(wall), 3),
        "wall_ms_max": round(max(wall), 3),
        "cpu_ms_per_handshake": round(max(cpu - cpu0, 0.0) * 1000 / n, 3),
        "datagrams": relay.up[0] + relay.down[0], "bytes": relay.up[1] + relay.down[1],
        "client_datagrams": relay.up[0], "client_bytes": relay.up[1],
        "stats": out["stats"][0] if out["stats"] else None,
    }


def bench_handshake(n=10):
    rows = [
        _measure(sys.executable, "dtls-lite", n, CCM_8),
        _measure(micropython(), "dtls-lite", n, CCM_8),
        _measure(micropython(), "builtin", n, None),
    ]
    ref = rows[2]
    mp = rows[1]
    checks = {
        "mp_wall_median_le_builtin": mp["wall_ms_median"] <= ref["wall_ms_median"],
        "mp_cpu_le_3x_builtin": mp["cpu_ms_per_handshake"] <= 3 * ref["cpu_ms_per_handshake"],
        "mp_bytes_le_builtin": mp["bytes"] <= ref["bytes"],
    }
    return {"rows": rows, "targets": checks,
            "ratios_vs_builtin": {
                "wall": round(mp["wall_ms_median"] / ref["wall_ms_median"], 3),
                "cpu": round(mp["cpu_ms_per_handshake"] / max(ref["cpu_ms_per_handshake"], 1e-9), 3),
                "bytes": round(mp["bytes"] / ref["bytes"], 3)}}


def print_handshake(res):
    print("Full PSK handshake against OpenSSL s_server on loopback (%d handshakes each, fresh server each)"
          % res["rows"][0]["handshakes"])
    print("  %-10s %-12s %-32s %9s %9s %9s %6s %6s" % ("client", "runtime", "suite", "wall med", "wall min",
                                                       "cpu/hs", "dgrams", "bytes"))
    for r in res["rows"]:
        print("  %-10s %-12s %-32s %7.2fms %7.2fms %7.2fms %6d %6d" % (
            r["client"], r["runtime"], r["suite"], r["wall_ms_median"], r["wall_ms_min"],
            r["cpu_ms_per_handshake"], r["datagrams"], r["bytes"]))
    ra = res["ratios_vs_builtin"]
    print("  dtls-lite on MicroPython vs built-in tls: wall x%.2f, cpu x%.2f, bytes x%.2f"
          % (ra["wall"], ra["cpu"], ra["bytes"]))
    for k, v in sorted(res["targets"].items()):
        print("  target %-28s %s" % (k, "met" if v else "MISSED"))


if __name__ == "__main__":
    r = bench_handshake(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
    print_handshake(r)
