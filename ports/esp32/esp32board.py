# ESP32 hooks for ports/node.py: reset cause, RTC-memory store, WiFi with a timeout, local
# address, deep sleep. Needs the ESP32 port's machine and network modules.
import time

import machine
import network

from netaddr import local_ip
from node import DEEPSLEEP, Board, setting
from rtcstore import RTCStore


def _cause_names():
    names = {}
    for attr, name in (("PWRON_RESET", "power-on"), ("HARD_RESET", "hard"),
                       ("WDT_RESET", "watchdog"), ("DEEPSLEEP_RESET", DEEPSLEEP),
                       ("SOFT_RESET", "soft"), ("BROWNOUT_RESET", "brownout")):
        v = getattr(machine, attr, None)
        if v is not None:
            names[v] = name
    return names


class Esp32Board(Board):
    name = "esp32"

    def __init__(self):
        self._wlan = None

    def reset_cause(self):
        c = machine.reset_cause()
        return _cause_names().get(c, "reset-%d" % c)

    def rtc_store(self):
        return RTCStore(machine.RTC())

    def network_up(self, cfg):
        sta = getattr(network, "STA_IF", None)
        if sta is None:
            sta = network.WLAN.IF_STA
        wlan = self._wlan = network.WLAN(sta)
        wlan.active(True)
        if not wlan.isconnected():
            wlan.connect(setting(cfg, "WIFI_SSID"), setting(cfg, "WIFI_PASSWORD"))
            timeout = setting(cfg, "WIFI_TIMEOUT_MS")
            t0 = time.ticks_ms()
            while not wlan.isconnected():
                if time.ticks_diff(time.ticks_ms(), t0) > timeout:
                    status = wlan.status()
                    wlan.active(False)  # stop scanning: it costs battery until deep sleep
                    raise OSError("WiFi %r: not connected within %d ms (status %s)"
                                  % (setting(cfg, "WIFI_SSID"), timeout, status))
                time.sleep_ms(50)
        ip = local_ip(wlan)
        if ip is None:
            raise OSError("WiFi connected but no IPv4 address")
        return ip

    def read_sensor(self):
        try:
            import esp32
        except ImportError:
            return None
        f = getattr(esp32, "mcu_temperature", None)  # S2, S3, C3, C6: degrees Celsius
        if f is not None:
            return f()
        f = getattr(esp32, "raw_temperature", None)  # original ESP32: raw Fahrenheit
        return f() if f is not None else None

    def deepsleep(self, ms):
        if self._wlan is not None:
            try:
                self._wlan.active(False)
            except OSError:
                pass
        machine.deepsleep(ms)
