# The emulated-ESP32 tier's main.py: ports/esp32/main.py (shipped as portmain.mpy), with the
# network joined over PPP (pppnet) instead of WiFi, which QEMU does not emulate. Reset cause,
# RTC-memory store, session file, wake policy and machine.deepsleep() are the real port's.
import esp32board
import pppnet

esp32board.Esp32Board.network_up = pppnet.network_up

import portmain  # noqa: E402

portmain.start()
