"""Full-handshake benchmark (CPython driver): dtls-lite on CPython and on the MicroPython unix
port, and MicroPython's built-in `tls` DTLS-PSK client (C Mbed TLS) as the reference, all
against OpenSSL s_server on loopback in the same run.

- wall time: measured inside the client process around the handshake call;
- CPU time: the client process's CPU time (user+sys, all its threads) read by this parent
  from /proc/<pid>/task/*/schedstat (nanoseconds) just before and just after each handshake
  (the worker waits on stdin in between): start-up and imports are not counted;
- on MicroPython our client and the built-in alternate handshake by handshake in one process,
  so machine slowdowns (this 2-core machine has phases ~1.7x apart) hit both alike;
- wire: datagrams and DTLS payload bytes both ways of one handshake (no close_notify),
  counted by a UDP relay in this process.
Each handshake gets a fresh server: they serve one association at a time and the built-in
client does not end its association when closed.
"""
import json
import os
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


def _cpu_ns(pid):
    """CPU time of every thread of process pid so far (Linux scheduler accounting, ns)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


def _run_worker(exe, jobs, close=True):
    """Run the worker on [(client, port)]; returns (per-job [(wall_ms, cpu_ms)], final report)."""
    argv = [exe, WORKER, "127.0.0.1", peers.IDENTITY, peers.PSK_HEX] + ["%s:%d" % j for j in jobs]
    if not close:
        argv.append("--no-close")
    p = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    results = []
    try:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("benchmark worker did not start (%s): %s" % (exe, p.communicate(timeout=10)))
        for _ in jobs:
            cpu0 = _cpu_ns(p.pid)
            p.stdin.write("go\n")
            p.stdin.flush()
            line = p.stdout.readline().split()
            cpu1 = _cpu_ns(p.pid)
            if len(line) != 2 or line[0] != "done":
                raise SystemExit("benchmark worker failed (%s): %s %s" % (exe, line, p.communicate(timeout=10)))
            results.append((int(line[1]) / 1000.0, (cpu1 - cpu0) / 1e6))
        report = json.loads(p.stdout.readline())
        p.stdin.write("end\n")
        p.stdin.flush()
        p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return results, report


def _wire(exe, client):
    """Datagrams and bytes of one handshake (no close_notify) through a counting relay."""
    with peers.openssl_server(ciphers=CIPHERS) as srv:
        relay = Relay(srv.port)
        try:
            _run_worker(exe, [(client, relay.port)], close=False)
        finally:
            relay.close()
    return relay


def _row(client, runtime, results, report, relay):
    wall = [w for w, _ in results]
    cpu = [c for _, c in results]
    return {
        "client": client, "runtime": runtime, "handshakes": len(results),
        "suite": report.get("cipher") if client == "builtin" else "TLS_PSK_WITH_AES_128_CCM_8",
        "wall_ms_median": round(statistics.median(wall), 3), "wall_ms_min": round(min(wall), 3),
        "wall_ms_max": round(max(wall), 3),
        "cpu_ms_median": round(statistics.median(cpu), 3), "cpu_ms_mean": round(statistics.mean(cpu), 3),
        "datagrams": relay.up[0] + relay.down[0], "bytes": relay.up[1] + relay.down[1],
        "client_datagrams": relay.up[0], "client_bytes": relay.up[1],
        "stats": report.get("stats") if client == "dtls-lite" else None,
    }


def bench_handshake(n=30):
    mp = micropython()
    with ExitStack() as stack:
        servers = [stack.enter_context(peers.openssl_server(ciphers=CIPHERS)) for _ in range(3 * n)]
        ports = [s.port for s in servers]
        cp_results, cp_report = _run_worker(sys.executable, [("dtls-lite", p) for p in ports[:n]])
        # On MicroPython the two clients alternate, so both meet the same machine conditions.
        jobs = [(("dtls-lite", "builtin")[i % 2], p) for i, p in enumerate(ports[n:])]
        mp_results, mp_report = _run_worker(mp, jobs)
    rows = [
        _row("dtls-lite", "cpython", cp_results, cp_report, _wire(sys.executable, "dtls-lite")),
        _row("dtls-lite", "micropython", mp_results[0::2], mp_report, _wire(mp, "dtls-lite")),
        _row("builtin", "micropython", mp_results[1::2], mp_report, _wire(mp, "builtin")),
    ]
    ours, ref = rows[1], rows[2]
    return {"rows": rows,
            "targets": {
                "mp_wall_median_le_builtin": ours["wall_ms_median"] <= ref["wall_ms_median"],
                "mp_cpu_le_3x_builtin": ours["cpu_ms_median"] <= 3 * ref["cpu_ms_median"],
                "mp_bytes_le_builtin": ours["bytes"] <= ref["bytes"]},
            "ratios_vs_builtin": {
                "wall": round(ours["wall_ms_median"] / ref["wall_ms_median"], 3),
                "cpu": round(ours["cpu_ms_median"] / ref["cpu_ms_median"], 3),
                "bytes": round(ours["bytes"] / ref["bytes"], 3)}}


def print_handshake(res):
    print("Full PSK handshake against OpenSSL s_server on loopback (%d handshakes each, fresh server"
          " each; on MicroPython the two clients alternate)" % res["rows"][0]["handshakes"])
    print("  %-10s %-12s %-32s %9s %9s %9s %6s %6s" % ("client", "runtime", "suite", "wall med", "wall min",
                                                       "cpu med", "dgrams", "bytes"))
    for r in res["rows"]:
        print("  %-10s %-12s %-32s %7.2fms %7.2fms %7.2fms %6d %6d" % (
            r["client"], r["runtime"], r["suite"], r["wall_ms_median"], r["wall_ms_min"],
            r["cpu_ms_median"], r["datagrams"], r["bytes"]))
    ra = res["ratios_vs_builtin"]
    print("  dtls-lite on MicroPython vs built-in tls: wall x%.2f, cpu x%.2f, bytes x%.2f"
          % (ra["wall"], ra["cpu"], ra["bytes"]))
    for k, v in sorted(res["targets"].items()):
        print("  target %-28s %s" % (k, "met" if v else "MISSED"))


if __name__ == "__main__":
    r = bench_handshake(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
    print_handshake(r)
