"""tinydtls as a real peer (issue 17): aiocoap 0.4.17's CoAP server over its tinydtls_server
transport (DTLSSocket 0.2.3, tinydtls 0.8.6), tools/coap_server.py started by
peers.aiocoap_server; our client on CPython, the 64-bit MicroPython and the 32-bit one.

What tinydtls does (measured here, asserted below): it offers the PSK suites CCM_8 and CCM only
(GCM and CBC get a handshake_failure alert), always sends a HelloVerifyRequest, requires the
extended master secret (and renegotiation_info), negotiates no CID although we offer one, and
sends an EMPTY session ID: nothing can be resumed, so a forced resumption is a full handshake
at once (the client has no session to offer). A connection continues after deep sleep with no
handshake; after a server restart the continued request gets no reply and the wake falls back
to a full handshake.

aiocoap deduplicates CoAP messages (RFC 7252 4.5) by (remote, message ID) for 247 s, and its
remote is the per-address DTLS object that a new ClientHello from the same address and port
keeps: a node that restarts its message ID at every wake gets the FIRST wake's answer again,
after a continued connection and after a new full handshake alike (the hazard test asserts the
stale answer, so this rig proves the server deduplicates). A new local address is a new remote.

Each wake is a new process of tools/coap_wake.py with a FileStore state file (raw mode: a
hand-made CON POST with the message ID the test gives; coap mode: dtls_lite.coap with message
IDs from reserve_counter). A missing server or runtime FAILS the test; nothing is skipped.
"""
import json
import subprocess

import pytest

import netem
import peers
from support import wire
from support.runtimes import run_tool

pytestmark = pytest.mark.interop

RUNTIMES3 = ("cpython", "micropython", "micropython32")
CCM_8, CCM, GCM, CBC = "C0A8", "C0A4", "00A8", "00AE"
NAMES = {CCM_8: "TLS_PSK_WITH_AES_128_CCM_8", CCM: "TLS_PSK_WITH_AES_128_CCM",
         GCM: "TLS_PSK_WITH_AES_128_GCM_SHA256", CBC: "TLS_PSK_WITH_AES_128_CBC_SHA256"}
# Short timers: a handshake nobody answers gives up in ~3 s, a continued request after 1 s.
TIMERS = ["--timeout-ms", "200", "--retransmits", "3", "--reply-ms", "1000"]
EXT_RENEGOTIATION_INFO = 0xFF01
HANDSHAKE_FAILURE = 40


def coap_post(path, payload, mid, token=b"\x77"):
    """A CON POST by hand (RFC 7252 3): version 1, token length, code 0.02, the message ID, the
    token, one Uri-Path option (11) per segment, 0xFF, the payload."""
    out = bytearray((0x40 | len(token), 0x02, mid >> 8, mid & 0xFF)) + token
    delta = 11
    for seg in path.strip("/").split("/"):
        out += bytes((delta << 4 | len(seg),)) + seg.encode()
        delta = 0
    return bytes(out + b"\xff" + payload)


def parse_ack(reply):
    """(type, code, mid, token, payload) of a reply without options (aiocoap's /echo answer)."""
    tkl = reply[0] & 0x0F
    body = reply[4 + tkl:]
    payload = body[1:] if body[:1] == b"\xff" else b""
    return reply[0] >> 4 & 3, reply[1], reply[2] << 8 | reply[3], reply[4:4 + tkl], payload


def run_client(runtime, srv, *args, timeout=60):
    return run_tool(runtime, "run_client.py", srv.host, srv.port, srv.identity, srv.psk_hex,
                    *args, timeout=timeout)


def _log(r, srv):
    return "%s\nserver log (end):\n%s" % (json.dumps(r, indent=1), srv.output()[-3000:])


def check_echo_reply(report, srv, hexreply, mid, payload):
    typ, code, rmid, token, body = parse_ack(bytes.fromhex(hexreply))
    assert (typ, code, rmid, token) == (2, 0x45, mid, b"\x77"), _log(report, srv)  # ACK 2.05
    assert body == payload, _log(report, srv)


