"""Host side of the emulated-ESP32 tier (tests/esp32emu): boards, files and runs on them.

The board is tools/esp32emu.py's Esp32Board: the real MicroPython v1.16 ESP32 firmware under
Espressif's QEMU, its flash a copy of a prepared image. What runs on it was compiled here to
.mpy for the board (mpy v5, xtensawin: deploy.mpy_cross_argv, as tools/deploy.py does) and
copied with mpremote onto its FAT filesystem, so imports come from flash, as on a device.
"""
import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import deploy  # tools/ (on sys.path: tests/conftest.py)
import esp32emu

TIER = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(TIER)
ROOT = os.path.dirname(TESTS)
PORTABLE = os.path.join(TESTS, "portable")

# The board's sys.implementation.mpy (v5, flags: unicode, arch xtensawin); read from the board
# by the deploy test, and from prepared.json here.
BOOT_TIMEOUT = 40  # a prepared flash reaches its REPL in 3-5 s here
# A slow module may take long (test_connection's 26 handshakes passed 1200 s beside a CI run);
# a board that is stuck is caught sooner (exec_watched: silent for 240 s and both cores stuck).
MODULE_TIMEOUT = float(os.environ.get("DTLS_LITE_ESP32EMU_MODULE_TIMEOUT", "3600"))


def unavailable():
    """Why the tier cannot run here (text naming what is missing), or None."""
    return esp32emu.ready()


def facts():
    import json
    with open(esp32emu.facts_path()) as f:
        return json.load(f)


def mpy_argv():
    version, sub, arch = deploy.decode_mpy(facts()["mpy"])
    return deploy.mpy_cross_argv(version, sub, arch)


def board_from(image, tmp_path, name="flash.bin", **kw):
    """A started board on a copy of `image` (kept as tmp_path/name), at its REPL."""
    flash = os.path.join(str(tmp_path), name)
    shutil.copyfile(image, flash)
    b = esp32emu.Esp32Board(flash, log_path=os.path.join(str(tmp_path), name + ".log"), **kw)
    b.start()
    if not b.wait_booted(timeout=BOOT_TIMEOUT):
        out, qlog, hangs = b.output()[-3000:], b.qemu_log(), b.boot_hangs
        b.stop()
        raise AssertionError("the emulated ESP32 did not reach its REPL in 3 boots of %d s "
                             "(hung with the cores at %s: %s):\n%s\n%s"
                             % (BOOT_TIMEOUT, hangs, esp32emu.HANG_NOTE, out, qlog))
    return b


def mpremote(board, *args, timeout=300, resume=True):
    """mpremote on the board; (exit status, output)."""
    argv = esp32emu.mpremote_argv() + ["connect", board.port] + (["resume"] if resume else [])
    try:
        p = subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return 124, (e.stdout or b"").decode("utf-8", "replace") + "\n[mpremote timed out]"
    return p.returncode, p.stdout.decode("utf-8", "replace")


def exec_ok(board, code, timeout=300, resume=True):
    """Run code on the board; its output. AssertionError (with the output) on failure."""
    rc, out = mpremote(board, "exec", code, timeout=timeout, resume=resume)
    if rc != 0 or "Traceback (most recent call last)" in out:
        raise AssertionError("on the board (exit %d):\n%s\n---- code:\n%s" % (rc, out, code))
    return out


def values(out, tag):
    """The Python literals printed as `TAG <literal>` lines, in order."""
    found = []
    for line in out.replace("\r", "").splitlines():
        if line.startswith(tag + " "):
            found.append(ast.literal_eval(line[len(tag) + 1:].strip()))
    return found


# ---- compiling and shipping test code -------------------------------------------------------
_FROMHEX = re.compile(r"\bbytes\.fromhex\b")


