"""Connection ID across deep sleep (issue 9): each wake a new tools/wake.py process (no
close_notify), on CPython and MicroPython, against Mbed TLS 3.6 `ssl_server2 cid=1` behind
tests/cid_front.py (ssl_server2 ties its socket to the client's first address; the front routes
tls12_cid records by CID, as a CID-aware load balancer does).

- wakes at new addresses and ports with the saved server CID continue with no handshake;
- a NAT rebinding between wakes (tests/netem.py moves its upstream port, the node's own address
  stays): with CID the continued request is answered; without CID it gets no answer and the
  client falls back to resumption, and the data arrives.
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

import cid_front
import netem
import peers
from test_micropython import micropython_binary

pytestmark = pytest.mark.interop

WAKE = os.path.join(peers.ROOT, "tools", "wake.py")
RUNTIMES = ["cpython", "micropython"]
SERVER_CID = bytes.fromhex("beef01")  # peers.mbedtls_server(cid=True)
ANSWER = peers.MBEDTLS_RESPONSE % peers.MBEDTLS_SUITE


def wake(runtime, port, state, bind, *extra):
    exe = micropython_binary() if runtime == "micropython" else sys.executable
    argv = [exe, WAKE, "127.0.0.1", str(port), peers.IDENTITY, peers.PSK_HEX, "--state", state,
            "--bind", "%s:%d" % bind, "--send", "reading", "--timeout-ms", "300",
            "--retransmits", "5", "--reply-ms", "800"] + list(extra)
    p = subprocess.run(argv, cwd=peers.ROOT, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["runtime"] == runtime
    return r


def served(r):
    return r["ok"] and r["received"] == [ANSWER]


@pytest.fixture
def state_file():
    d = tempfile.mkdtemp(prefix="dtls-lite-cidwake-")
    yield os.path.join(d, "state.bin")
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    os.rmdir(d)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_wakes_at_new_addresses_continue_with_cid(runtime, state_file):
    with peers.mbedtls_server(cid=True, exchanges=100) as srv, \
            cid_front.CidFront((srv.host, srv.port), cid_len=len(SERVER_CID)) as front:
        binds = [("127.0.0.2", peers.free_udp_port("127.0.0.2")),
                 ("127.0.0.3", peers.free_udp_port("127.0.0.3")),
                 ("127.0.0.4", peers.free_udp_port("127.0.0.4")),
                 ("127.0.0.3", peers.free_udp_port("127.0.0.3"))]
        reports = [wake(runtime, front.port, state_file, b) for b in binds]
        for r in reports:
            assert served(r), (r, srv.output()[-2000:])
        assert reports[0]["action"] == "full"
        for r in reports[1:]:
            assert r["action"] == "continue", r
            assert r["reason"] == "address changed, but the server gave a connection ID"
            assert r["wire"]["handshake_datagrams"] == 0 and r["wire"]["datagrams_sent"] == 1
        assert srv.output().count("(initial handshake) Use of Connection ID has been negotiated") == 1
        assert front.rebinds >= 3  # the front moved the association to each new address
        # every record we sent after the handshake is tls12_cid with the server's CID
        ups = [d for _, d in front.records(cid_front.UP) if d[0] != 22 and d[3:5] == b"\x00\x01"]
        assert ups and all(d[0] == 25 and d[11:14] == SERVER_CID for d in ups)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("cid", [True, False])
def test_nat_rebinding_between_wakes(runtime, cid, state_file):
    bind = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
    with peers.mbedtls_server(cid=cid, exchanges=100, read_timeout_ms=1000) as srv, \
            cid_front.CidFront((srv.host, srv.port), cid_len=len(SERVER_CID)) as front, \
            netem.Relay((front.address[0], front.port)) as nat:
        first = wake(runtime, nat.address[1], state_file, bind)
        assert served(first) and first["action"] == "full", (first, srv.output()[-2000:])
        nat.rebind()  # the NAT gives the node a new public port while it sleeps
        second = wake(runtime, nat.address[1], state_file, bind)
        assert served(second), (second, srv.output()[-2000:])
        assert second["policy"] == "continue"  # same local address and port: continue first
        if cid:
            # the server finds the connection by its CID: no handshake at all
            assert second["action"] == "continue" and second["wire"]["handshake_datagrams"] == 0
            assert second["stats"]["handshake_kind"] == "continued"
        else:
            # no CID: the continued request is not answered from the new port; the client
            # resumes the session (the server kept it in its cache) and the data arrives
            assert second["reason"] == "the continued connection got no reply"
            assert second["stats"]["handshake_kind"] == "abbreviated", second
            assert second["wire"]["handshake_datagrams"] > 0
        assert nat.rebinds == 1
