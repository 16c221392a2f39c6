"""`make demo`'s CoAP part (tools/demo.py coap_part, issue 17): the node's wakes as MicroPython
processes (.mpy) PUT their readings to libcoap's coap-server through the link relay, and the
CLI's GET after each returns that wake's own reading; the part reports success only then."""
import os
import re

import pytest

import benchkit
import demo
import links
import peers

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_demo_coap_part(runtime, tmp_path, capsys):
    profile = links.get("loopback")
    if runtime == "micropython":
        exe, env = benchkit.find_micropython(), benchkit.mpy_env(str(tmp_path))
    else:
        import sys
        exe, env = sys.executable, None
    node = demo.Node(exe, env, None, None, peers.IDENTITY, peers.PSK_HEX, profile, profile.timeout_ms,
                     profile.reply_ms)
    ok = demo.coap_part(node, str(tmp_path), wakes=3)
    out = capsys.readouterr().out
    assert ok, out
    rows = [ln for ln in out.splitlines() if re.match(r"\s+\d+  (first boot|same address) ", ln)]
    assert len(rows) == 3 and all(ln.endswith("its own reading") for ln in rows), out
    assert "first boot           full" in rows[0] and all(" continue " in ln for ln in rows[1:]), out
    assert "2 DTLS handshakes at the server" in out, out
    assert not os.path.exists(os.path.join(str(tmp_path), "coap-wifi.down"))
