# dtls-lite: a small PSK-only DTLS 1.2 client for MicroPython and CPython.
__version__ = "0.2.0"
