"""CoAP over a sleeping connection against a server that deduplicates (issue 17): aiocoap over
tinydtls (peers.aiocoap_server, deduplication on, EXCHANGE_LIFETIME 247 s, keyed by address and
port even across a new full handshake; tests/test_interop_tinydtls.py shows the stale answers a
node gets when it restarts its message ID).

A node (tools/coap_wake.py: each wake a new process with a FileStore state file, bound to a
fixed 127.0.0.x address and port, dtls_lite.coap taking message IDs and tokens from
DTLSClient.reserve_counter) wakes 12 times, on CPython and both MicroPythons, and POSTs
"wake N" to /echo each time: full handshake, continued twice, forced resumption (a full
handshake at once: tinydtls gives no session ID), continued, a server restart (the continued
request gets no reply, then a full handshake), a new local address (full), continued, killed
by SIGKILL after reserve_counter persisted and before the request went out, continued, killed
after the request went out and its answer came back but before the save, continued, back to
the first address (full; aiocoap still holds that address's message IDs), continued. Each
wake gets its own answer ("wake N", with its token), never an earlier wake's; no message ID
and no token repeats across the whole run (what every wake sent, the killed ones' from the
line they print where they stop, and what the server logged).

CID is not covered here: tinydtls 0.8.6 negotiates none, and Debian 12's libcoap 4.3.1
coap-server has no CID either (libcoap has it from 4.3.5, with Mbed TLS or tinydtls); the CID
wakes are DTLS-level tests (tests/test_cid_wakes.py, Mbed TLS ssl_server2).
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest

import peers
from dtls_lite import state as state_mod
from support.runtimes import ROOT, run_tool, tool_argv

pytestmark = pytest.mark.interop

RUNTIMES3 = ("cpython", "micropython", "micropython32")
# Short timers: a handshake nobody answers gives up in ~3 s; CoAP's first ACK wait 0.5-0.75 s,
# which is also how long a continued request waits before the wake falls back to a handshake.
TIMERS = ["--timeout-ms", "200", "--retransmits", "3", "--reply-ms", "1000",
          "--ack-timeout-ms", "500", "--max-retransmit", "2", "--coap-timeout-ms", "8000"]
PAUSE_RE = re.compile(r"^PAUSE (\w+) mid=(\d+) token=([0-9a-f]+)$", re.M)
REQUEST_RE = re.compile(r"request POST /echo mid=(\d+) token=([0-9a-f]+) from (\S+) len=\d+ payload=b'([^']*)'")
KILL_WAIT_S = 30


class Node:
    """One sleepy CoAP node: a state file, two local addresses, a runtime, the log of every
    message ID and token its wakes sent."""

    def __init__(self, runtime, srv, tmp_path):
        self.runtime = runtime
        self.srv = srv
        self.state = str(tmp_path / "state.bin")
        self.a = "127.0.0.2:%d" % peers.free_udp_port("127.0.0.2")
        self.b = "127.0.0.3:%d" % peers.free_udp_port("127.0.0.3")
        self.n = 0
        self.sent = []  # (wake number, mid, token hex) of every new message of every wake

    def _args(self, bind, extra):
        self.n += 1
        msg = "wake %d" % self.n
        return msg, [self.srv.host, self.srv.port, self.srv.identity, self.srv.psk_hex,
                     "--state", self.state, "--bind", bind, "--post", "/echo", msg] + TIMERS + list(extra)

    def wake(self, bind, *extra):
        msg, args = self._args(bind, extra)
        r = run_tool(self.runtime, "coap_wake.py", *args, timeout=60)
        r["_msg"] = msg
        r["_n"] = self.n
        self.sent += [(self.n, m["mid"], m["token"]) for m in r["messages"]]
        return r

    def killed_wake(self, bind, point):
        """A wake killed by SIGKILL (by PID) where it prints "PAUSE <point> ..."; returns
        (mid, token hex) of the request it had under way."""
        msg, args = self._args(bind, ["--pause-at", point])
        p = subprocess.Popen(tool_argv(self.runtime, "coap_wake.py", *args), cwd=ROOT,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        try:
            deadline = time.monotonic() + KILL_WAIT_S
            out = ""
            while time.monotonic() < deadline:
                line = p.stdout.readline()  # the wake prints nothing before its PAUSE line
                if not line:
                    break
                out += line
                m = PAUSE_RE.search(out)
                if m:
                    break
            assert m and m.group(1) == point, "no PAUSE %s line from the wake:\n%s" % (point, out)
            os.kill(p.pid, signal.SIGKILL)
            assert p.wait(10) == -signal.SIGKILL
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            p.stdout.close()
        mid, token = int(m.group(2)), m.group(3)
        self.sent.append((self.n, mid, token))
        return mid, token

    def stored_counter(self):
        """The counter reservation in the state file (no value at or above it handed out)."""
        with open(self.state, "rb") as f:
            blob = f.read()
        key = state_mod.state_key(bytes.fromhex(self.srv.psk_hex), self.srv.identity)
        return state_mod.load(key, blob, (b"\x7f\x00\x00\x01", self.srv.port)).app_counter


def above(top, value):
    """top is past value in the 32-bit counter's order (RFC 1982-like: within 2**31)."""
    return 0 < (top - value) & 0xFFFFFFFF < 1 << 31


