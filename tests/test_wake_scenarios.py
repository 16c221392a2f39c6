"""Deep-sleep wake scenarios against real servers, on both runtimes (issue 6 item 6).

Each wake is a new process of tools/wake.py (CPython or the MicroPython unix port) that loads
its state file, lets the wake policy (dtls_lite/wake.py) decide, sends one request, saves and
exits WITHOUT close_notify, as a node going back to deep sleep does (unless a step says
--close). The tests check what each wake reports (policy, final action and reason, handshake
kind, the wire counters) and what the server answered.

Servers differ, measured (DESIGN.md section 4):
- pion (tools/pion_server: session store, many associations, no cookie exchange on
  resumption; a new ClientHello from a known address ends that association, RFC 6347 4.2.8)
  does every scenario.
- Mbed TLS ssl_server2 (session cache; read_timeout so a vanished client does not block it;
  one association at a time) answers a new address only once read_timeout dropped the old
  client, and a new ClientHello from the same address at once (RFC 6347 4.2.8). Not an echo:
  it answers a fixed text.
- OpenSSL s_server -no_ticket and gnutls-serv --noticket serve one association at a time, stay
  on a client that vanished without close_notify, and discard an epoch-0 ClientHello from any
  address while on it: an address change or a forced resumption gets no answer until the old
  association ends with close_notify or the server restarts. The tests assert exactly that
  (a HandshakeTimeout with the stored state untouched, then a continued wake that still works)
  and then do those scenarios after a close_notify. A restarted gnutls-serv wedges on the
  continued record itself (see test_one_association_servers).
"""
import json
import time

import pytest

import peers
from dtls_lite import state as state_mod
from support.runtimes import RUNTIMES, run_tool

pytestmark = pytest.mark.interop

PSK = bytes.fromhex(peers.PSK_HEX)
CCM_8 = "TLS_PSK_WITH_AES_128_CCM_8"
OVERHEAD = 29  # CCM_8 record: 13 header + 8 explicit nonce + 8 tag
# Short timers, so a handshake nobody answers gives up in about 3 s (200+400+800+1600 ms) and
# a continued connection nobody answers is given up after 1 s.
TIMERS = ["--timeout-ms", "200", "--retransmits", "3", "--reply-ms", "1000"]
MBEDTLS_READ_TIMEOUT_MS = 5000  # far above the gap between two wakes here (well under 1 s)
NO_REPLY = "the continued connection got no reply"


def _server(name):
    if name == "mbedtls":
        # exchanges: requests per connection before it closes it (a node sends many)
        return peers.mbedtls_server(cid=False, read_timeout_ms=MBEDTLS_READ_TIMEOUT_MS, exchanges=1000)
    return peers.SERVERS[name]()


def _answer(srv, msg):
    if srv.name == "mbedtls":
        return peers.MBEDTLS_RESPONSE % peers.MBEDTLS_SUITE
    return msg


class Node:
    """One sensor node: a state file, two local addresses, a runtime."""

    def __init__(self, runtime, srv, tmp_path):
        self.runtime = runtime
        self.srv = srv
        self.state = str(tmp_path / "state.bin")
        self.a = "127.0.0.2:%d" % peers.free_udp_port("127.0.0.2")
        self.b = "127.0.0.3:%d" % peers.free_udp_port("127.0.0.3")
        self.n = 0

    def blob(self):
        with open(self.state, "rb") as f:
            return f.read()

    def wake(self, bind, *extra):
        """One wake sending one request; returns (report, the request)."""
        self.n += 1
        msg = "reading %d from %s" % (self.n, self.runtime)
        r = run_tool(self.runtime, "wake.py", self.srv.host, self.srv.port, self.srv.identity,
                     self.srv.psk_hex, "--state", self.state, "--bind", bind, "--send", msg,
                     *(TIMERS + list(extra)), timeout=60)
        r["_msg"] = msg
        return r


def _log(r, srv):
    return "%s\nserver log (end):\n%s" % (json.dumps(r, indent=1), srv.output()[-3000:])


def answered(r, srv):
    assert r["ok"], _log(r, srv)
    assert r["received"] == [_answer(srv, r["_msg"])], _log(r, srv)
    assert r["suite"] == CCM_8


def continued(r, srv, close=False):
    """0-RTT: no handshake, one datagram out for the one request, 29 bytes on top of it (and
    with close, the close_notify alert: 2 bytes in a record of its own). A reply later than
    the adaptive wait (50 ms at least on loopback; a loaded host) sends the request once more
    as a new record (r["retries"]); the server then answers both."""
    answered(r, srv)
    assert (r["policy"], r["action"], r["reason"]) == ("continue", "continue", "same local address and port"), _log(r, srv)
    assert r["stats"]["handshake_kind"] == "continued"
    w = r["wire"]
    n = 1 + r["retries"]
    assert w["handshake_datagrams"] == 0 and w["handshake_bytes"] == 0, w
    assert w["datagrams_sent"] == n + close, w
    assert w["bytes_sent"] == n * (len(r["_msg"]) + OVERHEAD) + (2 + OVERHEAD if close else 0), w
    reply = _answer(srv, r["_msg"])
    assert 1 <= w["datagrams_received"] <= n and w["bytes_received"] == w["datagrams_received"] * (len(reply) + OVERHEAD), w


