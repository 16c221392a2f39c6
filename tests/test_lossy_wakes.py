"""Deep-sleep wakes through a lossy link (issue 7 item 5 with issue 6): tools/wake.py processes,
each wake a new process without close_notify, through tests/netem.py's seeded relay at 20% loss
each way (plus duplication, reordering and delay) to the pion server (it keeps many
associations and resumes from its session store). Per seeded run: a full handshake, a continued
wake, an abbreviated handshake from a new address, a continued wake there. Every wake must get
its reply; the application retries a request (--tries, as CoAP's confirmable messages do) and a
continued request that gets no answer may fall back to a resumption, which is allowed here."""
import json
import os
import subprocess
import sys
import tempfile

import pytest

import netem
import peers
from test_micropython import micropython_binary

pytestmark = pytest.mark.interop

WAKE = os.path.join(peers.ROOT, "tools", "wake.py")
RUNS = {"cpython": 20, "micropython": 10}


def wake(exe, port, state, bind, reading):
    argv = [exe, WAKE, "127.0.0.1", str(port), peers.IDENTITY, peers.PSK_HEX, "--state", state,
            "--bind", "%s:%d" % bind, "--send", reading, "--tries", "8", "--reply-ms", "400",
            "--timeout-ms", "100", "--retransmits", "9"]
    p = subprocess.run(argv, cwd=peers.ROOT, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("runtime", sorted(RUNS))
def test_wakes_through_a_lossy_link(runtime):
    exe = micropython_binary() if runtime == "micropython" else sys.executable
    kinds = {}
    retransmissions = dropped = 0
    tmp = tempfile.mkdtemp(prefix="dtls-lite-lossywake-")
    with peers.pion_server() as srv:
        for seed in range(RUNS[runtime]):
            state = os.path.join(tmp, "state-%d.bin" % seed)
            home = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
            moved = ("127.0.0.3", peers.free_udp_port("127.0.0.3"))
            with netem.Relay((srv.host, srv.port), seed=seed, loss=0.2, dup=0.05, reorder=0.1,
                             delay_ms=(0, 20)) as link:
                plan = [("full", home), ("continue", home), ("abbreviated", moved), ("continue", moved)]
                for i, (policy, bind) in enumerate(plan):
                    r = wake(exe, link.address[1], state, bind, "seed %d wake %d" % (seed, i))
                    assert r["ok"] and r["received"] == ["seed %d wake %d" % (seed, i)], (seed, i, r)
                    assert r["policy"] == policy, (seed, i, r)
                    kind = r["stats"]["handshake_kind"]
                    kinds[kind] = kinds.get(kind, 0) + 1
                    retransmissions += r["stats"]["retransmissions"]
                dropped += link.counts[netem.UP]["dropped"] + link.counts[netem.DOWN]["dropped"]
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    print("%s: %d runs, handshake kinds %r, %d retransmissions, %d datagrams dropped" % (
        runtime, RUNS[runtime], kinds, retransmissions, dropped))
    # the loss really bit, and every kind of wake happened through it
    assert dropped > 0 and retransmissions > 0
    assert kinds.get("continued", 0) > 0 and kinds.get("abbreviated", 0) > 0 and kinds.get("full", 0) >= RUNS[runtime]
