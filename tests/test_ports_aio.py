"""The asyncio sensor node (ports/anode.py, issue 16 item 3) against pion through a relay that
adds 60 ms each way: one micropython process per wake (ports/unix/main.py --aio), and the same
in-process on CPython. The first wake's handshake (cookie exchange: 3 round trips) takes
longer than the sensor task's SAMPLES readings, so all of them are taken while it runs; the
next wakes continue the connection (no handshake) and send the readings in one record."""
import json
import os
import subprocess

import pytest

import netem
import test_ports  # puts ports/, ports/esp32, ports/unix and tools/ on sys.path
from support import runtimes as rt

import anode  # noqa: E402
import node  # noqa: E402
from unixboard import UnixBoard  # noqa: E402

pytestmark = pytest.mark.interop

SAMPLES = 4
SAMPLE_MS = 40  # 3 gaps: 120 ms, well under a 3-round-trip handshake at 120 ms per round trip


def _wake_micropython(cfg_path, cwd):
    p = subprocess.run([rt.executable("micropython"), os.path.join(test_ports.ROOT, "ports", "unix", "main.py"),
                        "--config", cfg_path, "--once", "--aio"], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=test_ports.TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out  # status 0 = "deep sleep"
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, out
    return reports[0]


def _wake_cpython(cfg):
    import asyncio
    r = asyncio.run(anode.wake(cfg, UnixBoard(cfg, sleep=False, exit=False)))
    UnixBoard(cfg, sleep=False, exit=False).rtc.set_slept()  # what deepsleep() records
    return r


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_asyncio_node_samples_while_it_connects(runtime, tmp_path, pion_server):
    with netem.Relay((pion_server.host, pion_server.port), delay_ms=60) as link:
        class Via:
            host, port = "127.0.0.1", link.port
            identity, psk_hex = pion_server.identity, pion_server.psk_hex
        cfg, cfg_path = test_ports.make_config(tmp_path, Via, SAMPLES=SAMPLES, SAMPLE_MS=SAMPLE_MS,
                                               INITIAL_TIMEOUT_MS=1000)

        def wake():
            return _wake_cpython(cfg) if runtime == "cpython" else _wake_micropython(cfg_path, str(tmp_path))

        first = wake()
        assert first["ok"] and first["echoed"] and first["aio"], first
        assert first["action"] == "full" and first["kind"] == "full" and first["reset"] == "power-on"
        assert first["connect_ms"] >= 3 * 120, first  # three round trips through the relay
        assert first["sampled_while_connecting"] == SAMPLES == first["samples"], first
        sent = json.loads(first["sent"])
        times = [t for t, _ in sent["samples"]]
        assert len(times) == SAMPLES and times[-1] < first["connect_ms"], first
        assert all(b - a >= SAMPLE_MS - 5 for a, b in zip(times, times[1:])), times
        for _ in range(2):
            r = wake()
            assert r["ok"] and r["echoed"] and r["reset"] == node.DEEPSLEEP, r
            assert r["action"] == "continue" and r["kind"] == "continued" and r["port"] == first["port"], r
            assert r["wire"]["handshake_datagrams"] == 0 and r["wire"]["datagrams_sent"] == 1, r
            assert r["samples"] == SAMPLES, r
    assert pion_server.output().count("handshake done from") == 1