def compile_module(src, board_name, out_dir, argv):
    """src (.py) -> out_dir/board_name (.mpy) for the board. bytes.fromhex (MicroPython 1.16
    has none) becomes emurun.fromhex, in the same place (line numbers unchanged)."""
    with open(src, encoding="utf-8") as f:
        text = f.read()
    text = _FROMHEX.sub("__import__('emurun').fromhex", text)
    tmp = os.path.join(out_dir, "src", board_name[:-4] + ".py")
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    out = os.path.join(out_dir, board_name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    p = subprocess.run(argv + ["-o", out, "-s", os.path.relpath(src, ROOT), tmp],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise AssertionError("mpy-cross (%s) failed on %s:\n%s"
                             % (" ".join(argv), src, p.stdout.decode("utf-8", "replace")))
    return out


def portable_files(out_dir):
    """{board path: local .mpy} of the portable suite, its helpers and the runner."""
    argv = mpy_argv()
    srcs = sorted(glob.glob(os.path.join(PORTABLE, "*.py")))
    files = {}
    for src in srcs:
        name = os.path.basename(src)[:-3] + ".mpy"
        files[name] = compile_module(src, name, out_dir, argv)
    for src in sorted(glob.glob(os.path.join(TESTS, "support", "*.py"))):
        name = "support/" + os.path.basename(src)[:-3] + ".mpy"
        files[name] = compile_module(src, name, out_dir, argv)
    files["emurun.mpy"] = compile_module(os.path.join(TIER, "emurun.py"), "emurun.mpy",
                                         out_dir, argv)
    return files


def ship(board, files, timeout=1800):
    """Copy {board path: local file} onto the board (folders made), in one mpremote run."""
    dirs = sorted(set(os.path.dirname(d) for d in files if os.path.dirname(d)))
    args = ["exec", "import os\nfor d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass"
            % (dirs,)]
    for dest in sorted(files):
        args += ["+", "cp", files[dest], ":" + dest]
    rc, out = mpremote(board, *args, timeout=timeout)
    if rc != 0:
        raise AssertionError("copying to the board failed (exit %d):\n%s" % (rc, out[-3000:]))


def exec_watched(board, code, timeout, quiet=240, resume=False):
    """mpremote exec of code, ended early when the board printed nothing for `quiet` s and
    both cores are stuck (board.stuck()) at the same PCs on two looks 30 s apart;
    (exit status, output, stuck?)."""
    argv = esp32emu.mpremote_argv() + ["connect", board.port] + (["resume"] if resume else [])
    p = subprocess.Popen(argv + ["exec", code], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    reader.start()
    t0 = last_t = next_look = time.monotonic()
    last_len = board.mark()
    stuck, suspect = False, None
    while p.poll() is None:
        time.sleep(1)
        now = time.monotonic()
        if board.mark() != last_len:
            last_len, last_t, suspect = board.mark(), now, None
        elif now - last_t > quiet and now >= next_look:
            # Two looks 30 s apart at the same stuck PCs: a board busy with FAT writes was
            # once taken for stuck (test_store, then interrupted alive); a deadlock stays put.
            next_look = now + 30
            pcs = board.stuck()
            stuck = bool(pcs) and pcs == suspect
            suspect = pcs
        if stuck or now - t0 > timeout:
            p.kill()
            break
    p.wait(10)
    reader.join(10)
    text = (out[0] if out else b"").decode("utf-8", "replace")
    rc = p.returncode if not stuck and time.monotonic() - t0 <= timeout else 124
    return rc, text, stuck


def run_module(board, module, timeout=MODULE_TIMEOUT):
    """Run one portable module on the board after a soft reset (a fresh heap); the
    support.runtimes.Run of its output, with .seconds, .heap {name: (before, after)} and
    .stuck_retries. A board whose cores deadlock (esp32emu.HANG_NOTE) is reset and the module
    run once more; that is reported, not hidden."""
    from support import runtimes
    code = "import emurun\nemurun.main(%r)" % module
    t0 = time.monotonic()
    retries = 0
    while True:
        rc, out, stuck = exec_watched(board, code, timeout)
        if not stuck or retries:
            break
        retries += 1
        esp32emu.log("%s: the emulated cores deadlocked (%s); reset, running it again"
                     % (module, esp32emu.HANG_NOTE))
        mark = board.mark()
        board.reset()
        board.wait_booted(timeout=BOOT_TIMEOUT, since=mark)
    run = runtimes.Run(module, 0 if "mp_runner: " in out else rc, out.replace("\r", ""),
                       None if rc != 124 else "timed out after %.0f s" % timeout)
    run.seconds = time.monotonic() - t0
    run.stuck_retries = retries
    if stuck:
        run.error = "the emulated cores deadlocked twice (%s)" % esp32emu.HANG_NOTE
    run.heap = {}
    for line in run.output.splitlines():
        if line.startswith("HEAP "):
            parts = line.split()
            if len(parts) == 4:
                run.heap[parts[1]] = (int(parts[2]), int(parts[3]))
    return run


def deploy_tool(board, *args, timeout=1800):
    """tools/deploy.py --port <board> ARGS; (exit status, output)."""
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--port",
                        board.port] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


# ---- a network namespace behind the board's PPP link ----------------------------------------
import contextlib  # noqa: E402
import ctypes  # noqa: E402

CLONE_NEWNET = 0x40000000
NET_LOCAL = "10.44.0.1"  # this side of the PPP link (servers bind here), inside the namespace


class Gateway:
    """tools/esp32emu/pppgw.py in a new network namespace (`unshare --net`, root), on the
    board's UART1 socket. .pid names the namespace (/proc/PID/ns/net); peer() changes the
    address the board gets at its next PPP negotiation; output() is its event log."""

    def __init__(self, board, peer="10.44.0.2"):
        self.lines = []
        argv = ["unshare", "--net", "--", sys.executable,
                os.path.join(ROOT, "tools", "esp32emu", "pppgw.py"), "--uart",
                board.uart1_path, "--local", NET_LOCAL, "--peer", peer, "--wait-uart", "300"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not any(line.startswith("tun ") for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("the PPP gateway did not start (unshare --net needs root):"
                                     "\n" + self.output())
            time.sleep(0.05)

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def output(self):
        return "\n".join(self.lines)

    def peer(self, address):
        self.proc.stdin.write(("peer %s\n" % address).encode())
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def in_netns(pid):
    """This thread in the network namespace of process pid (processes it starts are too)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open("/proc/%d/ns/net" % pid, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the namespace of %d" % pid)
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)
