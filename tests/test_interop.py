"""Live interop: our client, on CPython and on the MicroPython unix port, against real DTLS
servers on loopback (OpenSSL s_server, GnuTLS gnutls-serv, Mbed TLS ssl_server2, pion/dtls).

Each case runs tools/run_client.py under the runtime as a subprocess and checks its JSON
report. A missing server or runtime fails the test (see conftest.py); nothing is skipped.
"""
import pytest

import peers
from support.runtimes import RUNTIMES, run_tool

pytestmark = pytest.mark.interop

CCM_8, CCM, GCM, CBC = "C0A8", "C0A4", "00A8", "00AE"
NAMES = {CCM_8: "TLS_PSK_WITH_AES_128_CCM_8", CCM: "TLS_PSK_WITH_AES_128_CCM",
         GCM: "TLS_PSK_WITH_AES_128_GCM_SHA256", CBC: "TLS_PSK_WITH_AES_128_CBC_SHA256"}
# (the PyPI micropython wrapper dies on any argv string of 256+ characters: keep them short)
MESSAGES = ["hello from dtls-lite", "a second record, " + "x" * 200]


def run_client(runtime, srv, *args, psk=None, timeout=60):
    """tools/run_client.py against srv under the runtime: its JSON report."""
    return run_tool(runtime, "run_client.py", srv.host, srv.port, srv.identity,
                    psk or srv.psk_hex, *args, timeout=timeout)


def sends(msgs):
    out = []
    for m in msgs:
        out += ["--send", m]
    return out


def check_echo(report, srv, suite, cookie=True):
    assert report["ok"], "%s\nserver log:\n%s" % (report, srv.output())
    assert report["suite"] == NAMES[suite]
    assert report["received"] == MESSAGES
    st = report["stats"]
    assert st["handshake_kind"] == "full" and st["hello_verify"] is cookie
    assert st["records_dropped"] == 0 and st["retransmissions"] == 0


def check_next_client_served(runtime, srv, suite):
    """These servers serve one association at a time and stay stuck on a client that left
    without close_notify: a second client getting through proves our close_notify arrived."""
    again = run_client(runtime, srv, "--suite", suite, "--send", "again")
    assert again["ok"] and again["received"] == ["again"], (again, srv.output())


# GCM needs a backend with GCM: pycryptodome has it, MicroPython's cryptolib does not.
@pytest.mark.parametrize("runtime,suite", [(r, s) for r in RUNTIMES for s in (CCM_8, CBC)] + [("cpython", GCM)])
def test_openssl_suites(runtime, suite):
    with peers.openssl_server() as srv:
        report = run_client(runtime, srv, "--suite", suite, *sends(MESSAGES))
        check_echo(report, srv, suite)
        check_next_client_served(runtime, srv, suite)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_default_offer_picks_ccm_8(runtime):
    """Without --suite the client offers everything its backend has, CCM_8 first."""
    with peers.openssl_server() as srv:
        report = run_client(runtime, srv, *sends(MESSAGES))
        check_echo(report, srv, CCM_8)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("cookie", [True, False])
@pytest.mark.parametrize("suite", [CCM_8, CCM, CBC])
def test_gnutls(runtime, cookie, suite):
    with peers.gnutls_server(cookie=cookie) as srv:
        report = run_client(runtime, srv, "--suite", suite, *sends(MESSAGES))
        check_echo(report, srv, suite, cookie=cookie)
        check_next_client_served(runtime, srv, suite)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_gnutls_ipv6_with_identity_hint_and_fixed_local_port(runtime):
    with peers.gnutls_server(host="::1", pskhint="sensor-net") as srv:
        port = peers.free_udp_port("::1")
        report = run_client(runtime, srv, "--bind", "[::1]:%d" % port, *sends(MESSAGES))
        check_echo(report, srv, CCM_8)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("suite", [CCM_8, CCM, CBC])
