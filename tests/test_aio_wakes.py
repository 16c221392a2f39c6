"""The asyncio client against real servers (issue 16): the blocking client's wake scenarios, the
same test code, with every wake a tools/wake.py --aio process (AsyncDTLSClient under asyncio),
on CPython and both MicroPythons: pion and Mbed TLS cycles (full, continued, abbreviated,
forced, server restarted), CID across new addresses and a NAT rebinding (Mbed TLS behind the
CID-routing relay), wakes through a lossy link; and a task ticking every 10 ms beside a
handshake whose server flights the relay drops, so that it retransmits.
The deterministic cases (cancellation, timeouts, misuse) are tests/portable/test_aio.py."""
import pytest

import netem
import peers
import test_cid_wakes
import test_lossy_wakes
import test_wake_scenarios
from support.runtimes import run_tool
from test_cid_wakes import state_file  # noqa: F401  (a fixture)

pytestmark = pytest.mark.interop

RUNTIMES = ("cpython", "micropython", "micropython32")


@pytest.fixture
def aio(monkeypatch):
    """The scenario modules' wakes run the asyncio client."""
    def run_aio(runtime, tool, *args, **kw):
        assert tool == "wake.py"
        r = run_tool(runtime, tool, *(args + ("--aio",)), **kw)
        assert r.get("aio") is True, r
        return r

    for m in (test_wake_scenarios, test_cid_wakes, test_lossy_wakes):
        monkeypatch.setattr(m, "run_tool", run_aio)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pion(aio, runtime, tmp_path):
    test_wake_scenarios.test_pion(runtime, tmp_path)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mbedtls(aio, runtime, tmp_path):
    test_wake_scenarios.test_mbedtls(runtime, tmp_path)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cid_at_new_addresses(aio, runtime, state_file):  # noqa: F811
    test_cid_wakes.test_wakes_at_new_addresses_continue_with_cid(runtime, state_file)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("cid", [True, False])
def test_cid_nat_rebinding(aio, runtime, cid, state_file):  # noqa: F811
    test_cid_wakes.test_nat_rebinding_between_wakes(runtime, cid, state_file)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_lossy_link(aio, runtime, monkeypatch):
    # fewer seeded nodes than the blocking client's run: the same code path, awaited
    monkeypatch.setattr(test_lossy_wakes, "RUNS", {"cpython": 6, "micropython": 4, "micropython32": 4})
    test_lossy_wakes.test_wakes_through_a_lossy_link(runtime)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_ticking_task_runs_while_a_handshake_retransmits(runtime, tmp_path):
    def fate(direction, n, data):  # the server's first two datagrams are lost
        return 0 if direction == netem.DOWN and n < 2 else 1

    with peers.pion_server() as srv, netem.Relay((srv.host, srv.port), fate=fate, delay_ms=10) as link:
        bind = "127.0.0.2:%d" % peers.free_udp_port("127.0.0.2")
        r = run_tool(runtime, "wake.py", "127.0.0.1", link.port, peers.IDENTITY, peers.PSK_HEX,
                     "--state", str(tmp_path / "state.bin"), "--bind", bind, "--send", "tick tock",
                     "--timeout-ms", "200", "--retransmits", "5", "--aio", "--tick-ms", "10", timeout=60)
    assert r["ok"] and r["received"] == ["tick tock"], r
    st = r["stats"]
    assert st["handshake_kind"] == "full" and st["retransmissions"] >= 2, st
    connect_ms = r["connect_us"] // 1000
    assert connect_ms >= 200 + 400, r  # two retransmission timeouts at least
    # a tick every 10 ms: at least a third of them, and never a wait of a retransmission timeout
    assert r["ticks"] >= connect_ms // 30, r
    assert r["max_tick_gap_ms"] < 150, r
