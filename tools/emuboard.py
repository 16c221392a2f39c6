"""An emulated MicroPython board: the unix port behind a pseudo-terminal, for mpremote.

    python tools/emuboard.py --dir BOARD_DIR [--link /tmp/board-tty] [--micropython PATH]
    mpremote connect /tmp/board-tty resume exec "print(1)"
    python tools/deploy.py --port /tmp/board-tty --target unix --config my_config.py

BOARD_DIR is the board's filesystem (the unix port's filesystem is the host's, so this is the
current directory and sys.path[0] of every micropython it starts). The board behaves like an
ESP32 running a main.py (DESIGN.md section 5):

- Boot: if BOARD_DIR/main.py exists, `micropython main.py` runs (no REPL). Exit status 0 means
  the program went to "deep sleep" (ports/unix/unixboard.py sleeps, then exits 0): boot again.
  Anything else (an exception, Ctrl-C) or no main.py: the REPL comes up.
- REPL: `micropython` (interactive). mpremote's raw REPL and raw-paste mode work on it. The
  process exiting there is a soft reset ("MPY: soft reboot"): Ctrl-D on an empty raw REPL line
  (mpremote's own soft reset) comes back in raw REPL mode without running main.py, as a board
  does; any other exit (Ctrl-D at ">>> ", `machine.soft_reset()`, `sys.exit()`) boots main.py.
  reset() and power_cycle() (which also deletes the RTC stand-in file) are hard resets.
- Host bytes wait in the emulator while no process can take them (between processes, or until
  a new REPL printed its prompt), so mpremote's Ctrl-C + Ctrl-A reach the REPL that follows
  an interrupted main.py, as a board's UART buffer keeps them. Ctrl-C interrupts a running
  program through the terminal's SIGINT, as on a real REPL.

Everything the board prints is also appended to a log (`.output()`, `--log FILE`); the
host-side link path is a symlink to the emulator's pty. Loopback and local files only.
"""
import argparse
import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOFT_REBOOT = b"MPY: soft reboot\r\n"


def _find_micropython():
    from benchkit import find_micropython  # tools/ is on sys.path: this script's folder
    return find_micropython() or "micropython"