def handshake(r, srv, kind, reason, hello_verify, round_trips, action=None):
    """A handshake of this kind, chosen by the policy for this reason (action: what the policy
    chose, when the server made it something else)."""
    answered(r, srv)
    action = action or kind
    assert (r["policy"], r["action"], r["reason"]) == (action, action, reason), _log(r, srv)
    st = r["stats"]
    assert st["handshake_kind"] == kind and st["hello_verify"] is hello_verify, _log(r, srv)
    assert st["round_trips"] == round_trips, _log(r, srv)
    assert r["wire"]["handshake_datagrams"] > 0


def unanswered(r, srv, action, reason):
    """A handshake nobody answered: HandshakeTimeout, reported, nothing crashed."""
    assert not r["ok"] and r["error"] == "HandshakeTimeout", _log(r, srv)
    assert (r["action"], r["reason"]) == (action, reason), _log(r, srv)  # (no "policy": connect() raised)
    assert r["stats"]["retransmissions"] == 3 and r["stats"]["datagrams_received"] == 0, _log(r, srv)


def kept_connection(old, new, srv):
    """new holds the same session and connection keys as old, with a reservation beyond it."""
    key = state_mod.state_key(PSK, peers.IDENTITY)
    a = state_mod.load(key, old, (b"\x7f\x00\x00\x01", srv.port))
    b = state_mod.load(key, new, (b"\x7f\x00\x00\x01", srv.port))
    assert a.has_connection and b.has_connection
    assert (a.session_id, a.master_secret, a.epoch, a.key_block) == (b.session_id, b.master_secret, b.epoch, b.key_block)
    assert b.write_seq > a.write_seq


def restarted(node, bind):
    """The server restarted (same port): the continued request goes unanswered, the client
    offers the session, the server knows nothing of it and does a full handshake; data delivered,
    all in one wake."""
    srv = node.srv
    srv.restart()
    r = node.wake(bind)
    answered(r, srv)
    assert (r["policy"], r["action"], r["reason"]) == ("continue", "abbreviated", NO_REPLY), _log(r, srv)
    st = r["stats"]
    assert st["handshake_kind"] == "full" and st["hello_verify"] is True, _log(r, srv)
    # the unanswered record, the handshake's datagrams, the request again
    assert r["wire"]["datagrams_sent"] >= 1 + 2 + 1 and r["wire"]["handshake_datagrams"] > 0
    return r


# ---- the wake cycle, per server --------------------------------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pion(runtime, tmp_path):
    with _server("pion") as srv:
        node = Node(runtime, srv, tmp_path)
        handshake(node.wake(node.a), srv, "full", "no valid saved state", True, 3)  # first boot
        continued(node.wake(node.a), srv)
        # a new address: one round trip, no cookie exchange on resumption
        handshake(node.wake(node.b), srv, "abbreviated", "local address or port changed", False, 1)
        # forced from the same address and port: the first ClientHello ends the association
        # there (RFC 6347 4.2.8 in tools/pion_server), the retransmitted one resumes
        r = node.wake(node.b, "--force-resume")
        handshake(r, srv, "abbreviated", "resumption forced", False, 1)
        assert r["stats"]["retransmissions"] >= 1
        assert "association closed (RFC 6347 4.2.8)" in srv.output()
        continued(node.wake(node.b), srv)
        # back to the first address, where pion still holds the association of the first wakes
        handshake(node.wake(node.a), srv, "abbreviated", "local address or port changed", False, 1)
        restarted(node, node.a)
        assert "session unknown" in srv.output().split("[restart]")[-1]  # the offer was made
        continued(node.wake(node.a), srv)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mbedtls(runtime, tmp_path):
    with _server("mbedtls") as srv:
        node = Node(runtime, srv, tmp_path)
        handshake(node.wake(node.a), srv, "full", "no valid saved state", True, 3)
        continued(node.wake(node.a), srv)
        # ssl_server2 serves one association at a time: a new address gets an answer once
        # read_timeout has dropped the vanished node. Wait for its log to say so.
        drops = srv.output().count("The operation timed out")
        deadline = time.monotonic() + MBEDTLS_READ_TIMEOUT_MS / 1000 + 10
        while srv.output().count("The operation timed out") == drops:
            assert time.monotonic() < deadline, srv.output()[-2000:]
            time.sleep(0.05)
        # it sends HelloVerifyRequest on resumption too: 2 round trips
        handshake(node.wake(node.b), srv, "abbreviated", "local address or port changed", True, 2)
        # a new ClientHello from the address of the live association starts a new handshake
        r = node.wake(node.b, "--force-resume")
        handshake(r, srv, "abbreviated", "resumption forced", True, 2)
        assert "Client initiated reconnection from same port" in srv.output()
        continued(node.wake(node.b), srv)
        restarted(node, node.b)
        continued(node.wake(node.b), srv)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["openssl", "gnutls"])
