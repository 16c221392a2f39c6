# Loopback UDP and clock helpers of the portable tests' threaded servers (test_adaptive's
# UdpServer, coapfake.Server), on all runtimes: a module of its own, small, so that importing
# them loads no test module (heap on the emulated ESP32).
import os
import socket
import time


def ms():
    try:
        return time.ticks_ms()
    except AttributeError:
        return int(time.monotonic() * 1000)


def sleep_ms(n):
    try:
        time.sleep_ms(n)
    except AttributeError:
        time.sleep(n / 1000)


def bound():
    """A UDP socket bound to a free loopback port, and the port (MicroPython has no
    getsockname(): try random ones)."""
    for _ in range(50):
        b = os.urandom(2)
        port = 20000 + ((b[0] << 8) | b[1]) % 30000
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            return s, port
        except OSError:
            s.close()
    raise AssertionError("no free port")
