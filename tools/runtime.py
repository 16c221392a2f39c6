# Shared by the tool scripts that run on both MicroPython and CPython (run_client.py,
# bench_handshake_worker.py): puts the repo root on sys.path and gives a microsecond clock.
import sys

_tools = sys.path[0]  # the running script's folder, absolute, on both runtimes
ROOT = _tools.rsplit("/", 1)[0] if "/" in _tools else ".."
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)



def say(line):
    """One line to stdout at once (the benchmark's parent process waits for it)."""
    sys.stdout.write(line + "\n")
    try:
        sys.stdout.flush()
    except AttributeError:  # MicroPython's stdout is unbuffered
        pass


try:
    from time import ticks_diff, ticks_us  # noqa: F401
except ImportError:  # CPython
    from time import perf_counter_ns

    def ticks_us():
        return perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b