def test_one_association_servers(name, runtime, tmp_path):
    with _server(name) as srv:
        node = Node(runtime, srv, tmp_path)
        handshake(node.wake(node.a), srv, "full", "no valid saved state", True, 3)
        continued(node.wake(node.a), srv)
        # Both stay on the association of the node that vanished without close_notify and
        # discard epoch-0 records meanwhile: no answer to a new address, nor to a forced
        # resumption from the same one. The failed handshakes leave the stored state alone
        # ("probing"), so the next same-address wake still continues.
        blob = node.blob()
        unanswered(node.wake(node.b), srv, "abbreviated", "local address or port changed")
        assert node.blob() == blob
        unanswered(node.wake(node.a, "--force-resume"), srv, "abbreviated", "resumption forced")
        assert node.blob() == blob
        continued(node.wake(node.a), srv)
        # A wake that ends with close_notify frees the server and keeps only the session:
        # then the new address resumes (with a cookie exchange: 2 round trips).
        continued(node.wake(node.a, "--close"), srv, close=True)
        handshake(node.wake(node.b), srv, "abbreviated", "only the session was saved", True, 2)
        continued(node.wake(node.b), srv)
        continued(node.wake(node.b, "--close"), srv, close=True)
        handshake(node.wake(node.b, "--force-resume"), srv, "abbreviated", "resumption forced", True, 2)
        if name == "openssl":
            restarted(node, node.b)
            continued(node.wake(node.b), srv)
            return
        # gnutls-serv 3.7, restarted, wedges on the continued record: a first datagram from a
        # new peer that is not a ClientHello makes it print "Waiting for connection..." in a
        # busy loop (about a million lines a second here) and never read its socket again, with or
        # without cookies. So the wake's fallback handshake goes unanswered too (short timers
        # here: the log grows fast) and the stored state stays as it was.
        srv.restart()
        since = len(srv.output())
        blob = node.blob()
        r = node.wake(node.b, "--reply-ms", "300", "--retransmits", "1")
        assert not r["ok"] and r["error"] == "HandshakeTimeout", _log(r, srv)
        assert (r["policy"], r["action"], r["reason"]) == ("continue", "abbreviated", NO_REPLY), _log(r, srv)
        # (the continued request reserved further sequence numbers before it left)
        kept_connection(blob, node.blob(), srv)
        assert srv.output()[since:].count("Waiting for connection...") > 1000
        # After one more restart a wake that starts with a ClientHello (the other address:
        # resumption offered, the server forgot the session, full handshake) is served.
        srv.restart()
        handshake(node.wake(node.a), srv, "full", "local address or port changed", True, 3, action="abbreviated")
        continued(node.wake(node.a), srv)


# ---- bad state blobs -> full handshake, with the reason ------------------------------------

def _redump(blob, key=None, **change):
    st = state_mod.load(state_mod.state_key(PSK, peers.IDENTITY), blob, None)
    for k, v in change.items():
        setattr(st, k, v)
    return state_mod.dump(key or state_mod.state_key(PSK, peers.IDENTITY), st)


def _bad_blobs(good, server_port):
    mid = len(good) // 2
    other = server_port - 1 if server_port > 1024 else server_port + 1
    return [
        ("corrupted byte", good[:mid] + bytes([good[mid] ^ 0x01]) + good[mid + 1:], "tag mismatch"),
        ("truncated", good[:-5], "truncated (%d of %d bytes)" % (len(good) - 5, len(good))),
        ("another PSK", _redump(good, key=state_mod.state_key(b"anotherPSK", peers.IDENTITY)),
         "tag mismatch: made for another PSK or identity"),
        ("another server port", _redump(good, server=(b"\x7f\x00\x00\x01", other)),
         "made for another server (127.0.0.1:%d, not 127.0.0.1:%d)" % (other, server_port)),
        ("unknown version", good[:2] + b"\x63" + good[3:], "unknown version 99"),
        ("empty file", b"", "no saved state"),
    ]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["pion", "mbedtls", "openssl", "gnutls"])
def test_bad_state_blobs_give_a_full_handshake(name, runtime, tmp_path):
    with _server(name) as srv:
        node = Node(runtime, srv, tmp_path)
        handshake(node.wake(node.a), srv, "full", "no valid saved state", True, 3)
        good = node.blob()
        key = state_mod.state_key(PSK, peers.IDENTITY)
        assert state_mod.load(key, good, (b"\x7f\x00\x00\x01", srv.port)).has_connection
        # close_notify: one-association servers then take the next handshake
        continued(node.wake(node.a, "--close"), srv, close=True)
        for what, blob, reason in _bad_blobs(good, srv.port):
            with open(node.state, "wb") as f:
                f.write(blob)
            r = node.wake(node.a, "--close")
            handshake(r, srv, "full", "no valid saved state", True, 3)
            assert reason in (r["state_error"] or ""), (what, r["state_error"])
            # the bad blob was replaced by a good one (the session: --close drops the keys)
            st = state_mod.load(key, node.blob(), (b"\x7f\x00\x00\x01", srv.port))
            assert st.session_id and not st.has_connection, what
