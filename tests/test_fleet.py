"""tools/fleet.py (issue 16 item 4): N sleepy nodes in one asyncio loop against one server, as a
process, its table and its JSON. 1,000 nodes against pion (each: a full handshake, then
continued wakes, some moved, forced or rebooted); a few against Mbed TLS ssl_server2 (one
association at a time, closes after each exchange: every later wake resumes)."""
import json
import subprocess
import sys

import pytest

from support.runtimes import ROOT, TOOLS

pytestmark = pytest.mark.interop


def _fleet(tmp_path, *args, timeout=300):
    out = tmp_path / "fleet.json"
    p = subprocess.run([sys.executable, "%s/fleet.py" % TOOLS] + [str(a) for a in args] + ["--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(out) as f:
        return p.stdout, json.load(f)


def test_a_thousand_nodes_against_pion(tmp_path):
    text, r = _fleet(tmp_path, 1000, "--wakes", 2, "--seed", 3)
    print(text)
    assert r["wakes"] == 2000 and r["totals"]["failed"] == 0, text
    k = r["kinds"]
    # every node's first wake is a full handshake; a later one continues unless it moved,
    # was forced or lost its state (seeded: a few percent each)
    assert k["full"]["wakes"] >= 1000 and k["full"]["handshakes"] == k["full"]["wakes"]
    assert 800 <= k["continue"]["wakes"] < 1000 and k["continue"]["handshakes"] == k["continue"]["fallbacks"]
    assert k["abbreviated"]["wakes"] > 0 and k["abbreviated"]["hs_kinds"].get("abbreviated", 0) > 0
    # a continued wake: one record each way, 29 bytes of DTLS on top of the reading. Under load a
    # late reply makes a wake fall back to a handshake (counted above); the others are exact.
    cont, quiet = k["continue"], k["continue"]["no_handshake"]
    assert quiet["wakes"] + cont["handshakes"] == cont["wakes"] and quiet["wakes"] >= 0.9 * cont["wakes"]
    assert quiet["datagrams"] == 2 * quiet["wakes"] and quiet["bytes_up"] < 60 * quiet["wakes"]
    assert r["wakes_per_s"] > 0 and 0 < r["client_cpu_ms_per_wake"] < 50 and r["server_cpu_ms_per_wake"] > 0
    for word in ("wake kind", "full", "abbreviated", "continue", "total", "wakes/s", "client CPU"):
        assert word in text


def test_a_few_nodes_against_mbedtls(tmp_path):
    text, r = _fleet(tmp_path, 8, "--server", "mbedtls", "--wakes", 3, "--initial-timeout-ms", 200)
    print(text)
    assert r["wakes"] == 24 and r["totals"]["failed"] == 0 and r["concurrency"] == 1, text
    k = r["kinds"]
    # ssl_server2 closed each connection after its exchange (close_notify, seen within
    # --linger-ms): no wake continues, every later one resumes (or handshakes in full when
    # the session is gone from its cache)
    assert k["continue"]["wakes"] == 0 and k["full"]["wakes"] >= 8
    assert k["abbreviated"]["wakes"] + k["full"]["wakes"] == 24
    assert r["totals"]["handshakes"] == 24
