"""Live interop of Connection ID (RFC 9146): our client, on CPython and on the MicroPython unix
port, against Mbed TLS 3.6 `ssl_server2 cid=1 cid_val=beef01` behind tools/netem.py's relay
routing by CID, a CID-routing UDP front (ssl_server2 ties its socket to the client's first address; the front
does what a CID-aware load balancer does, and records every datagram for the checks below).

Each case runs tools/cid_client.py under the runtime as a subprocess and checks its JSON report
and the records the front saw. A missing server or runtime fails the test; nothing is skipped.
"""
import pytest

import netem
import peers
from support import wire
from support.runtimes import RUNTIMES, run_tool

pytestmark = pytest.mark.interop

SERVER_CID = bytes.fromhex("beef01")  # peers.mbedtls_server(cid=True)
CCM_8 = "TLS-PSK-WITH-AES-128-CCM-8"
ANSWER = peers.MBEDTLS_RESPONSE % CCM_8


def run_client(runtime, port, srv, *args, timeout=60):
    """tools/cid_client.py against 127.0.0.1:port under the runtime: its JSON report."""
    return run_tool(runtime, "cid_client.py", "127.0.0.1", port, srv.identity, srv.psk_hex, *args,
                    timeout=timeout)


def server_and_front(**kw):
    try:
        srv_cm = peers.mbedtls_server(**kw)
        srv = srv_cm.__enter__()
    except peers.PeerUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    return srv_cm, srv, netem.Relay((srv.host, srv.port), cid_len=len(SERVER_CID)).start()


CT, EPOCH, CID, RAW = wire.CTYPE, wire.EPOCH, wire.CID, wire.RAW  # fields of wire.records


def epoch1(front, direction, cid_len):
    return [r for _, d in front.records(direction) for r in wire.records(d, cid_len) if r[EPOCH] == 1]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("client_cid", ["empty", "c1c2c3c4"])
def test_mbedtls_cid_records_both_ways(runtime, client_cid):
    """Handshake and data both ways; every record we send under the new keys is tls12_cid
    with the server's CID (be:ef:01); the server's carry our CID only when ours is non-empty."""
    srv_cm, srv, front = server_and_front(exchanges=2)
    try:
        report = run_client(runtime, front.port, srv, "--cid", client_cid, "--send", "first",
                            "--send", "second " * 20, "--expect-close")
    finally:
        front.close()
        srv_cm.__exit__(None, None, None)
    assert report["ok"], "%s\n%s" % (report, srv.output())
    ours = b"" if client_cid == "empty" else bytes.fromhex(client_cid)
    assert report["write_cid"] == "beef01" and report["read_cid"] == ours.hex()
    assert report["received"] == [ANSWER, ANSWER] and report["peer_closed"] is True
    assert report["stats"]["records_dropped"] == 0
    assert "Use of Connection ID has been negotiated" in srv.output()
    up = epoch1(front, netem.UP, len(SERVER_CID))
    # Finished, two requests, close_notify: all tls12_cid with the server's CID
    assert len(up) == 4 and all(r[CT] == 25 and r[CID] == SERVER_CID for r in up), up
    # 19-byte header with the 3-byte CID... 13 + 3 CID + 8 explicit nonce + 8 tag + 1 inner type
    assert len(up[1][RAW]) == len(b"first") + 33
    down = epoch1(front, netem.DOWN, len(ours))
    assert len(down) == 4  # Finished, two answers, close_notify
    if ours:
        assert all(r[CT] == 25 and r[CID] == ours for r in down), down
    else:
        assert [r[CT] for r in down] == [22, 23, 23, 21]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("client_cid", ["empty", "0badcafe"])
