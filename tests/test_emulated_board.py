"""An emulated board in CI: the MicroPython unix port behind a pseudo-terminal
(tools/emuboard.py), deployed to with the real tools/deploy.py over mpremote, running the
sensor node (ports/unix/main.py) through wake cycles against the pion server.

What it proves: deploy.py reads the board's .mpy version over the serial protocol, compiles to
match, copies only .mpy (plus main.py and config.py), removes .py files that would shadow them,
skips unchanged files on the next run; the node boots from those files, does one full
handshake, then continues the connection on every deep-sleep wake (a process restart, RTC
memory in a file) with no handshake; mpremote can interrupt the sleeping node; a power cycle
(RTC memory lost) resumes the session from the file; `mpremote mip install` of package.json
works. The board's output (one JSON line per wake) and the server's log are both checked.
Needs micropython and mpremote from the venv and the pion server: missing ones FAIL.
"""
import json
import os
import subprocess
import sys

import pytest

import deploy  # tools/ (on sys.path: tests/conftest.py)
from emuboard import EmulatedBoard
from support import runtimes as rt

ROOT = rt.ROOT

TIMEOUT = 120


def reports(board):
    """The JSON lines the node printed, in order."""
    out = []
    for line in board.output().replace("\r", "").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line still being printed
    return out


def run_tool(argv):
    p = subprocess.run([sys.executable] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=TIMEOUT, cwd=ROOT)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def mpremote(board, *args):
    p = subprocess.run([rt.venv_tool("mpremote"), "connect", board.port, "resume"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    return p.returncode, p.stdout.decode("utf-8", "replace")


@pytest.fixture
def board(tmp_path):
    mp = rt.executable("micropython")
    fs = tmp_path / "board"
    fs.mkdir()
    b = EmulatedBoard(str(fs), link=str(tmp_path / "tty"), micropython=mp)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_deploy_and_wake_cycles(board, tmp_path, pion_server):
    fs = board.board_dir
    config = tmp_path / "config.py"
    config.write_text(
        "SERVER_HOST = %r\nSERVER_PORT = %d\nIDENTITY = %r\nPSK_HEX = %r\n"
        "SLEEP_MS = 300\nBIND_HOST = '127.0.0.2'\nNODE_NAME = 'emu'\nREPLY_TIMEOUT_MS = 2000\n"
        % (pion_server.host, pion_server.port, pion_server.identity, pion_server.psk_hex))
    # Stale sources a previous install left: they would shadow the .mpy files.
    os.makedirs(os.path.join(fs, "dtls_lite"))
    for name in ("node.py", "dtls_lite/client.py"):
        with open(os.path.join(fs, name), "w") as f:
            f.write("raise ImportError('stale source imported instead of the .mpy')\n")

    deploy_argv = [os.path.join(ROOT, "tools", "deploy.py"), "--port", board.port,
                   "--target", "unix", "--config", str(config)]
    rc, out = run_tool(deploy_argv)
    assert rc == 0, out
    shipped = deploy.shipped_sources("unix")
    assert "board .mpy v6.3 arch x64" in out
    assert "copied %d, unchanged 0, removed 2" % (len(shipped) + 1) in out, out
    on_board = sorted(os.path.relpath(os.path.join(d, f), fs) for d, _, fs_ in os.walk(fs)
                      for f in fs_)
    assert on_board == sorted([".deploy.json", "config.py"] + [d for d, _, _ in shipped])
    assert [f for f in on_board if f.endswith(".py")] == ["config.py", "main.py"]
    assert board.boots == 0  # nothing ran yet: the board sat at its REPL

    # Unchanged files are skipped; --reset reboots into main.py.
    rc, out = run_tool(deploy_argv + ["--reset"])
    assert rc == 0, out
    assert "copied 0, unchanged %d, removed 0" % (len(shipped) + 1) in out, out

    # At least three wakes, each a new micropython process.
    got = board.wait_for(lambda _: len(reports(board)) >= 4, 60)
    assert got, board.output()[-3000:]
    wakes = reports(board)
    first = wakes[0]
    assert first["ok"] and first["echoed"], first
    assert first["reset"] == "power-on" and first["action"] == "full" and first["kind"] == "full"
    for r in wakes[1:4]:
        assert r["ok"] and r["echoed"], r
        assert r["reset"] == "deepsleep" and r["action"] == "continue", r
        assert r["kind"] == "continued" and r["port"] == first["port"]
        assert r["wire"]["handshake_datagrams"] == 0
    assert board.boots >= 4
    # The server: one handshake, from the node's address, and every reading echoed.
    log = pion_server.output()
    assert log.count("handshake done from 127.0.0.2:%d " % first["port"]) == 1, log
    sizes = [int(line.split()[1]) for line in log.splitlines() if line.startswith("echo ")]
    assert sizes[:4] == [len(r["sent"]) for r in wakes[:4]]

    # mpremote reaches the REPL of the sleeping node (Ctrl-C), and the node carries on after.
    # mpremote gives up when the raw REPL's banner is not back within its own timeout, which a
    # loaded host can exceed: a user would try again, so does this test (at most 3 times).
    for _ in range(3):
        rc, out = mpremote(board, "exec", "import os; print('files', sorted(os.listdir()))")
        if "could not enter raw repl" not in out:
            break
    assert rc == 0 and "files" in out and "main.py" in out, out
    n = len(reports(board))
    board.reset()
    assert board.wait_for(lambda _: len(reports(board)) >= n + 2, 60), board.output()[-3000:]
    # The first wake after the reset is "deepsleep" if Ctrl-C hit the node asleep (continue),
    # "soft" if it hit a wake (RTC not trusted: resume from a new port); the next continues.
    before, r = reports(board)[n], reports(board)[n + 1]
    assert before["ok"] and before["reset"] in ("deepsleep", "soft"), before
    assert r["ok"] and r["action"] == "continue" and r["port"] == before["port"], r

    # Power cycle: RTC memory lost; the session file resumes the session.
    n = len(reports(board))
    board.power_cycle()
    assert board.wait_for(lambda _: len(reports(board)) >= n + 2, 60), board.output()[-3000:]
    r, after = reports(board)[n], reports(board)[n + 1]
    assert r["reset"] == "power-on" and r["ok"] and r["action"] == "abbreviated", r
    assert r["kind"] == "abbreviated"
    assert after["action"] == "continue" and after["ok"] and after["port"] == r["port"]
    assert "session resumed" in pion_server.output()


def test_mip_install_package_json(board):
    # The library as .py via `mpremote mip install` (package.json), importable on the board.
    rc, out = mpremote(board, "mip", "install", "--target", "lib",
                       os.path.join(ROOT, "package.json"))
    assert rc == 0, out
    lib = os.path.join(board.board_dir, "lib", "dtls_lite")
    with open(os.path.join(ROOT, "package.json")) as f:
        names = sorted(os.path.basename(dest) for dest, _ in json.load(f)["urls"])
    assert sorted(os.listdir(lib)) == names
    for name in names:
        with open(os.path.join(lib, name), "rb") as a, \
                open(os.path.join(ROOT, "dtls_lite", name), "rb") as b:
            assert a.read() == b.read(), name
    rc, out = mpremote(board, "exec", "import dtls_lite.client as c; print('loaded', c.__file__)")
    assert rc == 0 and "loaded lib/dtls_lite/client.py" in out, out
