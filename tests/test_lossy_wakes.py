"""Deep-sleep wakes through a lossy link (issue 7 item 5 with issue 6): tools/wake.py processes,
each wake a new process without close_notify, through tools/netem.py's seeded relay at 20% loss
each way (plus duplication, reordering and delay) to the pion server (it keeps many
associations and resumes from its session store). Per seeded run: a full handshake, a continued
wake, an abbreviated handshake from a new address, a continued wake there. Every wake must get
its reply; the application retries a request (--tries, as CoAP's confirmable messages do) and a
continued request that gets no answer may fall back to a resumption, which is allowed here."""
import concurrent.futures
import os
import tempfile

import pytest

import netem
import peers
from support.runtimes import run_tool

pytestmark = pytest.mark.interop

RUNS = {"cpython": 20, "micropython": 10}
PARALLEL = 4  # nodes at a time: their wakes mostly wait for timers


def wake(runtime, port, state, bind, reading):
    # --reply-ms 1000: with PARALLEL nodes and the other test worker on 2 cores, a 400 ms wait
    # once missed all 8 tries of a continued request (2026-12-06, seed 15, load ~4)
    return run_tool(runtime, "wake.py", "127.0.0.1", port, peers.IDENTITY, peers.PSK_HEX,
                    "--state", state, "--bind", "%s:%d" % bind, "--send", reading, "--tries", "8",
                    "--reply-ms", "1000", "--timeout-ms", "100", "--retransmits", "9", timeout=240)


def one_node(runtime, srv, seed, tmp):
    """One seeded node's four wakes through its own lossy link: (kinds, retransmissions, dropped)."""
    kinds = {}
    retransmissions = 0
    state = os.path.join(tmp, "state-%d.bin" % seed)
    home = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
    moved = ("127.0.0.3", peers.free_udp_port("127.0.0.3"))
    with netem.Relay((srv.host, srv.port), seed=seed, loss=0.2, dup=0.05, reorder=0.1,
                     delay_ms=(0, 20)) as link:
        plan = [("full", home), ("continue", home), ("abbreviated", moved), ("continue", moved)]
        for i, (policy, bind) in enumerate(plan):
            r = wake(runtime, link.address[1], state, bind, "seed %d wake %d" % (seed, i))
            assert r["ok"] and r["received"] == ["seed %d wake %d" % (seed, i)], (seed, i, r)
            assert r["policy"] == policy, (seed, i, r)
            kind = r["stats"]["handshake_kind"]
            kinds[kind] = kinds.get(kind, 0) + 1
            retransmissions += r["stats"]["retransmissions"]
    return kinds, retransmissions, link.counts[netem.UP]["dropped"] + link.counts[netem.DOWN]["dropped"]


@pytest.mark.parametrize("runtime", sorted(RUNS))
def test_wakes_through_a_lossy_link(runtime):
    kinds = {}
    retransmissions = dropped = 0
    tmp = tempfile.mkdtemp(prefix="dtls-lite-lossywake-")
    with peers.pion_server() as srv:
        # PARALLEL nodes at a time (pion serves many associations; each node has its own
        # addresses, state file and seeded link, so its wakes do not depend on the others)
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            runs = list(pool.map(lambda seed: one_node(runtime, srv, seed, tmp), range(RUNS[runtime])))
    for node_kinds, node_retransmissions, node_dropped in runs:
        for kind, n in node_kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
        retransmissions += node_retransmissions
        dropped += node_dropped
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    print("%s: %d runs, handshake kinds %r, %d retransmissions, %d datagrams dropped" % (
        runtime, RUNS[runtime], kinds, retransmissions, dropped))
    # the loss really bit, and every kind of wake happened through it
    assert dropped > 0 and retransmissions > 0
    assert kinds.get("continued", 0) > 0 and kinds.get("abbreviated", 0) > 0 and kinds.get("full", 0) >= RUNS[runtime]
