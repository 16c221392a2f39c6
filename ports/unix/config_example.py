# Sensor-node settings for the MicroPython unix port (same names as ports/esp32/config_example.py;
# no WiFi). Loopback only: 127.0.0.0/8 is all loopback on Linux, so binding 127.0.0.2 and later
# 127.0.0.3 is a real "local address changed" case.
SERVER_HOST = "127.0.0.1"
SERVER_PORT = 5684
IDENTITY = "Client_identity"
PSK_HEX = "73656372657450534b"

SLEEP_MS = 5000
BIND_HOST = "127.0.0.2"
BIND_PORT = 5685
# NODE_NAME = "node"
# RTC_FILE = "rtc.bin"             # RTC memory stand-in; delete it to emulate a power-off
# WIFI_DOWN_FILE = "wifi.down"     # WiFi stand-in: down while this file exists
# LOCAL_IP = None                  # what a WLAN interface would report (None: BIND_HOST)
# other optional names: see ports/esp32/config_example.py
