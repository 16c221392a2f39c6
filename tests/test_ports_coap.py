"""The sleepy node speaks CoAP (issue 17 item 5): ports/node.py with PROTOCOL = "coap" POSTs
each wake's reading to libcoap's coap-server (`-d`: the POST creates /sensors/NODE, later ones
change it; `-v 7`: the server logs each request with its message ID, token and payload), in
process on CPython and as one process per wake on both MicroPythons (ports/unix/main.py
--coap, as a board runs main.py). Each wake's reading arrives; the wakes after the first
continue the connection (no handshake datagram, one datagram out); message IDs and tokens never
repeat across wakes (they come from the counter saved with the connection in RTC memory);
after a reset that is not a deep-sleep wake the node resumes from its session file and its
message IDs still do not repeat. A GET by the CLI then reads the last wake's reading back.
Against aiocoap over tinydtls, which deduplicates by message ID (RFC 7252 4.5), each continued
wake's POST /echo gets its own reading back.
The ESP32 program selects the CoAP node from config.py (fake machine/network modules)."""
import json
import os
import subprocess
import sys

import pytest

import peers
import test_ports  # puts ports/, ports/esp32, ports/unix and tools/ on sys.path
from support import runtimes as rt
from test_cli import cli
from test_cli_coap import handshakes, libcoap_server, requests

import node  # noqa: E402
from unixboard import UnixBoard  # noqa: E402

pytestmark = pytest.mark.interop

RUNTIMES = ("cpython", "micropython", "micropython32")


