# Local address of an ESP32 on WiFi. MicroPython sockets have no getsockname(), so the wake
# policy learns "same local address" from the WLAN interface (DESIGN.md section 4).
# Never joins or leaves a network itself: esp32board.py does that.

_NO_ADDRESS = ("", "0.0.0.0")


def local_ip(wlan=None):
    """IPv4 address text of the station interface, or None when it has none yet."""
    if wlan is None:
        import network
        wlan = network.WLAN(network.STA_IF)
    ip = None
    try:
        ip = wlan.ipconfig("addr4")[0]  # MicroPython 1.24+: ("192.168.1.23", "255.255.255.0")
    except (AttributeError, TypeError, ValueError, OSError):
        try:
            ip = wlan.ifconfig()[0]  # older firmware; deprecated since 1.24
        except (AttributeError, OSError):
            return None
    if ip in _NO_ADDRESS:
        return None
    return ip
