# The sensor-node code under ports/: the RTC-memory store (framing, garbage after power-on),
# the unix RTC stand-in, the ESP32 board hooks and netaddr with fake `machine`/`network`
# modules, and ports/node.py's wake with a fake client (failure policy, local port rules).
# Runs under pytest and under the MicroPython unix port (plain asserts, no fixtures).
# The same node code against a real server: tests/test_ports.py and tests/test_emulated_board.py.
import json
import os
import sys


def _parent(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


_ROOT = _parent(_parent(_parent(__file__)))
if _ROOT == ".":  # __file__ relative with fewer parts (MicroPython, cwd = repo root)
    _ROOT = "."
for _p in (_ROOT + "/ports", _ROOT + "/ports/esp32", _ROOT + "/ports/unix"):
    if _p not in sys.path:
        sys.path.append(_p)

import node  # noqa: E402
import rtcstore  # noqa: E402
from dtls_lite.errors import HandshakeTimeout, UsageError  # noqa: E402
from dtls_lite.store import MemoryStore  # noqa: E402


def _hex(b):
    return "".join("%02x" % x for x in b)


# ---- fakes ------------------------------------------------------------------------------

class FakeRTC:
    """machine.RTC() as on the ESP32 port: memory() returns what was stored last."""

    def __init__(self, mem=b"", drop_writes=False):
        self.mem = mem
        self.drop_writes = drop_writes

    def memory(self, data=None):
        if data is None:
            return self.mem
        if len(data) > 2048:
            raise ValueError("buffer too long")
        if not self.drop_writes:
            self.mem = bytes(data)


class FakeMachine:
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5

    def __init__(self, cause=4):
        self.cause = cause
        self.rtc = FakeRTC()
        self.slept = []

    def RTC(self):  # noqa: N802 - machine's name
        return self.rtc

    def reset_cause(self):
        return self.cause

    def deepsleep(self, ms):
        self.slept.append(ms)


class FakeWLAN:
    def __init__(self, connect_after=0, ip="192.168.4.7", has_ipconfig=True):
        self.polls = 0
        self.connect_after = connect_after  # isconnected() polls until connected; -1: never
        self.ip = ip
        self.has_ipconfig = has_ipconfig
        self.active_calls = []
        self.connected_to = None

    def active(self, on=None):
        self.active_calls.append(on)

    def connect(self, ssid, password):
        self.connected_to = (ssid, password)

    def isconnected(self):
        self.polls += 1
        return self.connect_after >= 0 and self.polls > self.connect_after

    def status(self):
        return 1001

    def ipconfig(self, what):
        if not self.has_ipconfig:
            raise AttributeError("ipconfig")
        assert what == "addr4"
        return (self.ip, "255.255.255.0")

    def ifconfig(self):
        return (self.ip, "255.255.255.0", "192.168.4.1", "192.168.4.1")


class FakeNetwork:
    STA_IF = 0

    def __init__(self, wlan):
        self.wlan = wlan

    def WLAN(self, which):  # noqa: N802 - network's name
        return self.wlan


class _Modules:
    """Put fake modules into sys.modules, restore the real ones afterwards."""

    def __init__(self, **fakes):
        self.fakes = fakes
        self.saved = {}

    def __enter__(self):
        for name, mod in self.fakes.items():
            self.saved[name] = sys.modules.get(name)
            sys.modules[name] = mod
        for name in ("esp32board",):  # imported against the fakes, so import it afresh
            if name in sys.modules:
                del sys.modules[name]
        return self

    def __exit__(self, *exc):
        for name, mod in self.saved.items():
            if mod is None:
                del sys.modules[name]
            else:
                sys.modules[name] = mod
        if "esp32board" in sys.modules:
            del sys.modules["esp32board"]


class Cfg:
    SERVER_HOST = "127.0.0.1"
    SERVER_PORT = 5684
    IDENTITY = "Client_identity"
    PSK_HEX = "73656372657450534b"
    SLEEP_MS = 1000
    FAIL_SLEEP_MS = 7000
    SESSION_FILE = None
    NODE_NAME = "n1"


class Stats:
    handshake_kind = None


class FakeClient:
    """Stands for DTLSClient: records how the node drives it; behaviour from class fields."""

    made = []  # every instance, in order
    timeouts = 0  # connect() raises HandshakeTimeout for this many first instances
    reply = "echo"  # "echo", None (no reply)

    def __init__(self, host, port, identity, psk, bind=None, connect=True, store=None,
                 session_store=None, wall_clock=None, auto_handshake_timeout_s=None, local=None,
                 **options):
        self.args = {"host": host, "port": port, "identity": identity, "psk": psk, "bind": bind,
                     "connect": connect, "local": local, "options": options}
        self.store = store
        self.session_store = session_store
        self.loaded = None if store is None else store.load()
        self.forced = False
        self.suspended = 0
        self.sent = []
        self.wake_action = None
        self.wake_reason = None
        self.state_error = None
        self.stats = Stats()
        self.wire = {"datagrams_sent": 0}
        FakeClient.made.append(self)

    def force_resume(self):
        self.forced = True

    def connect(self):
        self.wake_action = "continue" if self.loaded else "full"
        self.wake_reason = "fake"
        if len(FakeClient.made) <= FakeClient.timeouts:
            raise HandshakeTimeout("no answer from server after 3 retransmissions")
        self.stats.handshake_kind = "continued" if self.loaded else "full"

    def request(self, data, timeout_ms):
        self.sent.append(data)
        return data if FakeClient.reply == "echo" else None

    def suspend(self):
        self.suspended += 1
        if self.store is not None and self.stats.handshake_kind is not None:
            self.store.save(b"state-blob")


def _reset_fake(timeouts=0, reply="echo"):
    FakeClient.made = []
    FakeClient.timeouts = timeouts
    FakeClient.reply = reply


class FakeBoard(node.Board):
    name = "fake"

    def __init__(self, cause="deepsleep", rtc=None, net_error=None, ip="10.0.0.5"):
        self.cause = cause
        self.rtc = MemoryStore() if rtc is None else rtc
        self.net_error = net_error
        self.ip = ip
        self.logs = []
        self.slept = []

    def reset_cause(self):
        return self.cause

    def rtc_store(self):
        return self.rtc

    def network_up(self, cfg):
        if self.net_error is not None:
            raise self.net_error
        return self.ip

    def log(self, msg):
        self.logs.append(msg)

    def deepsleep(self, ms):
        self.slept.append(ms)


# ---- rtcstore -----------------------------------------------------------------------------

def test_rtc_frame_round_trip():
    for data in (b"", b"x", bytes(range(256)), b"\xff" * rtcstore.MAX_DATA):
        f = rtcstore.frame(data)
        assert len(f) == len(data) + 8
        assert rtcstore.unframe(f) == data
        assert rtcstore.unframe(f + b"trailing garbage") == data


def test_rtc_garbage_reads_as_none():
    good = rtcstore.frame(b"a saved state blob")
    bad = [b"", b"rT", good[:7], good[:-1],  # truncated
           b"\x00" * 2048, b"\xff" * 2048, os.urandom(2048),  # power-on contents
           b"xx" + good[2:],  # magic
           good[:2] + b"\xff\xff" + good[4:],  # length beyond the memory
           good[:10] + bytes((good[10] ^ 1,)) + good[11:],  # one bit of the blob
           good[:5] + bytes((good[5] ^ 0x80,)) + good[6:]]  # the check
    for mem in bad:
        assert rtcstore.unframe(mem) is None, _hex(mem[:16])
    assert rtcstore.unframe(None) is None


def test_rtc_store_with_fake_machine():
    m = FakeMachine()
    m.rtc.mem = os.urandom(2048)  # what RTC memory holds after power-on
    with _Modules(machine=m):
        s = rtcstore.RTCStore()  # default: machine.RTC()
        assert s.load() is None
        s.save(b"blob-1")
        assert s.load() == b"blob-1"
        assert m.rtc.mem[:2] == b"rT"
        s.clear()
        assert s.load() is None and m.rtc.mem == b""


def test_rtc_store_limits_and_failed_write():
    s = rtcstore.RTCStore(FakeRTC())
    s.save(b"\x01" * rtcstore.MAX_DATA)  # exactly 2048 bytes of RTC memory
    try:
        s.save(b"\x01" * (rtcstore.MAX_DATA + 1))
        raise AssertionError("oversized blob accepted")
    except UsageError:
        pass
    assert s.load() == b"\x01" * rtcstore.MAX_DATA  # the refused save changed nothing
    lost = rtcstore.RTCStore(FakeRTC(mem=rtcstore.frame(b"old"), drop_writes=True))
    try:
        lost.save(b"new")  # the client must learn that its reservation is not stored
        raise AssertionError("a write that did not land was not reported")
    except OSError:
        pass
    assert lost.load() == b"old"


# ---- unix RTC stand-in ----------------------------------------------------------------------

def _tmp_path(name):
    return "/tmp/dtls_lite_ports_%s_%s" % (name, _hex(os.urandom(6)))


def test_file_rtc_reset_causes():
    from unixboard import FileRTC
    path = _tmp_path("rtc")
    try:
        rtc = FileRTC(path)
        assert rtc.take_reset_cause() == "power-on"  # no file: first boot or power-off
        assert rtc.memory() == b""
        rtc.memory(b"frame")
        assert rtc.take_reset_cause() == "soft"  # the process ended without deepsleep()
        rtc.set_slept()
        assert rtc.memory() == b"frame"
        assert FileRTC(path).take_reset_cause() == node.DEEPSLEEP
        assert FileRTC(path).take_reset_cause() == "soft"  # the flag is used up
        assert FileRTC(path).memory() == b"frame"
        try:
            rtc.memory(b"x" * 2049)
            raise AssertionError("more than 2048 bytes of RTC memory accepted")
        except ValueError:
            pass
    finally:
        os.remove(path)


def test_unix_board_wifi_stand_in_and_sleep():
    from unixboard import UnixBoard

    class C(Cfg):
        RTC_FILE = _tmp_path("rtc")
        WIFI_DOWN_FILE = _tmp_path("wifi")
        LOCAL_IP = "127.0.0.9"

    try:
        b = UnixBoard(C, sleep=False, exit=False)
        assert b.reset_cause() == "power-on"
        assert b.network_up(C) == "127.0.0.9"
        open(C.WIFI_DOWN_FILE, "w").close()
        try:
            b.network_up(C)
            raise AssertionError("the WiFi stand-in did not fail")
        except OSError as e:
            assert "down" in str(e)
        b.rtc_store().save(b"blob")
        b.deepsleep(5)
        b2 = UnixBoard(C, sleep=False, exit=False)
        assert b2.reset_cause() == node.DEEPSLEEP
        assert b2.rtc_store().load() == b"blob"
    finally:
        for p in (C.RTC_FILE, C.WIFI_DOWN_FILE):
            try:
                os.remove(p)
            except OSError:
                pass


# ---- ESP32 hooks with fake machine and network modules ---------------------------------------

class _FakeTicks:
    """time.ticks_ms/ticks_diff/sleep_ms for CPython (MicroPython has the real ones)."""

    def __enter__(self):
        import time
        self.time = time
        self.added = []
        if not hasattr(time, "ticks_ms"):
            clock = [0]

            def sleep_ms(ms):
                clock[0] += ms

            for name, f in (("ticks_ms", lambda: clock[0]), ("ticks_diff", lambda a, b: a - b),
                            ("sleep_ms", sleep_ms)):
                setattr(time, name, f)
                self.added.append(name)
        return self

    def __exit__(self, *exc):
        for name in self.added:
            delattr(self.time, name)


def test_netaddr_local_ip():
    import netaddr
    assert netaddr.local_ip(FakeWLAN(ip="192.168.4.7")) == "192.168.4.7"
    assert netaddr.local_ip(FakeWLAN(ip="10.1.2.3", has_ipconfig=False)) == "10.1.2.3"
    assert netaddr.local_ip(FakeWLAN(ip="0.0.0.0")) is None  # not connected yet


def test_esp32_board_reset_causes_and_sleep():
    for code, name in ((1, "power-on"), (2, "hard"), (3, "watchdog"), (4, node.DEEPSLEEP),
                       (5, "soft"), (99, "reset-99")):
        m = FakeMachine(cause=code)
        with _Modules(machine=m, network=FakeNetwork(FakeWLAN())):
            from esp32board import Esp32Board
            b = Esp32Board()
            assert b.reset_cause() == name
            b.rtc_store().save(b"kept")
            assert rtcstore.unframe(m.rtc.mem) == b"kept"
            b.deepsleep(1234)
            assert m.slept == [1234]


def test_esp32_board_wifi_join_and_timeout():
    class C(Cfg):
        WIFI_SSID = "lab"
        WIFI_PASSWORD = "pw"
        WIFI_TIMEOUT_MS = 200

    wlan = FakeWLAN(connect_after=2, ip="192.168.4.9")
    with _FakeTicks(), _Modules(machine=FakeMachine(), network=FakeNetwork(wlan)):
        from esp32board import Esp32Board
        assert Esp32Board().network_up(C) == "192.168.4.9"
        assert wlan.connected_to == ("lab", "pw")
    never = FakeWLAN(connect_after=-1)
    with _FakeTicks(), _Modules(machine=FakeMachine(), network=FakeNetwork(never)):
        from esp32board import Esp32Board
        try:
            Esp32Board().network_up(C)
            raise AssertionError("WiFi join did not time out")
        except OSError as e:
            assert "not connected within 200 ms" in str(e)
        assert never.active_calls[-1] is False  # radio off again
        assert never.polls >= 2


# ---- node.wake -------------------------------------------------------------------------------

def test_wake_sends_reading_and_saves():
    _reset_fake()
    board = FakeBoard()
    r = node.wake(Cfg, board, FakeClient)
    assert r["ok"] and r["echoed"], r
    c = FakeClient.made[0]
    assert len(FakeClient.made) == 1 and c.suspended == 1
    assert c.args["host"] == "127.0.0.1" and c.args["port"] == 5684
    assert c.args["identity"] == b"Client_identity" and c.args["psk"] == b"secretPSK"
    port = c.args["bind"][1]
    assert 49152 <= port <= 65535  # no BIND_PORT, nothing saved: a random port
    assert c.args["local"] == ("10.0.0.5", port) and r["port"] == port
    assert c.args["connect"] is False
    sent = json.loads(c.sent[0])
    assert sent["node"] == "n1" and len(sent["id"]) == 6
    saved = board.rtc.load()
    assert saved[2:] == b"state-blob"  # the port rides in front of the client's blob
    assert (saved[0] << 8) | saved[1] == port


def test_next_wake_binds_the_saved_port():
    _reset_fake()
    board = FakeBoard()
    node.wake(Cfg, board, FakeClient)
    first = FakeClient.made[0].args["bind"][1]
    r = node.wake(Cfg, board, FakeClient)
    c = FakeClient.made[1]
    assert c.args["bind"][1] == first and r["port"] == first
    assert c.loaded == b"state-blob"  # the client sees its own blob, without the port
    assert r["action"] == "continue"


def test_bind_port_setting_used_when_nothing_saved():
    _reset_fake()

    class C(Cfg):
        BIND_PORT = 5685
        BIND_HOST = "127.0.0.2"

    node.wake(C, FakeBoard(), FakeClient)
    assert FakeClient.made[0].args["bind"] == ("127.0.0.2", 5685)


def test_power_on_does_not_trust_rtc_memory():
    for cause in ("power-on", "soft", "hard", "watchdog"):
        _reset_fake()
        rtc = MemoryStore(b"\xc3\x50" + b"blob from before")
        r = node.wake(Cfg, FakeBoard(cause=cause, rtc=rtc), FakeClient)
        c = FakeClient.made[0]
        assert c.loaded is None, cause  # cleared before the client looked
        assert r["reset"] == cause and r["ok"]
    _reset_fake()
    rtc = MemoryStore(b"\xc3\x50" + b"blob from before")
    node.wake(Cfg, FakeBoard(cause="deepsleep", rtc=rtc), FakeClient)
    assert FakeClient.made[0].loaded == b"blob from before"
    assert FakeClient.made[0].args["bind"][1] == 50000


def test_handshake_timeout_retries_from_a_new_port():
    _reset_fake(timeouts=1)
    board = FakeBoard(rtc=MemoryStore(b"\xc3\x50" + b"old"))
    r = node.wake(Cfg, board, FakeClient)
    assert r["ok"], r
    first, second = FakeClient.made
    assert first.args["bind"][1] == 50000 and second.args["bind"][1] != 50000
    assert first.suspended == 1  # its socket let go; it saved nothing (no handshake done)
    assert r["port"] == second.args["bind"][1] and "first_error" in r
    saved = board.rtc.load()
    assert (saved[0] << 8) | saved[1] == r["port"]  # later wakes continue from the new port


def test_timeout_from_a_random_port_is_not_retried():
    _reset_fake(timeouts=2)
    r = node.wake(Cfg, FakeBoard(), FakeClient)  # nothing saved, no BIND_PORT: random port
    assert not r["ok"] and r["stage"] == "connect"
    assert len(FakeClient.made) == 1  # a second try would only double the radio time


def test_server_down_is_survived():
    _reset_fake(timeouts=2)
    board = FakeBoard(rtc=MemoryStore(b"\xc3\x50" + b"old"))
    r = node.run(Cfg, board, FakeClient)
    assert not r["ok"] and r["stage"] == "connect" and r["error"] == "HandshakeTimeout"
    assert len(FakeClient.made) == 2
    assert board.rtc.load() == b"\xc3\x50" + b"old"  # what was safe stays
    assert board.slept == [7000]  # FAIL_SLEEP_MS


def test_wifi_failure_is_survived():
    _reset_fake()
    board = FakeBoard(net_error=OSError("WiFi 'lab': not connected within 15000 ms"))
    r = node.run(Cfg, board, FakeClient)
    assert not r["ok"] and r["stage"] == "network" and r["error"] == "OSError"
    assert FakeClient.made == []
    assert board.slept == [7000]
    assert any("network failed" in m for m in board.logs)


def test_no_reply_is_survived_and_state_saved():
    _reset_fake(reply=None)
    board = FakeBoard()
    r = node.run(Cfg, board, FakeClient)
    assert not r["ok"] and r["stage"] == "request" and r["reply"] is None
    assert FakeClient.made[0].suspended >= 1  # the reservation and session are kept
    assert board.rtc.load()[2:] == b"state-blob"
    assert board.slept == [7000]


def test_bad_config_still_sleeps():
    class Broken:
        SLEEP_MS = 4000  # no server, no identity, no PSK

    board = FakeBoard()
    r = node.run(Broken, board, FakeClient)
    assert not r["ok"] and r["stage"] == "config" and "SERVER_HOST" in r["message"]
    assert board.slept == [4000]

    class BadPsk(Cfg):
        PSK_HEX = "not hex"

    board = FakeBoard()
    r = node.run(BadPsk, board, FakeClient)
    assert not r["ok"] and r["stage"] == "config" and board.slept == [7000]


def test_keyboard_interrupt_reaches_the_developer():
    board = FakeBoard(net_error=KeyboardInterrupt())
    try:
        node.run(Cfg, board, FakeClient)
        raise AssertionError("Ctrl-C was swallowed")
    except KeyboardInterrupt:
        pass
    assert board.slept == []  # stays awake for the REPL


def test_force_resume_setting():
    _reset_fake()

    class C(Cfg):
        FORCE_RESUME = True

    node.wake(C, FakeBoard(), FakeClient)
    assert FakeClient.made[0].forced


def test_report_is_one_json_line():
    _reset_fake()
    r = node.wake(Cfg, FakeBoard(), FakeClient)
    line = json.dumps(r)
    assert "\n" not in line
    back = json.loads(line)
    assert back["sent"] == r["sent"] and back["ok"] is True
