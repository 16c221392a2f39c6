"""The real DTLS peers work on this machine: each server starts, and its reference client
completes a PSK handshake and gets data back. Every step is bounded by a timeout."""
import os

import pytest

import peers

pytestmark = pytest.mark.interop


def _check(ok, out, server):
    assert ok, "reference client failed against %r\n--- client output:\n%s\n--- server output:\n%s" % (
        server, out[-3000:], server.output()[-3000:])


def test_openssl_server_echo(openssl_server):
    ok, out = peers.openssl_client_echo(openssl_server)
    _check(ok, out, openssl_server)
    assert "PSK-AES128-" in out  # a PSK suite was negotiated
    assert "[echo " in openssl_server.output()


def test_openssl_server_binary_echo_and_next_client(openssl_server):
    # Lines that s_server would take as commands without -quiet ("Q" quits, "r" renegotiates)
    # are plain data here; a second client is served after the first sent close_notify.
    data = bytes(range(1, 10)) + b"r\nk\n" + bytes(range(11, 32)) + b"\n"
    ok, out = peers.openssl_client_echo(openssl_server, data=data,
                                        ciphers="PSK-AES128-CCM8:@SECLEVEL=0")
    _check(ok, out, openssl_server)
    assert "PSK-AES128-CCM8" in out
    ok, out = peers.openssl_client_echo(openssl_server, data=b"second client\n")
    _check(ok, out, openssl_server)
    assert openssl_server.alive()


@pytest.mark.parametrize("openssl_server", [{"host": "::1"}], indirect=True)
def test_openssl_server_ipv6(openssl_server):
    assert openssl_server.host == "::1"
    ok, out = peers.openssl_client_echo(openssl_server)
    _check(ok, out, openssl_server)


def test_gnutls_server_echo(gnutls_server):
    ok, out = peers.gnutls_client_echo(gnutls_server)
    _check(ok, out, gnutls_server)
    assert "-(PSK)-" in out and "DTLS1.2" in out
    ok, out = peers.gnutls_client_echo(gnutls_server, data=b"second client\n")
    _check(ok, out, gnutls_server)


@pytest.mark.parametrize("gnutls_server", [{"cookie": False, "pskhint": "hint"}], indirect=True)
def test_gnutls_server_nocookie_hint(gnutls_server):
    assert "--nocookie" in gnutls_server.argv
    ok, out = peers.gnutls_client_echo(gnutls_server)
    _check(ok, out, gnutls_server)


@pytest.mark.parametrize("gnutls_server", [{"host": "::1"}], indirect=True)
def test_gnutls_server_ipv6(gnutls_server):
    ok, out = peers.gnutls_client_echo(gnutls_server)
    _check(ok, out, gnutls_server)


def test_mbedtls_server_cid_and_resumption(mbedtls_server):
    rc, out = peers.mbedtls_client(mbedtls_server, extra=["cid=1", "reconnect=1"])
    assert rc == 0, out[-3000:] + "\n--- server:\n" + mbedtls_server.output()[-3000:]
    assert "Ciphersuite is TLS-PSK-WITH-AES-128-CCM-8" in out
    assert "Peer CID (length 3 Bytes): be ef 01" in out
    assert "Reconnecting with saved session... ok" in out
    # the fixed answer, twice (first connection and the resumed one)
    assert out.count("Successful connection using: TLS-PSK-WITH-AES-128-CCM-8") == 2
    assert "139 bytes read" in out
    assert len(peers.MBEDTLS_RESPONSE % peers.MBEDTLS_SUITE) == 139
    assert mbedtls_server.wait_for_output("Closing the connection... done")
    assert mbedtls_server.alive()


@pytest.mark.parametrize("mbedtls_server", [{"cid": False, "suite": None, "cookies": False,
                                             "host": "::1"}], indirect=True)
def test_mbedtls_server_options(mbedtls_server):
    rc, out = peers.mbedtls_client(
        mbedtls_server, extra=["force_ciphersuite=TLS-PSK-WITH-AES-128-CBC-SHA256"])
    assert rc == 0, out[-3000:] + "\n--- server:\n" + mbedtls_server.output()[-3000:]
    assert "Ciphersuite is TLS-PSK-WITH-AES-128-CBC-SHA256" in out
    assert "hello verification requested" not in mbedtls_server.output()


@pytest.mark.parametrize("name", sorted(peers.SERVERS))
def test_server_is_stopped_on_exit(name):
    with peers.SERVERS[name]() as srv:
        assert srv.alive() and srv.port > 0 and srv.host == "127.0.0.1"
        assert srv.name == name
    assert srv.proc.returncode is not None
    assert not os.path.exists("/proc/%d" % srv.pid)


def test_missing_binary_names_install_command(monkeypatch):
    monkeypatch.setattr(peers, "PEERS_BIN", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(peers.PeerUnavailable, match="make peers"):
        with peers.mbedtls_server():
            pass