def test_mbedtls_cid_connection_survives_a_new_address_and_port(runtime, client_cid):
    """The client moves from 127.0.0.2 to 127.0.0.3 (a new socket, new port) mid-connection
    and goes on with the same keys: the front routes by CID, ssl_server2 answers."""
    srv_cm, srv, front = server_and_front(exchanges=3)
    try:
        report = run_client(runtime, front.port, srv, "--cid", client_cid, "--bind", "127.0.0.2:0",
                            "--send", "before", "--move", "127.0.0.3:0", "--send", "after the move",
                            "--send", "again")
    finally:
        front.close()
        srv_cm.__exit__(None, None, None)
    assert report["ok"], "%s\n%s" % (report, srv.output())
    assert report["moves"] == 1 and report["write_cid"] == "beef01"
    assert report["received"] == [ANSWER] * 3, srv.output()
    assert report["stats"]["handshake_kind"] == "full" and report["stats"]["records_dropped"] == 0
    sources = [c for c, _ in front.records(netem.UP)]
    assert {c[0] for c in sources} == {"127.0.0.2", "127.0.0.3"}
    assert len(front.associations) == 1 and front.cid_moves == 1 and front.dropped == 0
    # what the server sent after the move (two answers, then its close_notify after the
    # third exchange) went to the new address
    moved = [c for c, d in front.records(netem.DOWN) if c[0] == "127.0.0.3"]
    assert len(moved) == 3


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_without_cid_a_moved_client_gets_no_answer(runtime):
    """Control: the same move without the extension reaches the server as a stranger (routed
    by address), and ssl_server2 does not answer it."""
    srv_cm, srv, front = server_and_front(exchanges=3)
    try:
        report = run_client(runtime, front.port, srv, "--cid", "off", "--bind", "127.0.0.2:0",
                            "--send", "before", "--move", "127.0.0.3:0", "--send", "after the move",
                            "--reply-ms", "1500")
    finally:
        front.close()
        srv_cm.__exit__(None, None, None)
    assert report["ok"] and report["write_cid"] == "" and report["read_cid"] == ""
    assert report["received"] == [ANSWER, None]
    assert len(front.associations) == 2 and front.cid_moves == 0
    assert all(r[CT] != 25 for _, d in front.records(netem.UP) for r in wire.records(d, 0))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mbedtls_resumption_negotiates_the_cid_again(runtime):
    """RFC 9146 3: a resumed session negotiates connection_id afresh; the abbreviated
    handshake's Finished and the data after it are tls12_cid records."""
    srv_cm, srv, front = server_and_front()
    try:
        report = run_client(runtime, front.port, srv, "--cid", "a1a2", "--send", "full",
                            "--expect-close", "--resume", "resumed")
    finally:
        front.close()
        srv_cm.__exit__(None, None, None)
    assert report["ok"], "%s\n%s" % (report, srv.output())
    assert report["received"] == [ANSWER] and report["peer_closed"] is True
    assert report["resumed"] == {"kind": "abbreviated", "write_cid": "beef01", "read_cid": "a1a2",
                                 "received": ANSWER}, srv.output()
    # the second connection: its epoch-1 records, both ways, carry the CIDs
    last = front.associations[-1].client
    up = [r for c, d in front.records(netem.UP) if c == last for r in wire.records(d, 3) if r[EPOCH] == 1]
    down = [r for c, d in front.records(netem.DOWN) if c == last for r in wire.records(d, 2) if r[EPOCH] == 1]
    assert up and all(r[CT] == 25 and r[CID] == SERVER_CID for r in up)
    assert down and all(r[CT] == 25 and r[CID] == b"\xa1\xa2" for r in down)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_server_without_cid_support_changes_nothing(runtime):
    """ssl_server2 with cid=0 ignores the offer: RFC 6347 records, as before."""
    srv_cm, srv, front = server_and_front(cid=False)
    try:
        report = run_client(runtime, front.port, srv, "--cid", "c1", "--send", "hello")
    finally:
        front.close()
        srv_cm.__exit__(None, None, None)
    assert report["ok"] and report["received"] == [ANSWER]
    assert report["write_cid"] == "" and report["read_cid"] == ""
    both = front.records(netem.UP) + front.records(netem.DOWN)
    assert both and all(r[CT] != 25 for _, d in both for r in wire.records(d, 0))


@pytest.mark.parametrize("with_cid", [True, False])
def test_nat_rebinding_relay_mid_connection(with_cid):
    """A NAT between client and front moves to a new source port mid-connection (a second relay);
    the client itself does not change. With a CID the front routes the request to the same
    association and the answer comes back; without one it does not (the adapter's fallback to
    a new handshake is the wake policy's business, not this layer's)."""
    from dtls_lite.client import DTLSClient

    srv_cm, srv, front = server_and_front(exchanges=2)
    try:
        with netem.Relay(upstream=front.address) as nat:
            c = DTLSClient(nat.address[0], nat.address[1], srv.identity, bytes.fromhex(srv.psk_hex),
                           cid=b"" if with_cid else None)
            try:
                c.send(b"before")
                first = c.recv(3000)
                nat.rebind()
                c.send(b"after the rebinding")
                second = c.recv(1500)
            finally:
                c.close()
    finally:
        front.close()
        srv_cm.__exit__(None, None, None)
    assert first == ANSWER.encode()
    assert c.conn.write_cid == (SERVER_CID if with_cid else b"")
    ports = {c[1] for c, _ in front.records(netem.UP)}
    assert len(ports) == 2  # the front saw the client at two source ports
    if with_cid:
        assert second == ANSWER.encode() and front.cid_moves == 1 and len(front.associations) == 1
    else:
        assert second is None and len(front.associations) == 2