def _wake_micropython(runtime, cfg_path, cwd):
    p = subprocess.run([rt.executable(runtime), os.path.join(test_ports.ROOT, "ports", "unix", "main.py"),
                        "--config", cfg_path, "--once", "--coap"], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=test_ports.TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out  # status 0 = "deep sleep"
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, out
    return reports[0]


def _wake_cpython(cfg):
    r = node.wake(cfg, UnixBoard(cfg, sleep=False, exit=False))
    UnixBoard(cfg, sleep=False, exit=False).rtc.set_slept()  # what deepsleep() records
    return r


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_coap_wakes_against_libcoap(runtime, tmp_path):
    with libcoap_server() as srv:
        extra = {"NODE_NAME": "n1", "REPLY_TIMEOUT_MS": 5000}
        if runtime == "cpython":
            extra["PROTOCOL"] = "coap"  # what --coap does for the processes
        cfg, cfg_path = test_ports.make_config(tmp_path, srv, **extra)

        def wake():
            if runtime == "cpython":
                return _wake_cpython(cfg)
            return _wake_micropython(runtime, cfg_path, str(tmp_path))

        first = wake()
        assert first["ok"] and first["reply"] == "2.01 Created", first
        assert first["coap"] == "POST /sensors/n1" and first["action"] == "full", first
        reports = [first]
        for _ in range(3):
            r = wake()
            assert r["ok"] and r["reply"] == "2.04 Changed", r
            assert r["reset"] == node.DEEPSLEEP and r["action"] == "continue", r
            assert r["kind"] == "continued" and r["port"] == first["port"], r
            assert r["wire"]["handshake_datagrams"] == 0 and r["wire"]["datagrams_sent"] == 1, r
            reports.append(r)
        assert handshakes(srv) == 1, srv.output()[-3000:]

        # A reset that is not a deep-sleep wake: RTC memory is not trusted, the session file is.
        raw = open(cfg.RTC_FILE, "rb").read()
        open(cfg.RTC_FILE, "wb").write(b"-" + raw[1:])
        r = wake()
        assert r["ok"] and r["reset"] == "soft" and r["kind"] == "abbreviated", r
        reports.append(r)
        r = wake()
        assert r["ok"] and r["action"] == "continue", r
        reports.append(r)

        # each wake's reading arrived, in order, as the resource's new value
        posts = requests(srv, "POST")
        assert [p[3] for p in posts] == [x["sent"] for x in reports], (posts, reports)
        assert all(json.loads(x["sent"])["node"] == "n1" for x in reports)
        mids = [p[1] for p in posts]
        tokens = [p[2] for p in posts]
        assert len(set(mids)) == len(mids) and len(set(tokens)) == len(tokens), posts
        p = cli("coaps://%s:%d/sensors/n1" % (srv.host, srv.port), "--psk", srv.psk_hex)
        assert p.returncode == 0, p.stderr
        assert p.stdout == b"2.05 Content\n" + reports[-1]["sent"].encode() + b"\n", p.stdout


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_coap_wakes_against_a_deduplicating_server(runtime, tmp_path):
    """aiocoap over tinydtls deduplicates by message ID (RFC 7252 4.5, 247 s, also across a
    new handshake): each continued wake's POST /echo still gets its own reading back."""
    try:
        cm = peers.aiocoap_server()
        srv = cm.__enter__()
    except peers.PeerUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        extra = {"COAP_PATH": "/echo", "REPLY_TIMEOUT_MS": 5000}
        if runtime == "cpython":
            extra["PROTOCOL"] = "coap"
        cfg, cfg_path = test_ports.make_config(tmp_path, srv, **extra)
        reports = []
        for n in range(4):
            r = (_wake_cpython(cfg) if runtime == "cpython"
                 else _wake_micropython(runtime, cfg_path, str(tmp_path)))
            assert r["ok"] and r["reply"] == "2.05 Content", r
            assert r["reply_payload"] == r["sent"], r  # its own reading, not a cached answer
            assert r["action"] == ("full" if n == 0 else "continue"), r
            reports.append(r)
        handled = [ln for ln in srv.output().splitlines() if ln.startswith("request POST /echo")]
        assert len(handled) == 4, srv.output()  # none answered from the deduplication cache
    finally:
        cm.__exit__(None, None, None)


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_asyncio_node_speaks_coap(runtime, tmp_path):
    """ports/anode.py with PROTOCOL = "coap" (unix/main.py --aio --coap): the same wakes through
    dtls_lite.coap.AsyncClient (micropython32's 1.25 port has no asyncio frozen)."""
    import asyncio

    import anode
    with libcoap_server() as srv:
        extra = {"NODE_NAME": "a1", "REPLY_TIMEOUT_MS": 5000, "SAMPLES": 2, "SAMPLE_MS": 10}
        if runtime == "cpython":
            extra["PROTOCOL"] = "coap"
        cfg, cfg_path = test_ports.make_config(tmp_path, srv, **extra)
        reports = []
        for n in range(3):
            if runtime == "cpython":
                r = asyncio.run(anode.wake(cfg, UnixBoard(cfg, sleep=False, exit=False)))
                UnixBoard(cfg, sleep=False, exit=False).rtc.set_slept()
            else:
                p = subprocess.run([rt.executable(runtime), os.path.join(test_ports.ROOT, "ports", "unix",
                                                                         "main.py"),
                                    "--config", cfg_path, "--once", "--aio", "--coap"], cwd=str(tmp_path),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=test_ports.TIMEOUT)
                out = p.stdout.decode("utf-8", "replace")
                assert p.returncode == 0, out
                r = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
            assert r["ok"] and r["aio"] and r["coap"] == "POST /sensors/a1", r
            assert r["reply"] == ("2.01 Created" if n == 0 else "2.04 Changed"), r
            assert r["action"] == ("full" if n == 0 else "continue"), r
            reports.append(r)
        assert [x[3] for x in requests(srv, "POST")] == [x["sent"] for x in reports]
        assert handshakes(srv) == 1


def test_coap_error_response_fails_the_wake_and_keeps_the_connection(tmp_path):
    # libcoap's /time takes no POST (4.05): the wake reports it, the connection is saved, the
    # next wake continues
    with libcoap_server() as srv:
        cfg, _ = test_ports.make_config(tmp_path, srv, PROTOCOL="coap", COAP_PATH="/time",
                                        REPLY_TIMEOUT_MS=5000)
        r = _wake_cpython(cfg)
        assert not r["ok"] and r["stage"] == "request", r
        assert r["reply"] == "4.05 Method Not Allowed" and r["message"] == "CoAP " + r["reply"], r
        cfg.COAP_PATH = "/sensors/t1"
        r = _wake_cpython(cfg)
        assert r["ok"] and r["action"] == "continue" and r["reply"] == "2.01 Created", r
        assert handshakes(srv) == 1


def test_bad_protocol_setting_is_a_config_failure(tmp_path):
    class Nowhere:
        host, port, identity, psk_hex = "127.0.0.1", 9, "id", "00"
    cfg, _ = test_ports.make_config(tmp_path, Nowhere, PROTOCOL="mqtt")
    r = _wake_cpython(cfg)
    assert not r["ok"] and r["stage"] == "config" and "PROTOCOL must be" in r["message"], r


def test_esp32_main_selects_the_coap_node_from_config(tmp_path):
    build = tmp_path / "board"
    p = subprocess.run([sys.executable, os.path.join(test_ports.ROOT, "tools", "deploy.py"), "--dry-run",
                        "--mpy", "2822", "--target", "esp32", "--build-dir", str(build)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=test_ports.TIMEOUT)
    assert p.returncode == 0, p.stdout.decode()
    assert (build / "dtls_lite" / "coap.mpy").exists()  # the device package carries it
    (build / "fake_esp32.py").write_text(test_ports.FAKE_ESP32)
    with libcoap_server() as srv:
        (build / "config.py").write_text(
            "WIFI_SSID = 'lab'\nWIFI_PASSWORD = 'secret'\nWIFI_TIMEOUT_MS = 300\n"
            "SERVER_HOST = %r\nSERVER_PORT = %d\nIDENTITY = %r\nPSK_HEX = %r\n"
            "SLEEP_MS = 60000\nBOOT_GRACE_MS = 10\nINITIAL_TIMEOUT_MS = 300\n"
            "REPLY_TIMEOUT_MS = 5000\nPROTOCOL = 'coap'\nNODE_NAME = 'esp'\n"
            % (srv.host, srv.port, srv.identity, srv.psk_hex))
        reports = []
        for _ in range(3):
            p = subprocess.run([rt.executable("micropython"), "-c",
                                "import fake_esp32\nimport main\nmain.start()"], cwd=str(build),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=test_ports.TIMEOUT)
            out = p.stdout.decode("utf-8", "replace")
            assert p.returncode == 0 and out.splitlines()[-1] == "DEEPSLEEP 60000", out
            reports.append(json.loads([x for x in out.splitlines() if x.startswith("{")][-1]))
        assert [r["reply"] for r in reports] == ["2.01 Created", "2.04 Changed", "2.04 Changed"], reports
        assert [r["action"] for r in reports] == ["full", "continue", "continue"], reports
        assert json.loads(reports[0]["sent"])["v"] == 41.5  # esp32.mcu_temperature()
        assert [x[3] for x in requests(srv, "POST")] == [r["sent"] for r in reports]
        assert handshakes(srv) == 1