def _log(r, srv):
    return "%s\nserver log (end):\n%s" % (json.dumps(r, indent=1), srv.output()[-3000:])


def own_answer(r, srv):
    """The wake's request was answered with its own payload, ACK with its MID and token."""
    assert r["ok"], _log(r, srv)
    (req,) = r["requests"]
    assert req["code"] == "2.05" and req["text"] == "2.05 Content", _log(r, srv)
    assert req["payload"] == r["_msg"], "an answer that is not its own: " + _log(r, srv)
    assert (req["reply_mid"], req["reply_token"], req["reply_type"]) == (req["mid"], req["token"], 2), _log(r, srv)
    assert req["messages"] == 1 and len(r["counters"]) == 1, _log(r, srv)


def wake_kind(r, srv, policy, action, reason, kind):
    own_answer(r, srv)
    assert (r["policy"], r["action"], r["reason"]) == (policy, action, reason), _log(r, srv)
    st = r["stats"]
    assert st["handshake_kind"] == kind, _log(r, srv)
    if kind == "continued":
        assert r["wire"]["handshake_datagrams"] == 0, _log(r, srv)
    else:
        assert st["hello_verify"] is True and st["round_trips"] == 3, _log(r, srv)


def full(r, srv, reason, policy="full"):
    wake_kind(r, srv, policy, "full", reason, "full")


def continued(r, srv):
    wake_kind(r, srv, "continue", "continue", "same local address and port", "continued")


@pytest.mark.parametrize("runtime", RUNTIMES3)
def test_coap_wakes_never_repeat_a_message_id(runtime, tmp_path):
    t0 = time.monotonic()
    with peers.aiocoap_server() as srv:
        node = Node(runtime, srv, tmp_path)
        full(node.wake(node.a), srv, "no valid saved state")                            # 1
        continued(node.wake(node.a), srv)                                               # 2
        continued(node.wake(node.a), srv)                                               # 3
        full(node.wake(node.a, "--force-resume"), srv,                                  # 4
             "resumption forced, but no resumable session")
        continued(node.wake(node.a), srv)                                               # 5
        srv.restart()
        r = node.wake(node.a)                                                           # 6
        full(r, srv, "the continued connection got no reply", policy="continue")
        full(node.wake(node.b), srv,                                                    # 7
             "local address or port changed, and the session cannot be resumed")
        continued(node.wake(node.b), srv)                                               # 8
        # 9: killed after reserve_counter persisted, before the request went out
        before = node.stored_counter()
        reserved = node.killed_wake(node.b, "reserved")
        # the reservation past the value it took was saved before the request could leave
        assert node.stored_counter() != before and above(node.stored_counter(), int(reserved[1], 16))
        continued(node.wake(node.b), srv)                                               # 10
        # 11: killed after the request went out and was answered, before the save
        replied = node.killed_wake(node.b, "replied")
        assert above(node.stored_counter(), int(replied[1], 16))
        assert srv.wait_for_output("payload=b'wake 11'")
        continued(node.wake(node.b), srv)                                               # 12
        # back to the first address: a full handshake (no session to resume), and aiocoap
        # still holds that address's remote with the message IDs of wake 6 (since the restart)
        full(node.wake(node.a), srv,                                                    # 13
             "local address or port changed, and the session cannot be resumed")
        continued(node.wake(node.a), srv)                                               # 14
        log = srv.output()

    # no message ID and no token twice, across all wakes, the killed ones included
    mids = [m for _, m, _ in node.sent]
    tokens = [t for _, _, t in node.sent]
    assert len(node.sent) == 14, node.sent
    assert len(set(mids)) == len(mids), "a message ID repeated: %s" % node.sent
    assert len(set(tokens)) == len(tokens), "a token repeated: %s" % node.sent
    assert (9, reserved[0], reserved[1]) in node.sent and (11, replied[0], replied[1]) in node.sent

    # the server's resources handled every request that went out, each once, in order: none
    # was answered from aiocoap's deduplication cache (that would log nothing)
    handled = REQUEST_RE.findall(log)
    assert [p for _, _, _, p in handled] == ["wake %d" % n for n in range(1, 15) if n != 9], log
    assert "wake 9" not in log  # killed before it went out
    by_wake = {n: (m, t) for n, m, t in node.sent}
    for mid, token, frm, payload in handled:
        n = int(payload.split()[1])
        assert (int(mid), token) == by_wake[n], (n, mid, token, by_wake[n])
        assert frm == (node.a if n <= 6 or n >= 13 else node.b), (n, frm)
    assert time.monotonic() - t0 < 90, "the run took %.0f s" % (time.monotonic() - t0)
