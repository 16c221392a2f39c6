"""Connection ID across deep sleep (issue 9): each wake a new tools/wake.py process (no
close_notify), on CPython and MicroPython, against Mbed TLS 3.6 `ssl_server2 cid=1` behind
tools/netem.py routing by CID (ssl_server2 ties its socket to the client's first address; the relay routes
tls12_cid records by CID, as a CID-aware load balancer does).

- wakes at new addresses and ports with the saved server CID continue with no handshake;
- a NAT rebinding between wakes (a second relay moves its upstream port, the node's own address
  stays): with CID the continued request is answered; without CID it gets no answer and the
  client falls back to resumption, and the data arrives.
"""
import os
import tempfile

import pytest

import netem
import peers
from support import wire
from support.runtimes import RUNTIMES, run_tool

pytestmark = pytest.mark.interop

SERVER_CID = bytes.fromhex("beef01")  # peers.mbedtls_server(cid=True)
ANSWER = peers.MBEDTLS_RESPONSE % peers.MBEDTLS_SUITE


def wake(runtime, port, state, bind, *extra):
    return run_tool(runtime, "wake.py", "127.0.0.1", port, peers.IDENTITY, peers.PSK_HEX,
                    "--state", state, "--bind", "%s:%d" % bind, "--send", "reading",
                    "--timeout-ms", "300", "--retransmits", "5", "--reply-ms", "800", *extra,
                    timeout=90)


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
            netem.Relay((srv.host, srv.port), cid_len=len(SERVER_CID)) as front:
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
        assert front.cid_moves >= 3  # the front moved the association to each new address
        # every record we sent after the handshake is tls12_cid with the server's CID
        firsts = [wire.records(d, len(SERVER_CID))[0] for _, d in front.records(netem.UP)]
        ups = [r for r in firsts if r[wire.CTYPE] != 22 and r[wire.EPOCH] == 1]
        assert ups and all(r[wire.CTYPE] == 25 and r[wire.CID] == SERVER_CID for r in ups)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("cid", [True, False])
def test_nat_rebinding_between_wakes(runtime, cid, state_file):
    bind = ("127.0.0.2", peers.free_udp_port("127.0.0.2"))
    with peers.mbedtls_server(cid=cid, exchanges=100, read_timeout_ms=1000) as srv, \
            netem.Relay((srv.host, srv.port), cid_len=len(SERVER_CID)) as front, \
            netem.Relay(front.address) as nat:
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
