# On the emulated ESP32: the node's network over PPP on UART1, to the host's
# tools/esp32emu/pppgw.py, in place of WiFi (QEMU has no radio). The tier's main.py puts
# network_up() into ports/esp32/esp32board.Esp32Board; everything else is the real port.
import time

import machine
import network

_ppp = None


def network_up(board, cfg):
    """Bring PPP up (bounded by WIFI_TIMEOUT_MS); the board's IPv4 address text."""
    global _ppp
    if _ppp is None:
        _ppp = network.PPP(machine.UART(1, baudrate=115200, tx=17, rx=16))
    _ppp.active(True)
    _ppp.connect()
    timeout = getattr(cfg, "WIFI_TIMEOUT_MS", 15000)
    t0 = time.ticks_ms()
    while not _ppp.isconnected():
        if time.ticks_diff(time.ticks_ms(), t0) > timeout:
            raise OSError("PPP: not connected within %d ms" % timeout)
        time.sleep_ms(50)
    return _ppp.ifconfig()[0]
