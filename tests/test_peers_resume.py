"""tools/pion_server keeps a session store and many associations: proved with the reference
clients (OpenSSL s_client, gnutls-cli), seen on the wire through a lossless tools/netem.py relay.

- It resumes by session ID (RFC 5246 7.3) and, unlike s_server and ssl_server2, skips the
  HelloVerifyRequest on resumption: one ClientHello, ServerHello + CCS + Finished, ours.
- Server.restart() brings it back on the same port knowing nothing: the offer gets a full
  handshake.
- A client that goes silent mid-handshake does not hold up the next one (each handshake runs in
  its own goroutine) and is dropped after -hstimeout.
- It requires extended master secret unless started with -noems.
"""
import socket

import pytest

import netem
import peers
from support import wire

pytestmark = pytest.mark.interop

HELLO_VERIFY_REQUEST, CLIENT_HELLO, SERVER_HELLO = 3, 1, 2


class Via:
    """A peers.Server stand-in that points a reference client at the relay."""

    def __init__(self, srv, relay):
        self.host, self.port = relay.address
        self.psk_hex, self.identity, self.srv = srv.psk_hex, srv.identity, srv

    def output(self):
        return self.srv.output()


def handshake_types(relay, direction):
    """Types of the epoch-0 handshake records a direction carried (each record's first
    message), in order (RFC 6347 4.2.2)."""
    return [r[wire.FRAGMENT][0] for d, data, _ in relay.captured if d == direction
            for r in wire.records(data, partial=True)
            if r[wire.CTYPE] == wire.CT_HANDSHAKE and r[wire.EPOCH] == 0]


def s_client(srv, relay, sess_flag, sess_file):
    ok, out = peers.openssl_client_echo(Via(srv, relay), data=b"resume me\n",
                                        extra=[sess_flag, sess_file, "-no_ticket"])
    assert ok, "s_client failed:\n%s\n--- server:\n%s" % (out[-3000:], srv.output()[-3000:])
    return out


def session_id(out):
    line = [l for l in out.splitlines() if "Session-ID:" in l][0]
    return line.split(":", 1)[1].strip().lower()


def test_pion_resumes_by_session_id_without_cookie_exchange(tmp_path):
    sess = str(tmp_path / "sess.pem")
    with peers.pion_server() as srv:
        with netem.Relay(srv.address) as relay:
            out = s_client(srv, relay, "-sess_out", sess)
        assert "New, TLSv1.2" in out
        sid = session_id(out)
        assert len(sid) == 64 and srv.wait_for_output("session stored " + sid)
        # the full handshake had the cookie exchange: CH, HVR, CH (with cookie), SH ...
        assert handshake_types(relay, netem.UP)[:2] == [CLIENT_HELLO, CLIENT_HELLO]
        assert handshake_types(relay, netem.DOWN)[:2] == [HELLO_VERIFY_REQUEST, SERVER_HELLO]

        with netem.Relay(srv.address) as relay:  # a new source port, as after a wake
            out = s_client(srv, relay, "-sess_in", sess)
        assert "Reused, TLSv1.2" in out and session_id(out) == sid
        assert srv.wait_for_output("session resumed " + sid)
        # abbreviated, no cookie exchange: one ClientHello, answered by ServerHello at once
        assert handshake_types(relay, netem.UP) == [CLIENT_HELLO]
        assert handshake_types(relay, netem.DOWN) == [SERVER_HELLO]
        assert srv.output().count("echo 10 bytes") == 2


def test_pion_restart_forgets_sessions_on_the_same_port(tmp_path):
    sess = str(tmp_path / "sess.pem")
    with peers.pion_server(cookie=False) as srv:
        port, pid = srv.port, srv.pid
        ok, out = peers.openssl_client_echo(srv, extra=["-sess_out", sess, "-no_ticket"])
        assert ok and "New, TLSv1.2" in out, out[-3000:]
        sid = session_id(out)
        srv.restart()
        assert srv.port == port and srv.pid != pid and srv.alive()
        ok, out = peers.openssl_client_echo(srv, extra=["-sess_in", sess, "-no_ticket"])
        assert ok, out[-3000:]
        assert "New, TLSv1.2" in out and session_id(out) != sid  # a full handshake
        assert srv.wait_for_output("session unknown " + sid)


def test_pion_silent_client_does_not_block_others_and_times_out(tmp_path):
    with peers.pion_server(hstimeout=3) as srv:
        assert "-hstimeout" in srv.argv and "3000ms" in srv.argv
        # Capture a real ClientHello, then replay it from a socket that never answers the
        # HelloVerifyRequest: that association stays mid-handshake until -hstimeout.
        with netem.Relay(srv.address) as relay:
            ok, out = peers.openssl_client_echo(Via(srv, relay))
        assert ok, out[-3000:]
        hello = [data for d, data, _ in relay.captured if d == netem.UP][0]
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            silent.bind(("127.0.0.1", 0))
            silent_addr = "%s:%d" % silent.getsockname()
            silent.sendto(hello, srv.address)
            silent.settimeout(2.0)
            assert silent.recv(2048)[0] == 22  # the HelloVerifyRequest: it is mid-handshake
            ok, out = peers.openssl_client_echo(srv, data=b"while another one hangs\n")
            assert ok, out[-3000:]
            assert srv.wait_for_output("handshake failed from " + silent_addr, timeout=15)
        finally:
            silent.close()
        log = srv.output()
        # order, not timing: the second client finished while the silent one was still pending
        # (pion's own Listener.Accept would have served it only after the silent one failed)
        assert log.count("handshake done from") == 2
        assert log.rindex("handshake done from") < log.index("handshake failed from " + silent_addr)
        assert "echo 24 bytes" in log


@pytest.mark.parametrize("noems", [False, True])
def test_pion_extended_master_secret_required_unless_noems(noems):
    no_ems_priority = peers.GNUTLS_PRIORITY + ":%NO_SESSION_HASH"
    with peers.pion_server(noems=noems) as srv:
        ok, out = peers.gnutls_client_echo(srv, priority=no_ems_priority)
        assert ok is noems, out[-3000:] + "\n--- server:\n" + srv.output()[-3000:]
        if not noems:
            assert srv.wait_for_output("handshake failed from")
        # a client with EMS is served either way
        ok, out = peers.gnutls_client_echo(srv)
        assert ok, out[-3000:]
