# MicroPython unix port (and CPython) hooks for ports/node.py: the ESP32 node, one wake per
# process. A file stands in for RTC memory and for the reset cause; "deep sleep" is a sleep
# followed by the process exiting with status 0 (tools/emuboard.py then boots it again).
#
# RTC file: byte 0 is the reset-cause flag ("S": the last process ended in deepsleep()),
# the rest is the RTC user memory (same 2048-byte limit). Deleting the file = power-off.
import os
import sys
import time

try:  # deployed: every module sits beside main.py
    from node import DEEPSLEEP, Board
    from rtcstore import RTC_MEMORY_SIZE, RTCStore
except ImportError:  # imported as ports.unix.unixboard from a checkout
    from ports.esp32.rtcstore import RTC_MEMORY_SIZE, RTCStore
    from ports.node import DEEPSLEEP, Board

_SLEPT = b"S"
_AWAKE = b"-"


class FileRTC:
    """machine.RTC() stand-in: memory([data]) kept in a file."""

    def __init__(self, path):
        self.path = path

    def _read(self):
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def _write(self, raw):
        with open(self.path, "wb") as f:
            f.write(raw)

    def memory(self, data=None):
        raw = self._read() or _AWAKE
        if data is None:
            return raw[1:]
        if len(data) > RTC_MEMORY_SIZE:
            raise ValueError("RTC memory is %d bytes" % RTC_MEMORY_SIZE)
        self._write(raw[:1] + bytes(data))
        return None

    def take_reset_cause(self):
        """The reset cause of this boot: "deepsleep", "soft" (the process ended otherwise:
        crash, Ctrl-C, emulated soft reset) or "power-on" (no file). Clears the flag."""
        raw = self._read()
        if raw is None:
            return "power-on"
        if raw[:1] == _SLEPT:
            self._write(_AWAKE + raw[1:])
            return DEEPSLEEP
        return "soft"

    def set_slept(self):
        raw = self._read() or _AWAKE
        self._write(_SLEPT + raw[1:])


class UnixBoard(Board):
    """sleep=False: deepsleep() returns at once (one wake per process, driven from outside);
    exit=False: it does not end the process (tests that run several wakes in one process)."""

    name = "unix"

    def __init__(self, cfg, sleep=True, exit=True):
        self._cfg = cfg
        self.rtc = FileRTC(getattr(cfg, "RTC_FILE", "rtc.bin"))
        self._cause = self.rtc.take_reset_cause()
        self._sleep = sleep
        self._exit = exit

    def reset_cause(self):
        return self._cause

    def rtc_store(self):
        return RTCStore(self.rtc)

    def network_up(self, cfg):
        # The WiFi stand-in: "down" while the file WIFI_DOWN_FILE exists (a test can flip it
        # between wakes). LOCAL_IP plays the address the WLAN interface would report.
        flag = getattr(cfg, "WIFI_DOWN_FILE", "wifi.down")
        if flag and _exists(flag):
            raise OSError("WiFi stand-in is down (%s exists)" % flag)
        return getattr(cfg, "LOCAL_IP", None)

    def deepsleep(self, ms):
        self.rtc.set_slept()
        if self._sleep and ms > 0:
            time.sleep(ms / 1000)
        if self._exit:
            sys.exit(0)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def config_from_file(path):
    """A config object from a .py file of NAME = value lines (like the board's config.py)."""
    ns = {}
    with open(path) as f:
        exec(f.read(), ns)
    return _Config(ns)


class _Config:
    def __init__(self, ns):
        self._ns = ns

    def __getattr__(self, name):
        try:
            return self._ns[name]
        except KeyError:
            raise AttributeError(name)

