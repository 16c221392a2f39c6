"""Hardware-in-the-loop setup: a real ESP32 on a serial port, WiFi and server from the environment.

    .venv/bin/python -m pytest tests/hil --port /dev/ttyUSB0 -v

Settings (environment variables; see /work/notes/G2.md or ports/README.md for the recipe):
    DTLS_LITE_HIL_PORT            instead of --port
    DTLS_LITE_HIL_WIFI_SSID       required
    DTLS_LITE_HIL_WIFI_PASSWORD   required
    DTLS_LITE_HIL_LISTEN          this machine's IP on the board's network: the tests start the
                                  pion echo server there and check what it received
    DTLS_LITE_HIL_SERVER          HOST:PORT of another DTLS PSK echo server (instead of LISTEN;
                                  then only the board's side is checked)
    DTLS_LITE_HIL_IDENTITY, DTLS_LITE_HIL_PSK   for DTLS_LITE_HIL_SERVER (default: the test pair)
    DTLS_LITE_HIL_SLEEP_MS        deep sleep between wakes (default 4000)
Without a port, WiFi settings or a server every test here is SKIPPED with the reason; nothing
here runs in CI (no board there: tests/test_emulated_board.py is the CI stand-in).
"""
import os
import sys
import time

import pytest

HIL = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HIL)
ROOT = os.path.dirname(TESTS)
for _p in (TESTS, os.path.join(ROOT, "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import peers  # noqa: E402

BAUD = 115200


def pytest_addoption(parser):
    try:
        parser.addoption("--port", default=None,
                         help="serial port of a real ESP32 for tests/hil (e.g. /dev/ttyUSB0)")
    except ValueError:
        pass  # already added (another conftest)


class Settings:
    def __init__(self, port, env):
        self.port = port
        self.ssid = env.get("DTLS_LITE_HIL_WIFI_SSID")
        self.password = env.get("DTLS_LITE_HIL_WIFI_PASSWORD")
        self.listen = env.get("DTLS_LITE_HIL_LISTEN")
        self.server = env.get("DTLS_LITE_HIL_SERVER")
        self.identity = env.get("DTLS_LITE_HIL_IDENTITY", peers.IDENTITY)
        self.psk_hex = env.get("DTLS_LITE_HIL_PSK", peers.PSK_HEX)
        self.sleep_ms = int(env.get("DTLS_LITE_HIL_SLEEP_MS", "4000"))

    def missing(self):
        if not self.port:
            return "no ESP32: pass --port /dev/ttyUSB0 (or set DTLS_LITE_HIL_PORT)"
        if not self.ssid or self.password is None:
            return "set DTLS_LITE_HIL_WIFI_SSID and DTLS_LITE_HIL_WIFI_PASSWORD"
        if not self.listen and not self.server:
            return ("set DTLS_LITE_HIL_LISTEN (this machine's IP on the board's WiFi) or "
                    "DTLS_LITE_HIL_SERVER (HOST:PORT of a DTLS PSK echo server)")
        return None


@pytest.fixture(scope="session")
def hil(request):
    try:
        port = request.config.getoption("--port", default=None)
    except ValueError:
        port = None
    s = Settings(port or os.environ.get("DTLS_LITE_HIL_PORT"), os.environ)
    why = s.missing()
    if why:
        pytest.skip("hardware-in-the-loop test skipped: " + why)
    return s


@pytest.fixture
def server(hil):
    """(host, port, peers.Server or None): the pion server on DTLS_LITE_HIL_LISTEN, or the
    external DTLS_LITE_HIL_SERVER (None: its log cannot be read)."""
    if hil.listen:
        try:
            with peers.pion_server(host=hil.listen, psk_hex=hil.psk_hex,
                                   identity=hil.identity) as srv:
                yield srv.host, srv.port, srv
        except peers.PeerUnavailable as e:
            pytest.fail(str(e), pytrace=False)
    else:
        host, port = hil.server.rsplit(":", 1)
        yield host.strip("[]"), int(port), None


class Console:
    """The board's serial console (pyserial), for watching the node between deep sleeps."""

    def __init__(self, port):
        import serial
        self.ser = serial.Serial()
        self.ser.port = port
        self.ser.baudrate = BAUD
        self.ser.timeout = 0.2
        self.ser.dtr = False  # IO0 released: a reset boots the firmware, not the ROM loader
        self.ser.rts = False
        self.ser.open()
        self.text = ""

    def hard_reset(self):
        """Pulse EN through RTS (esptool's classic reset): the board reboots, main.py runs."""
        self.ser.dtr = False
        self.ser.rts = True
        time.sleep(0.1)
        self.ser.rts = False

    def read_for(self, seconds, until=None):
        """Collect output for up to `seconds`; stop early once until(text) is true."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            data = self.ser.read(4096)
            if data:
                self.text += data.decode("utf-8", "replace").replace("\r", "")
            if until is not None and until(self.text):
                return True
        return until(self.text) if until is not None else True

    def write(self, data):
        self.ser.write(data)

    def close(self):
        self.ser.close()


@pytest.fixture
def console_factory(hil):
    opened = []

    def make():
        c = Console(hil.port)
        opened.append(c)
        return c

    yield make
    for c in opened:
        try:
            c.close()
        except Exception:
            pass
