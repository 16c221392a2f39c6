"""What a wake loads (issue 13 item 2): on MicroPython a continued wake imports no handshake
code, and a handshake's modules are gone once it completed, also when a continued wake falls
back to one. Each wake is a process of tools/wake.py against pion on loopback, with its own
state file, reporting the dtls_lite modules in sys.modules when it ends."""
import pytest

import peers
from support.runtimes import run_tool

pytestmark = pytest.mark.interop

HANDSHAKE_CODE = {"dtls_lite.client_handshake", "dtls_lite.handshake", "dtls_lite.reassembly",
                  "dtls_lite.flight"}
TIMERS = ["--timeout-ms", "200", "--retransmits", "3", "--reply-ms", "1000"]


def _wake(runtime, srv, state, bind, msg):
    r = run_tool(runtime, "wake.py", srv.host, srv.port, srv.identity, srv.psk_hex, "--state", state,
                 "--bind", bind, "--send", msg, *TIMERS, timeout=60)
    assert r["ok"] and r["received"] == [msg], r
    return r


@pytest.mark.parametrize("runtime", ["micropython", "micropython32"])
def test_continued_wake_loads_no_handshake_code(runtime, tmp_path):
    state = str(tmp_path / "state.bin")
    bind = "127.0.0.2:%d" % peers.free_udp_port("127.0.0.2")
    with peers.pion_server(cookie=False) as srv:
        r = _wake(runtime, srv, state, bind, "first")
        assert r["stats"]["handshake_kind"] == "full"
        assert not HANDSHAKE_CODE.intersection(r["modules"]), r["modules"]  # dropped once done
        r = _wake(runtime, srv, state, bind, "second")
        assert r["stats"]["handshake_kind"] == "continued"
        assert "dtls_lite.connection" in r["modules"] and "dtls_lite.keeper" in r["modules"]
        assert not HANDSHAKE_CODE.intersection(r["modules"]), r["modules"]
        assert "dtls_lite.rare" not in r["modules"], r["modules"]
        srv.restart()  # the continued record gets no reply: resume or handshake, then send again
        r = _wake(runtime, srv, state, bind, "third")
        assert r["policy"] == "continue" and r["action"] == "abbreviated", r  # offered; pion forgot it
        assert r["stats"]["handshake_kind"] == "full" and r["stats"]["round_trips"] >= 2
        assert not HANDSHAKE_CODE.intersection(r["modules"]), r["modules"]


def test_cpython_keeps_the_handshake_code(tmp_path):
    # CPython has no heap to save: its handshake modules stay loaded (drop_handshake_code False).
    state = str(tmp_path / "state.bin")
    bind = "127.0.0.2:%d" % peers.free_udp_port("127.0.0.2")
    with peers.pion_server(cookie=False) as srv:
        r = _wake("cpython", srv, state, bind, "first")
        assert HANDSHAKE_CODE <= set(r["modules"]), r["modules"]
