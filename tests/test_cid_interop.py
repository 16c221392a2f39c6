"""Live interop of Connection ID (RFC 9146): our client, on CPython and on the MicroPython unix
port, against Mbed TLS 3.6 `ssl_server2 cid=1 cid_val=beef01` behind tests/cid_front.py, a
CID-routing UDP front (ssl_server2 ties its socket to the client's first address; the front
does what a CID-aware load balancer does, and records every datagram for the checks below).

Each case runs tools/cid_client.py under the runtime as a subprocess and checks its JSON report
and the records the front saw. A missing server or runtime fails the test; nothing is skipped.
"""
import json
import os
import subprocess
import sys

import pytest

import cid_front
import peers
from test_micropython import micropython_binary

pytestmark = pytest.mark.interop

ROOT = peers.ROOT
CID_CLIENT = os.path.join(ROOT, "tools", "cid_client.py")
RUNTIMES = ["cpython", "micropython"]
SERVER_CID = bytes.fromhex("beef01")  # peers.mbedtls_server(cid=True)
CCM_8 = "TLS-PSK-WITH-AES-128-CCM-8"
ANSWER = peers.MBEDTLS_RESPONSE % CCM_8


def run_client(runtime, port, srv, *args, timeout=60):
    exe = micropython_binary() if runtime == "micropython" else sys.executable
    argv = [exe, CID_CLIENT, "127.0.0.1", str(port), srv.identity, srv.psk_hex] + list(args)
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, "client crashed:\n%s\n%s" % (p.stdout, p.stderr)
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["runtime"] == runtime
    return report


def server_and_front(**kw):
    try:
        srv_cm = peers.mbedtls_server(**kw)
        srv = srv_cm.__enter__()
    except peers.PeerUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    return srv_cm, srv, cid_front.CidFront((srv.host, srv.port), cid_len=len(SERVER_CID))


def records(datagram, cid_len):
    """[(content type, epoch, cid or None, whole record)] of a datagram."""
    out = []
    off = 0
    while off < len(datagram):
        ctype, epoch = datagram[off], int.from_bytes(datagram[off + 3:off + 5], "big")
        h = off + 11 + (cid_len if ctype == 25 else 0)
        cid = datagram[off + 11:h] if ctype == 25 else None
        end = h + 2 + int.from_bytes(datagram[h:h + 2], "big")
        out.append((ctype, epoch, cid, datagram[off:end]))
        off = end
    return out


def epoch1(front, direction, cid_len):
    return [r for _, d in front.records(direction) for r in records(d, cid_len) if r[1] == 1]


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
    up = epoch1(front, cid_front.UP, len(SERVER_CID))
    # Finished, two requests, close_notify: all tls12_cid with the server's CID
    assert len(up) == 4 and all(r[0] == 25 and r[2] == SERVER_CID for r in up), up
    # 19-byte header with the 3-byte CID... 13 + 3 CID + 8 explicit nonce + 8 tag + 1 inner type
    assert len(up[1][3]) == len(b"first") + 33
    down = epoch1(front, cid_front.DOWN, len(ours))
    assert len(down) == 4  # Finished, two answers, close_notify
    if ours:
        assert all(r[0] == 25 and r[2] == ours for r in down), down
    else:
        assert [r[0] for r in down] == [22, 23, 23, 21]


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
    sources = [c for c, _ in front.records(cid_front.UP)]
    assert {c[0] for c in sources} == {"127.0.0.2", "127.0.0.3"}
    assert len(front.associations) == 1 and front.rebinds == 1 and front.dropped == 0
    # what the server sent after the move (two answers, then its close_notify after the
    # third exchange) went to the new address
    moved = [c for c, d in front.records(cid_front.DOWN) if c[0] == "127.0.0.3"]
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
    assert len(front.associations) == 2 and front.rebinds == 0
    assert all(r[0] != 25 for _, d in front.records(cid_front.UP) for r in records(d, 0))


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
    up = [r for c, d in front.records(cid_front.UP) if c == last for r in records(d, 3) if r[1] == 1]
    down = [r for c, d in front.records(cid_front.DOWN) if c == last for r in records(d, 2) if r[1] == 1]
    assert up and all(r[0] == 25 and r[2] == SERVER_CID for r in up)
    assert down and all(r[0] == 25 and r[2] == b"\xa1\xa2" for r in down)


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
    both = front.records(cid_front.UP) + front.records(cid_front.DOWN)
    assert both and all(r[0] != 25 for _, d in both for r in records(d, 0))


@pytest.mark.parametrize("with_cid", [True, False])
def test_nat_rebinding_relay_mid_connection(with_cid):
    """A NAT between client and front moves to a new source port mid-connection (tests/netem.py);
    the client itself does not change. With a CID the front routes the request to the same
    association and the answer comes back; without one it does not (the adapter's fallback to
    a new handshake is the wake policy's business, not this layer's)."""
    import netem
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
    ports = {c[1] for c, _ in front.records(cid_front.UP)}
    assert len(ports) == 2  # the front saw the client at two source ports
    if with_cid:
        assert second == ANSWER.encode() and front.rebinds == 1 and len(front.associations) == 1
    else:
        assert second is None and len(front.associations) == 2
