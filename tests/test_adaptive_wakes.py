"""The adaptive wait of a continued wake against real pion (issue 15 item 3), each wake a new
process of tools/wake.py on CPython and both MicroPythons, as tests/test_wake_scenarios.py runs
them. The wakes before measure the server's round trip (RFC 6298 SRTT/RTTVAR, kept in the
state file); then:

- the server restarts: the continued wake's record waits one RTO, goes once more and waits two,
  then the client resumes (pion forgot the session: a full handshake). It costs at most 3 RTO +
  that handshake, a fraction of the 2 s reply timeout it waited before;
- the link gets three times slower (tools/netem.py's relay delay): the continued wake still
  gets its reply with no handshake.
"""
import json

import pytest

import netem
import peers
from support.runtimes import run_tool

pytestmark = pytest.mark.interop

RUNTIMES = ("cpython", "micropython", "micropython32")
REPLY_MS = 2000  # the application's timeout (tools/wake.py's default): what a dead connection cost
NO_REPLY = "the continued connection got no reply"


class Node:
    def __init__(self, runtime, port, tmp_path):
        self.runtime = runtime
        self.port = port
        self.state = str(tmp_path / "state.bin")
        self.bind = "127.0.0.2:%d" % peers.free_udp_port("127.0.0.2")
        self.n = 0

    def wake(self):
        self.n += 1
        msg = "reading %d" % self.n
        r = run_tool(self.runtime, "wake.py", "127.0.0.1", self.port, peers.IDENTITY, peers.PSK_HEX,
                     "--state", self.state, "--bind", self.bind, "--send", msg,
                     "--reply-ms", str(REPLY_MS), timeout=60)
        assert r["ok"] and r["received"] == [msg], json.dumps(r, indent=1)
        return r


def _learn(node, wakes):
    r = node.wake()
    assert r["policy"] == "full"
    for _ in range(wakes):
        r = node.wake()
        assert r["action"] == "continue" and r["stats"]["handshake_kind"] == "continued", r
    return r


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_restarted_server_costs_three_rto_and_a_handshake(runtime, tmp_path):
    with peers.pion_server() as srv:
        node = Node(runtime, srv.port, tmp_path)
        _learn(node, 2)
        srv.restart()
        r = node.wake()
    assert (r["policy"], r["action"], r["reason"]) == ("continue", "abbreviated", NO_REPLY), r
    assert r["stats"]["handshake_kind"] == "full" and r["retries"] == 1, r
    took_ms = r["request_us"][0] / 1000
    rto = r["rto_ms"]
    hs_ms = r["stats"]["handshake_ms"]
    print("%s: fallback after a restart took %.0f ms (RTO %d ms, handshake %d ms)"
          % (runtime, took_ms, rto, hs_ms))
    # 3 RTO of silence, the handshake, the request again; 100 ms for a loaded host
    assert took_ms <= 3 * rto + hs_ms + 100, r
    assert took_ms < REPLY_MS / 2, r  # before: REPLY_MS of silence, then the handshake


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_three_times_slower_server_needs_no_handshake(runtime, tmp_path):
    d = 25  # ms each way: a 50 ms round trip, well above the 50 ms RTO floor's third
    with peers.pion_server() as srv:
        with netem.Relay((srv.host, srv.port), delay_ms=(d, d)) as link:
            node = Node(runtime, link.address[1], tmp_path)
            r = _learn(node, 3)
            srtt = r["rto_ms"]  # (reported as the wait; the estimate itself is in the state)
            for lk in (link.up, link.down):
                lk.delay_ms = (3 * d, 3 * d)  # the server's replies now take 3x the round trip
            r = node.wake()
    assert (r["policy"], r["action"]) == ("continue", "continue"), r
    assert r["stats"]["handshake_kind"] == "continued" and r["wire"]["handshake_datagrams"] == 0, r
    print("%s: 3x slower link answered after %.0f ms, RTO %d ms (the wake before: %d), %d retries"
          % (runtime, r["request_us"][0] / 1000, r["rto_ms"], srtt, r["retries"]))
