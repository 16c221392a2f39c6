"""The emulated-board checks (tests/test_emulated_board.py) on a real ESP32.

Needs a board on --port with the MicroPython ESP32 firmware (1.22 or newer), a USB-UART bridge
with the usual auto-reset wiring (EN on RTS, IO0 on DTR; e.g. ESP32-DevKitC: native-USB boards
lose their serial port in deep sleep), the WiFi and a server from the environment (see
conftest.py). Skipped otherwise. What each test proves:

- test_deploy: tools/deploy.py reads the board's .mpy version and architecture over mpremote,
  compiles for it (xtensawin on ESP32/S2/S3, rv32imc on C3/C6), copies only .mpy plus main.py
  and config.py, removes shadowing .py files, and skips everything on a second run.
- test_wake_cycles: after a reset the node joins WiFi, does one full handshake, and on each of
  at least three deep-sleep wakes (the chip really powers down and reboots) continues the
  connection from RTC memory with no handshake datagram; the server saw one handshake and
  every reading (sizes in its log).
- test_wifi_failure_survived: with a wrong WiFi password the node reports the failure and
  still goes to deep sleep and wakes again (two reports); with the right one it is back.
"""
import json
import os
import subprocess
import sys

HIL = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HIL))
TIMEOUT = 180


def write_config(path, hil, host, port, **extra):
    values = {"WIFI_SSID": hil.ssid, "WIFI_PASSWORD": hil.password, "SERVER_HOST": host,
              "SERVER_PORT": port, "IDENTITY": hil.identity, "PSK_HEX": hil.psk_hex,
              "SLEEP_MS": hil.sleep_ms, "NODE_NAME": "hil", "BOOT_GRACE_MS": 3000,
              "WIFI_TIMEOUT_MS": 15000}
    values.update(extra)
    with open(path, "w") as f:
        f.write("".join("%s = %r\n" % kv for kv in sorted(values.items())))
    return path


def deploy(hil, config, *extra):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "deploy.py"),
                        "--port", hil.port, "--target", "esp32", "--config", config]
                       + list(extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=TIMEOUT)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def mpremote(hil, *args):
    p = subprocess.run([sys.executable, "-m", "mpremote", "connect", hil.port, "resume"]
                       + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=TIMEOUT)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def to_repl(console_factory):
    """Reset the board and stop main.py in its boot grace period: the REPL is free for
    mpremote (a board in deep sleep does not answer)."""
    c = console_factory()
    c.hard_reset()
    ok = c.read_for(15, until=lambda t: "Ctrl-C within" in t or ">>> " in t)
    c.write(b"\x03\x03")
    ok = c.read_for(5, until=lambda t: ">>> " in t) and ok
    c.close()
    assert ok, "board did not reach the REPL after a reset; it printed:\n" + c.text[-2000:]


def reports(text):
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def watch_wakes(console_factory, count, hil):
    """Reset into main.py and collect `count` wake reports from the console."""
    c = console_factory()
    c.hard_reset()
    budget = 30 + count * (hil.sleep_ms / 1000 + 25)  # WiFi join + handshake per wake
    c.read_for(budget, until=lambda t: len(reports(t)) >= count)
    c.close()
    got = reports(c.text)
    assert len(got) >= count, "only %d wake reports; console:\n%s" % (len(got), c.text[-4000:])
    return got, c.text


def test_deploy(hil, server, console_factory, tmp_path):
    host, port, _ = server
    cfg = write_config(str(tmp_path / "config.py"), hil, host, port)
    to_repl(console_factory)
    rc, out = mpremote(hil, "exec", "open('node.py', 'w').write('raise ImportError(1)')")
    assert rc == 0, out
    rc, out = deploy(hil, cfg)
    assert rc == 0, out
    assert "arch xtensawin" in out or "arch rv32imc" in out, out
    assert "would shadow node.mpy" in out, out
    rc, listing = mpremote(hil, "exec", "import os; print(sorted(os.listdir()))")
    assert rc == 0 and "node.mpy" in listing and "'node.py'" not in listing, listing
    rc, out = deploy(hil, cfg)
    assert rc == 0 and "copied 0," in out and "removed 0" in out, out


def test_wake_cycles(hil, server, console_factory, tmp_path):
    host, port, srv = server
    cfg = write_config(str(tmp_path / "config.py"), hil, host, port)
    to_repl(console_factory)
    rc, out = deploy(hil, cfg)
    assert rc == 0, out
    rc, out = mpremote(hil, "exec", "import os\nfor n in ('session.bin', 'session.bin.old'):\n"
                       " try:\n  os.remove(n)\n except OSError:\n  pass")
    assert rc == 0, out
    wakes, text = watch_wakes(console_factory, 4, hil)
    first = wakes[0]
    assert first["ok"] and first["echoed"], first
    assert first["reset"] != "deepsleep" and first["action"] == "full", first
    assert first["ip"] and first["board"] == "esp32"
    for r in wakes[1:4]:
        assert r["ok"] and r["echoed"], r
        assert r["reset"] == "deepsleep" and r["action"] == "continue", r
        assert r["kind"] == "continued" and r["port"] == first["port"], r
        assert r["wire"]["handshake_datagrams"] == 0
    if srv is not None:
        log = srv.output()
        assert log.count("handshake done from %s:%d " % (first["ip"], first["port"])) == 1, log
        sizes = [int(line.split()[1]) for line in log.splitlines() if line.startswith("echo ")]
        assert sizes[:4] == [len(r["sent"]) for r in wakes[:4]], log


def test_wifi_failure_survived(hil, server, console_factory, tmp_path):
    host, port, _ = server
    bad = write_config(str(tmp_path / "bad.py"), hil, host, port,
                       WIFI_PASSWORD=(hil.password or "") + "-wrong", WIFI_TIMEOUT_MS=5000)
    to_repl(console_factory)
    rc, out = deploy(hil, bad)
    assert rc == 0, out
    wakes, _ = watch_wakes(console_factory, 2, hil)
    for r in wakes[:2]:
        assert not r["ok"] and r["stage"] == "network", r
        assert r["sleep_ms"] == hil.sleep_ms
    assert wakes[1]["reset"] == "deepsleep"  # it slept and woke again: the loop is alive
    good = write_config(str(tmp_path / "good.py"), hil, host, port)
    to_repl(console_factory)
    rc, out = deploy(hil, good)
    assert rc == 0, out
    wakes, _ = watch_wakes(console_factory, 2, hil)
    assert wakes[0]["ok"] and wakes[1]["ok"], wakes
    assert wakes[1]["action"] == "continue"