# ---- full handshakes: the suites -----------------------------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES3)
@pytest.mark.parametrize("suite", [CCM_8, CCM])
def test_full_handshake_and_coap_echo(runtime, suite):
    with peers.aiocoap_server() as srv:
        req = coap_post("echo", b"hello tinydtls", 0x1234)
        r = run_client(runtime, srv, "--suite", suite, "--send-hex", req.hex())
        assert r["ok"], _log(r, srv)
        assert r["suite"] == NAMES[suite]
        check_echo_reply(r, srv, r["received"][0], 0x1234, b"hello tinydtls")
        st = r["stats"]
        assert st["handshake_kind"] == "full" and st["hello_verify"] is True, _log(r, srv)
        assert st["round_trips"] == 3 and st["retransmissions"] == 0 and st["records_dropped"] == 0
        assert r["closed_cleanly"] is True
        assert srv.wait_for_output("request POST /echo mid=4660 token=77")


@pytest.mark.parametrize("runtime", RUNTIMES3)
def test_default_offer_picks_ccm_8(runtime):
    with peers.aiocoap_server() as srv:
        r = run_client(runtime, srv, "--send-hex", coap_post("echo", b"x", 7).hex())
        assert r["ok"] and r["suite"] == NAMES[CCM_8], _log(r, srv)
        check_echo_reply(r, srv, r["received"][0], 7, b"x")


# GCM only where the backend has it (pycryptodome); CBC everywhere.
@pytest.mark.parametrize("runtime,suite", [(r, CBC) for r in RUNTIMES3] + [("cpython", GCM)])
def test_suites_tinydtls_does_not_have_are_refused(runtime, suite):
    with peers.aiocoap_server() as srv:
        r = run_client(runtime, srv, "--suite", suite, "--timeout-ms", "200", "--retransmits", "1")
    assert r["ok"] is False and r["error"] == "AlertReceived", r
    assert r["alert"] == HANDSHAKE_FAILURE, r
    assert r["stats"]["hello_verify"] is True  # the cookie exchange came first


def test_what_tinydtls_negotiates_on_the_wire():
    """Through a relay: HelloVerifyRequest, then a ServerHello with CCM_8, an empty session ID,
    extended_master_secret and renegotiation_info, and no connection_id although we offered
    one (RFC 9146): tinydtls has no CID."""
    with peers.aiocoap_server() as srv:
        with netem.Relay(srv.address) as relay:
            r = run_tool("cpython", "run_client.py", relay.address[0], relay.address[1], srv.identity,
                         srv.psk_hex, "--send-hex", coap_post("echo", b"wire", 9).hex())
            captured = relay.captured
    assert r["ok"], _log(r, srv)
    up = [m for d, data, _ in captured if d == netem.UP for m in wire.handshake_messages(data)]
    down = [m for d, data, _ in captured if d == netem.DOWN for m in wire.handshake_messages(data)]
    assert [m[wire.MSG_TYPE] for m in down][:2] == [wire.HT_HELLO_VERIFY_REQUEST, wire.HT_SERVER_HELLO]
    hellos = [wire.client_hello(m[wire.BODY]) for m in up if m[wire.MSG_TYPE] == wire.HT_CLIENT_HELLO]
    assert len(hellos) == 2 and hellos[1]["cookie"] and not hellos[0]["cookie"]
    assert wire.extension(hellos[1], wire.EXT_CONNECTION_ID) is not None  # we offered a CID
    sh = wire.server_hello([m for m in down if m[wire.MSG_TYPE] == wire.HT_SERVER_HELLO][0][wire.BODY])
    assert sh["suite"] == 0xC0A8 and sh["session_id"] == b""
    assert sorted(t for t, _ in sh["extensions"]) == [wire.EXT_EXTENDED_MASTER_SECRET, EXT_RENEGOTIATION_INFO]
    # no ServerKeyExchange (no identity hint): HelloVerifyRequest, ServerHello, ServerHelloDone
    assert [m[wire.MSG_TYPE] for m in down if m[wire.MSG_TYPE] != wire.HT_FINISHED][:3] == \
        [wire.HT_HELLO_VERIFY_REQUEST, wire.HT_SERVER_HELLO, wire.HT_SERVER_HELLO_DONE]


GNUTLS_CCM = ("NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8:+AES-128-CCM"
              ":-MAC-ALL:+AEAD")


@pytest.mark.parametrize("without,completes", [("", True), ("%NO_SESSION_HASH", False),
                                               ("%DISABLE_SAFE_RENEGOTIATION", False)])
