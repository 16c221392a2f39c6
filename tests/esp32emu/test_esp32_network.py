"""Handshakes from the emulated ESP32 to real servers, over a real network path.

The board runs the ESP32 port as deployed (ports/esp32: main.py's boot, reset cause, RTC
store, session file on FAT, wake policy, machine.deepsleep()), with one substitution: the
network comes up over PPP on UART1 (board/pppnet.py) instead of WiFi, which QEMU lacks. On
this side, tools/esp32emu/pppgw.py answers PPP and puts the board's IP packets on a TUN
interface in a network namespace the test creates (unshare --net); the server runs in that
namespace on 10.44.0.1. The board's lwIP sends and receives real UDP datagrams; nothing
touches the host's own network.

Each wake: boot, PPP, one reading, the reply, save, machine.deepsleep(SLEEP_MS), which wakes
through esp32emu's deep-sleep model with reset cause DEEPSLEEP_RESET and RTC memory kept. The
wakes: first boot (full handshake), continued after deep sleep (no handshake), continued
again, then the gateway gives the board a new address: abbreviated handshake, then continued
at the new address. Against pion and Mbed TLS (ssl_server2 without CID: with a CID it would
continue across the address change; its socket follows the first address, see peers.py).
"""
import json
import os
import time

import pytest

import esp32tier
import peers

SLEEP_MS = 1500
# Boot, PPP, handshake and save under emulation: 1.5-2 min of wall time per wake here, more on a
# busy host (a continued wake reported 90 s of its own clock, 137 ms of it for PPP).
WAKE_TIMEOUT = 300
# What the firmware prints when it panics and reboots by itself (ESP-IDF's panic handler). Seen
# once under emulation during a deep-sleep wake, before its report, in the firmware's C code: the
# reboot is a SW_CPU_RESET, so the node (rightly) no longer trusts RTC memory and the sequence is
# lost.
PANIC = ("abort() was called", "Guru Meditation Error")
BOARD_FILES = os.path.join(esp32tier.TIER, "board")