def _board_mode(fd):
    # What the micropython side sees outside its REPL: no echo, no line editing, no output
    # translation (mpremote matches "\r\n" exactly), but ISIG so Ctrl-C raises
    # KeyboardInterrupt in a running program. micropython sets raw mode itself in the REPL.
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] |= termios.ISIG
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class EmulatedBoard:
    """The board; start() runs it in a thread until stop()."""

    def __init__(self, board_dir, link=None, micropython=None, heapsize=None, log_path=None,
                 env=None):
        self.board_dir = os.path.abspath(board_dir)
        self.micropython = micropython or _find_micropython()
        self.heapsize = heapsize
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("MICROPYPATH", ":.frozen:lib")  # "" first: like a board's sys.path
        self.boots = 0  # boot phases started (power-on, wakes from deep sleep, soft resets)
        self.repls = 0  # REPL phases started
        self.exits = []  # (phase, exit status) of every micropython process, in order
        self._log = []
        self._lock = threading.Lock()
        self._stopping = False
        self._proc = None
        self._phase = None
        self._thread = None
        self._reset_requested = False
        self._pending = b""  # host bytes not yet given to a micropython process
        self._raw = False  # the REPL is in raw mode (tracked from its output)
        self._tail = b""
        # Host side: mpremote opens the slave; we keep it open too, so the pty survives
        # mpremote disconnecting (data the host never reads is flushed, as a UART drops it).
        self._host_master, self._host_slave = os.openpty()
        tty.setraw(self._host_slave)
        self.tty = os.ttyname(self._host_slave)
        # Board side: one pty for every micropython process (see the module docstring).
        self._board_master, self._board_slave = os.openpty()
        _board_mode(self._board_slave)
        for fd in (self._host_master, self._board_master):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.link = link
        if link:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(self.tty, link)

    @property
    def port(self):
        """What to pass to `mpremote connect` / `tools/deploy.py --port`."""
        return self.link or self.tty

    # ---- control ------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping = True
        self._kill()
        if self._thread is not None:
            self._thread.join(5)
        for fd in (self._host_master, self._host_slave, self._board_master, self._board_slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)

    def reset(self):
        """Hard reset: end the running process; the board boots again (main.py runs)."""
        self._reset_requested = True
        self._kill()

    def power_cycle(self, volatile=("rtc.bin",)):
        """Power off and on: RTC memory (the files in `volatile`) is lost, then boot."""
        self._reset_requested = True
        self._kill(after=lambda: [self._remove(n) for n in volatile])

    def output(self):
        """Everything the board printed so far (str)."""
        with self._lock:
            return b"".join(self._log).decode("utf-8", "replace")

    def wait_for(self, predicate, timeout):
        """Poll predicate(output()) until true or timeout; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate(self.output())
            if v or time.monotonic() >= deadline:
                return v
            time.sleep(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- internals ----------------------------------------------------------------------
    def _remove(self, name):
        try:
            os.remove(os.path.join(self.board_dir, name))
        except FileNotFoundError:
            pass

    def _kill(self, after=None):
        p = self._proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: only what we started
            except ProcessLookupError:
                pass
            p.wait(5)
        if after is not None:
            after()

    def _emit(self, data):
        with self._lock:
            self._log.append(data)
        if self.log_path:
            with open(self.log_path, "ab") as f:
                f.write(data)
        try:
            os.write(self._host_master, data)
        except BlockingIOError:
            # Nobody reads the host side: drop what is queued there, as a UART would.
            termios.tcflush(self._host_slave, termios.TCIFLUSH)
            try:
                os.write(self._host_master, data)
            except OSError:
                pass

    def _spawn(self, argv):
        slave = self._board_slave

        def become_terminal_owner():
            # A new session whose controlling terminal is the board pty: Ctrl-C -> SIGINT.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        return subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                cwd=self.board_dir, env=self.env, start_new_session=True,
                                preexec_fn=become_terminal_owner, close_fds=True)

    def _argv(self, *args):
        a = [self.micropython]
        if self.heapsize:
            a += ["-X", "heapsize=%s" % self.heapsize]
        return a + list(args)

    def _run(self):
        phase = "boot"
        to_raw = False
        while not self._stopping:
            _board_mode(self._board_slave)  # a killed micropython may have left raw mode on
            self._reset_requested = False
            self._raw = False
            self._tail = b""
            if phase == "boot" and not os.path.exists(os.path.join(self.board_dir, "main.py")):
                phase = "repl"
            self._phase = phase
            if phase == "boot":
                self.boots += 1
                self._proc = self._spawn(self._argv("main.py"))
            else:
                self.repls += 1
                self._proc = self._spawn(self._argv())
            self._relay(self._proc, to_raw)
            rc = self._proc.wait()
            self.exits.append((phase, rc))
            if self._stopping:
                break
            to_raw = False
            if self._reset_requested:
                phase = "boot"
            elif phase == "repl":
                self._emit(SOFT_REBOOT)
                # Ctrl-D on an empty raw REPL line (mpremote's soft reset): a board comes back
                # in raw REPL mode without running main.py. Any other exit: boot main.py.
                to_raw = self._raw and self._tail.rstrip().endswith(b">OK")
                phase = "repl" if to_raw else "boot"
            else:
                phase = "boot" if rc == 0 else "repl"

    def _relay(self, proc, to_raw=False):
        """Copy bytes both ways until proc exits and its output is drained.

        Host bytes wait in self._pending until the process can take them: a REPL process
        once it printed its prompt (its first switch to raw terminal mode may flush the input
        queue), a booting program at once but only Ctrl-C (SIGINT via the terminal; the rest
        is for the REPL that follows the interrupt, as a board's UART buffer keeps it)."""
        ready = False
        seen = b""
        while True:
            alive = proc.poll() is None
            try:
                r, _, _ = select.select([self._host_master, self._board_master], [], [], 0.05)
            except (OSError, ValueError):
                return
            got_output = False
            if self._board_master in r:
                try:
                    data = os.read(self._board_master, 4096)
                except OSError:
                    data = b""
                if data:
                    got_output = True
                    self._emit(data)
                    self._track_mode(data)
                    if not ready and self._phase == "repl":
                        seen = (seen + data)[-64:]
                        ready = b">>> " in seen or b"raw REPL" in seen
                        if ready and to_raw:
                            self._write_board(b"\x01")  # back to raw REPL after a soft reset
            if self._host_master in r:
                try:
                    self._pending += os.read(self._host_master, 4096)
                except OSError:
                    pass
            if alive and self._pending:
                if ready:
                    self._pending = self._write_board(self._pending)
                elif self._phase == "boot" and b"\x03" in self._pending:
                    self._write_board(b"\x03")
                    self._pending = self._pending.replace(b"\x03", b"")
            if not alive and not got_output:
                return

    def _track_mode(self, data):
        # Raw REPL or friendly REPL, from what the REPL printed last.
        t = self._tail = (self._tail + data)[-96:]
        r = t.rfind(b"raw REPL; CTRL-B to exit")
        f = t.rfind(b">>> ")
        if r != f:
            self._raw = r > f

    def _write_board(self, data):
        """Write what the board pty takes now; return the rest."""
        try:
            n = os.write(self._board_master, data)
        except (BlockingIOError, OSError):
            return data
        return data[n:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="the board's filesystem (created if missing)")
    ap.add_argument("--link", default="/tmp/dtls-lite-board",
                    help="symlink to the board's tty (default %(default)s)")
    ap.add_argument("--micropython", default=None, help="unix port binary (default: the venv's)")
    ap.add_argument("--heapsize", default=None, help="micropython -X heapsize=, e.g. 128k")
    ap.add_argument("--log", default=None, help="append everything the board prints to FILE")
    a = ap.parse_args(argv)
    os.makedirs(a.dir, exist_ok=True)
    board = EmulatedBoard(a.dir, link=a.link, micropython=a.micropython, heapsize=a.heapsize,
                          log_path=a.log)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    board.start()
    print("emulated board on %s (-> %s), filesystem %s; Ctrl-C stops it"
          % (board.link, board.tty, board.board_dir), flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