def test_mbedtls(runtime, suite):
    mb_suite = NAMES[suite].replace("_", "-")  # Mbed TLS spells suites with dashes
    with peers.mbedtls_server(suite=mb_suite) as srv:
        report = run_client(runtime, srv, "--suite", suite, "--send", "GET / HTTP/1.0\r\n\r\n",
                            "--expect-close")
        assert report["ok"], "%s\n%s" % (report, srv.output())
        assert report["suite"] == NAMES[suite]
        assert report["received"] == [peers.MBEDTLS_RESPONSE % mb_suite]
        assert report["peer_closed"] is True  # its close_notify reached us and was honoured
        assert report["stats"]["hello_verify"] is True
        # it serves the next client only once the previous association ended
        again = run_client(runtime, srv, "--suite", suite, "--send", "x")
        assert again["ok"] and again["received"] == [peers.MBEDTLS_RESPONSE % mb_suite]


@pytest.mark.parametrize("runtime,suite", [(r, s) for r in RUNTIMES for s in (CCM_8, CCM, CBC)]
                         + [("cpython", GCM)])
@pytest.mark.parametrize("cookie", [True, False])
def test_pion(runtime, suite, cookie):
    with peers.pion_server(cookie=cookie, pskhint="pion-hint") as srv:
        report = run_client(runtime, srv, "--suite", suite, *sends(MESSAGES))
        check_echo(report, srv, suite, cookie=cookie)


# CoAP (RFC 7252 3): version 1, confirmable, token length 1, GET; message ID 0x1234, token
# 0x77; option Uri-Path (11) "time".
COAP_GET_TIME = "41011234" + "77" + "b4" + b"time".hex()


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("backend", ["openssl", "gnutls"])
def test_coap_over_dtls_with_libcoap(runtime, backend):
    """What sensor nodes do: a CoAP request over DTLS to libcoap's coap-server."""
    with peers.coap_server(backend) as srv:
        report = run_client(runtime, srv, "--send-hex", COAP_GET_TIME)
    assert report["ok"], report
    assert report["suite"] == NAMES[CCM_8]
    reply = bytes.fromhex(report["received"][0])
    # piggybacked ACK (type 2), same message ID and token, code 2.05 Content, payload after 0xFF
    assert reply[0] >> 4 == 0x6 and reply[1] == (2 << 5) | 5, reply
    assert reply[2:4] == b"\x12\x34" and reply[4:5] == b"\x77", reply
    assert b"\xff" in reply and len(reply.split(b"\xff", 1)[1]) > 0, reply


WRONG_PSK = "00112233445566778899"


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("server", ["openssl", "gnutls", "mbedtls", "pion"])
def test_wrong_psk_is_reported_as_such(runtime, server):
    """OpenSSL, GnuTLS and pion silently drop the Finished they cannot decrypt, so the client
    can only time out, saying why; Mbed TLS answers with a fatal alert we name."""
    with peers.SERVERS[server]() as srv:
        report = run_client(runtime, srv, "--timeout-ms", "100", "--retransmits", "2", psk=WRONG_PSK)
    assert report["ok"] is False
    assert "wrong PSK" in report["message"]
    if server == "mbedtls":
        assert report["error"] == "AlertReceived" and report["alert"] == 20  # bad_record_mac
    else:
        assert report["error"] == "HandshakeTimeout"
    assert report["stats"]["handshake_kind"] is None


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("server,alert", [("mbedtls", 115), ("pion", 80)])  # unknown_psk_identity, internal_error
def test_unknown_identity(runtime, server, alert):
    with peers.SERVERS[server]() as srv:
        srv_identity = srv.identity
        srv.identity = "nobody"
        try:
            report = run_client(runtime, srv, "--timeout-ms", "100", "--retransmits", "2")
        finally:
            srv.identity = srv_identity
    assert report["error"] == "AlertReceived" and report["alert"] == alert
    assert "wrong PSK or identity" in report["message"]