def reports(board, since=0):
    out = []
    for line in board.output(since).replace("\r", "").splitlines():
        if line.startswith("{") and line.endswith("}"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def node_flash(deployed, tmp_path, server_port, name):
    """The deployed image plus the node: main.py (the tier's), portmain.mpy
    (ports/esp32/main.py), pppnet.mpy and config.py; returns the image path."""
    build = str(tmp_path / ("build-" + name))
    argv = esp32tier.mpy_argv()
    files = {
        "portmain.mpy": esp32tier.compile_module(os.path.join(esp32tier.ROOT, "ports", "esp32",
                                                              "main.py"),
                                                 "portmain.mpy", build, argv),
        "pppnet.mpy": esp32tier.compile_module(os.path.join(BOARD_FILES, "pppnet.py"),
                                               "pppnet.mpy", build, argv),
        "main.py": os.path.join(BOARD_FILES, "main.py"),
    }
    config = tmp_path / ("config-%s.py" % name)
    config.write_text(
        "SERVER_HOST = %r\nSERVER_PORT = %d\nIDENTITY = %r\nPSK_HEX = %r\n"
        "SLEEP_MS = %d\nNODE_NAME = 'esp32emu'\nREPLY_TIMEOUT_MS = 8000\n"
        "WIFI_TIMEOUT_MS = 30000\nBOOT_GRACE_MS = 500\nINITIAL_TIMEOUT_MS = 2000\n"
        "HEAP_REPORT = True\n"
        % (esp32tier.NET_LOCAL, server_port, peers.IDENTITY, peers.PSK_HEX, SLEEP_MS))
    files["config.py"] = str(config)
    board = esp32tier.board_from(deployed[0], tmp_path, "prep-%s.bin" % name)
    try:
        esp32tier.ship(board, files)
        board.shutdown()
    finally:
        board.stop()
    return str(tmp_path / ("prep-%s.bin" % name))


# ssl_server2 serves one association at a time and its socket stays connected to the first
# client's address: a node at a new address is answered only once read_timeout has dropped
# the old association. As long as a wake's budget (WAKE_TIMEOUT), so that a continued wake
# within its budget meets a live association.
MBEDTLS_READ_TIMEOUT_MS = WAKE_TIMEOUT * 1000

SERVERS = {
    "pion": lambda: peers.pion_server(host=esp32tier.NET_LOCAL),
    "mbedtls": lambda: peers.mbedtls_server(host=esp32tier.NET_LOCAL, cid=False,
                                            exchanges=100,
                                            read_timeout_ms=MBEDTLS_READ_TIMEOUT_MS),
}


def panicked(text):
    """The firmware's own panic lines in `text` (a board's output), if any."""
    return [line for line in text.replace("\r", "").splitlines() if any(p in line for p in PANIC)]


@pytest.mark.parametrize("server_name", sorted(SERVERS))
def test_wakes_from_the_board(deployed, tmp_path, server_name):
    # A firmware panic (PANIC) ends a run's sequence; it is said and the sequence runs once
    # more on a new board, gateway and server. A second panic, or any other failure, fails.
    for attempt in (1, 2):
        where = tmp_path / ("run%d" % attempt)
        where.mkdir()
        board = esp32tier.esp32emu.Esp32Board(
            os.path.join(str(where), "placeholder.bin"), uart1=True,
            log_path=str(where / "console.log"))
        try:
            wakes_on(board, deployed, where, server_name)
        except AssertionError:
            lines = panicked(board.output())
            if attempt == 2 or not lines:
                raise
            print("the firmware panicked (%s); the sequence runs again on a new board; the "
                  "first: %s" % (lines[0], where / "console.log"))
            continue
        lines = panicked(board.output())
        assert not lines, lines
        return


def wakes_on(board, deployed, tmp_path, server_name):
    """The whole wake sequence (run_wakes) on `board`, a new one; stops it."""
    gw = None
    try:
        gw = esp32tier.Gateway(board)
        with esp32tier.in_netns(gw.pid):
            cm = SERVERS[server_name]()
            srv = cm.__enter__()
        try:
            board.flash = node_flash(deployed, tmp_path, srv.port, server_name)
            run_wakes(board, gw, srv)
        finally:
            cm.__exit__(None, None, None)
    finally:
        board.stop()
        if gw is not None:
            gw.stop()


def wait_reports(board, n, gw, srv):
    board.wait_for(lambda out: len(reports(board)) >= n or panicked(out), WAKE_TIMEOUT * n)
    ok = len(reports(board)) >= n
    if not ok:  # where the cores are tells a hang in the IDF start-up from a slow or stuck wake
        if board.proc is not None and board.proc.poll() is not None:
            cores = "QEMU exited with %s (its output: console.log.qemu)" % board.proc.returncode
        else:
            try:
                pcs = board.stuck()
                cores = ("cores stuck at %s" % " ".join(pcs) if pcs else
                         "cores at %s, not stuck" % " ".join(board.cpu_pcs()))
            except Exception as e:
                cores = "cores not read: %r" % e
    assert ok, ("%d wake reports expected, got %d (boots hung and booted again: %d; %s)\n"
                "---- board:\n%s\n---- gateway:\n%s\n---- server:\n%s"
                % (n, len(reports(board)), len(board.boot_hangs), cores, board.output()[-4000:],
                   gw.output()[-2000:], srv.output()[-2000:]))
    return reports(board)


def run_wakes(board, gw, srv):
    board.start()  # main.py runs at once: each report is one wake
    board.watch_boots()  # a boot that hangs in the IDF start-up is booted again, the same way
    r = wait_reports(board, 3, gw, srv)
    first, second, third = r[:3]
    assert first["ok"], first
    assert first["reset"] == "power-on" and first["action"] == "full", first
    assert first["ip"] == "10.44.0.2"
    for w in (second, third):
        assert w["ok"] and w["reset"] == "deepsleep", w
        assert w["action"] == "continue" and w["kind"] == "continued", w
        assert w["wire"]["handshake_datagrams"] == 0 and w["port"] == first["port"], w
    # A new address at the next wake: the gateway hands out 10.44.0.3. For Mbed TLS the board
    # is paused (QEMU's `stop`: its clocks, the deep-sleep timer among them, stand still)
    # until the server has dropped the old association, as a node sleeping longer would find.
    if srv.name == "mbedtls":
        board.pause()
        drops = srv.output().count("The operation timed out")
        deadline = time.monotonic() + MBEDTLS_READ_TIMEOUT_MS / 1000 + 60
        while srv.output().count("The operation timed out") == drops:
            assert time.monotonic() < deadline, srv.output()[-2000:]
            time.sleep(0.5)
    gw.peer("10.44.0.3")
    if srv.name == "mbedtls":
        board.resume()
    r = wait_reports(board, 5, gw, srv)
    moved, after = r[3:5]
    assert moved["ok"] and moved["reset"] == "deepsleep" and moved["ip"] == "10.44.0.3", moved
    assert moved["action"] == "abbreviated" and moved["kind"] == "abbreviated", moved
    assert after["ok"] and after["action"] == "continue" and after["ip"] == "10.44.0.3", after
    assert after["wire"]["handshake_datagrams"] == 0, after
    log = srv.output()
    if srv.name == "pion":
        assert log.count("handshake done from 10.44.0.2:%d " % first["port"]) == 1, log
        assert "session resumed" in log, log
        echoed = [w for w in r[:5] if w.get("echoed")]
        assert len(echoed) == 5, r[:5]
    print("wakes:", [(w["reset"], w["ip"], w["port"], w["action"], w["kind"], w.get("ms"),
                      w.get("net_ms")) for w in r[:5]])
    print("free heap at each step (start, client, connected, replied):",
          [(w["kind"], w.get("heap")) for w in r[:5]])
    print("boots that hung in the IDF start-up and were booted again:", len(board.boot_hangs))