def test_tinydtls_requires_ems_and_renegotiation_info(without, completes):
    """The reference client gnutls-cli completes the handshake, but not without the extended
    master secret (RFC 7627) nor without renegotiation_info (RFC 5746): tinydtls 0.8.6 requires
    both (force_extended_master_secret, force_renegotiation_info)."""
    priority = GNUTLS_CCM + (":" + without if without else "")
    with peers.aiocoap_server() as srv:
        p = subprocess.run([peers.find_binary("gnutls-cli"), "--udp", "--priority", priority,
                            "--pskusername", srv.identity, "--pskkey", srv.psk_hex,
                            "-p", str(srv.port), srv.host], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert ("Handshake was completed" in out) is completes, out
    assert (p.returncode == 0) is completes, out


# ---- wakes: each a new process with a state file -------------------------------------------

class Node:
    """A sleepy node: a state file, two local addresses, a runtime; wakes by coap_wake.py."""

    def __init__(self, runtime, srv, tmp_path):
        self.runtime = runtime
        self.srv = srv
        self.state = str(tmp_path / "state.bin")
        self.a = "127.0.0.2:%d" % peers.free_udp_port("127.0.0.2")
        self.b = "127.0.0.3:%d" % peers.free_udp_port("127.0.0.3")
        self.n = 0

    def wake(self, bind, *extra, mid=None):
        """One wake POSTing "wake N" to /echo by hand with message ID `mid` (default 100 + N:
        a new one each wake)."""
        self.n += 1
        msg = "wake %d" % self.n
        r = run_tool(self.runtime, "coap_wake.py", self.srv.host, self.srv.port, self.srv.identity,
                     self.srv.psk_hex, "--state", self.state, "--bind", bind,
                     "--raw-post", "echo", msg, "--raw-mid", 100 + self.n if mid is None else mid,
                     *(TIMERS + list(extra)), timeout=60)
        r["_msg"] = msg
        return r


def answered(r, srv, expect=None):
    assert r["ok"], _log(r, srv)
    (req,) = r["requests"]
    assert (req["code"], req["reply_type"], req["reply_mid"]) == ("2.05", 2, req["mid"]), _log(r, srv)
    assert req["payload"] == (r["_msg"] if expect is None else expect), _log(r, srv)


def full(r, srv, reason, policy="full", expect=None):
    answered(r, srv, expect)
    assert (r["policy"], r["action"], r["reason"]) == (policy, "full", reason), _log(r, srv)
    st = r["stats"]
    assert st["handshake_kind"] == "full" and st["hello_verify"] is True, _log(r, srv)
    assert st["round_trips"] == 3 and r["wire"]["handshake_datagrams"] > 0, _log(r, srv)


def continued(r, srv, expect=None, close=False):
    """0-RTT: no handshake datagram, the request (and any retry of it) the only datagrams out
    (and with close, the close_notify)."""
    answered(r, srv, expect)
    assert (r["policy"], r["action"], r["reason"]) == ("continue", "continue", "same local address and port"), _log(r, srv)
    assert r["stats"]["handshake_kind"] == "continued"
    w = r["wire"]
    assert w["handshake_datagrams"] == 0 and w["datagrams_sent"] == 1 + r["retries"] + close, _log(r, srv)


@pytest.mark.parametrize("runtime", RUNTIMES3)
def test_wakes(runtime, tmp_path):
    with peers.aiocoap_server() as srv:
        node = Node(runtime, srv, tmp_path)
        full(node.wake(node.a), srv, "no valid saved state")
        continued(node.wake(node.a), srv)
        continued(node.wake(node.a), srv)
        # tinydtls gave no session ID: nothing to resume, the forced wake is a full handshake
        # (the client offers no session at all)
        full(node.wake(node.a, "--force-resume"), srv, "resumption forced, but no resumable session")
        continued(node.wake(node.a), srv)
        # a new local address: no session to resume there either, so a full handshake
        full(node.wake(node.b), srv, "local address or port changed, and the session cannot be resumed")
        continued(node.wake(node.b), srv)
        # the server restarted: the continued request gets no reply, then a full handshake
        srv.restart()
        r = node.wake(node.b)
        full(r, srv, "the continued connection got no reply", policy="continue")
        assert r["wire"]["datagrams_sent"] >= 1 + 2 + 1  # unanswered record(s), handshake, request
        continued(node.wake(node.b), srv)
        handled = srv.output().split("[restart]")[-1].count("request POST /echo")
        assert handled == 2, srv.output()


@pytest.mark.parametrize("runtime", RUNTIMES3)
def test_dedup_hazard_exists(runtime, tmp_path):
    """A node that restarts its message ID at every wake (here: always 0x0100) gets the first
    wake's answer again from aiocoap: after continuing the connection, and after a new full
    handshake from the same address (tinydtls cannot resume, the forced wake is full). A new
    local address is a new remote for aiocoap: that wake gets its own answer. Not even a
    close_notify ends it: aiocoap drops the remote only on a fatal alert (tinydtls reports the
    close_notify as a warning, which aiocoap 0.4.17 logs as "Unhandled alert level 1 code 0")."""
    with peers.aiocoap_server() as srv:
        node = Node(runtime, srv, tmp_path)
        full(node.wake(node.a, mid=0x100), srv, "no valid saved state")
        continued(node.wake(node.a, mid=0x100), srv, expect="wake 1")  # stale: the hazard
        full(node.wake(node.a, "--force-resume", mid=0x100), srv,
             "resumption forced, but no resumable session", expect="wake 1")  # stale again
        full(node.wake(node.b, mid=0x100), srv, "local address or port changed, and the session cannot be resumed")  # own answer
        continued(node.wake(node.b, mid=0x100), srv, expect="wake 4")  # stale
        continued(node.wake(node.b, mid=0x101), srv)  # a new MID: its own answer
        continued(node.wake(node.b, "--close", mid=0x102), srv, close=True)  # wake 7, own answer
        full(node.wake(node.b, mid=0x102), srv, "no valid saved state", expect="wake 7")  # stale
        log = srv.output()
        # the resources saw only the first request per address and MID, and the new MIDs
        assert log.count("request POST /echo") == 4, log
        assert "Unhandled alert level 1 code 0" in log  # the close_notify, kept as a warning
        assert "payload=b'wake 2'" not in log and "payload=b'wake 3'" not in log, log


def test_no_hazard_without_dedup(tmp_path):
    """Control: the same wakes against the server with deduplication off each get their own
    answer, so the stale answers above come from deduplication alone."""
    with peers.aiocoap_server(dedup=False) as srv:
        node = Node("cpython", srv, tmp_path)
        full(node.wake(node.a, mid=0x100), srv, "no valid saved state")
        continued(node.wake(node.a, mid=0x100), srv)
        full(node.wake(node.a, "--force-resume", mid=0x100), srv,
             "resumption forced, but no resumable session")
        assert srv.output().count("request POST /echo") == 3


# ---- dtls_lite.coap against aiocoap ---------------------------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES3)
def test_coap_client_store_and_block2(runtime, tmp_path):
    """coap.Client (message IDs from reserve_counter): PUT then GET /store, GET /big (3000 bytes:
    Block2, RFC 7959), in one wake; then a continued wake reads /store again."""
    with peers.aiocoap_server() as srv:
        state = str(tmp_path / "state.bin")
        bind = "127.0.0.2:%d" % peers.free_udp_port("127.0.0.2")
        args = [srv.host, srv.port, srv.identity, srv.psk_hex, "--state", state, "--bind", bind] + TIMERS
        r = run_tool(runtime, "coap_wake.py", *args, "--put", "/store", "stored by " + runtime,
                     "--get", "/store", "--get", "/big", timeout=60)
        assert r["ok"], _log(r, srv)
        put, get, big = r["requests"]
        assert (put["code"], get["code"], big["code"]) == ("2.04", "2.05", "2.05"), _log(r, srv)
        assert get["payload"] == "stored by " + runtime
        body = "".join("%04d abcdefghijklmnopqrstuvwxyz\n" % i for i in range(94))[:3000]
        assert big["payload"] == body
        assert big["messages"] > 1, big  # Block2: one new message (MID, token) per block
        mids = [m["mid"] for m in r["messages"]]
        assert len(mids) == 2 + big["messages"] and len(set(mids)) == len(mids), r["messages"]
        r2 = run_tool(runtime, "coap_wake.py", *args, "--get", "/store", timeout=60)
        assert r2["ok"] and r2["stats"]["handshake_kind"] == "continued", _log(r2, srv)
        assert r2["requests"][0]["payload"] == "stored by " + runtime
        assert not set(mids) & {m["mid"] for m in r2["messages"]}
