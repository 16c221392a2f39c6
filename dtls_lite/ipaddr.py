# IPv4 and IPv6 addresses as text to and from bytes, for saved state (dtls_lite/state.py):
# a pure parser, since ESP32 MicroPython has no inet_pton. Imported only when an address comes
# as text (CPython and ESP32 sockets) or a message shows one; never does I/O.
import struct

from dtls_lite.errors import UsageError


def parse(text):
    """4 or 16 bytes of an IPv4 or IPv6 address in text; UsageError for anything else."""
    out = None
    if isinstance(text, str):
        out = _ipv6(text) if ":" in text else _ipv4(text)
    if out is None:
        raise UsageError("not an IPv4 or IPv6 address: %r" % (text,))
    return out


def show(addr):
    """(ip bytes, port) or None as text, for messages."""
    if addr is None:
        return "none"
    ip = addr[0]
    if len(ip) == 4:
        text = "%d.%d.%d.%d" % tuple(ip)
    else:
        text = "[" + ":".join("%x" % ((ip[i] << 8) | ip[i + 1]) for i in range(0, 16, 2)) + "]"
    return "%s:%d" % (text, addr[1])


def _digits(s, chars):
    for ch in s:
        if ch not in chars:
            return False
    return True


def _ipv4(text):
    parts = text.split(".")
    if len(parts) != 4:
        return None
    out = bytearray(4)
    for i in range(4):
        s = parts[i]
        # int() would accept " 1", "+1" and "1_0": check the characters first
        if not 1 <= len(s) <= 3 or not _digits(s, "0123456789") or (s[0] == "0" and len(s) > 1):
            return None
        v = int(s)
        if v > 255:
            return None
        out[i] = v
    return bytes(out)


def _ipv6(text):
    halves = text.split("::")
    if len(halves) > 2:
        return None
    groups = []
    for i in range(len(halves)):
        h = halves[i]
        words = []
        parts = h.split(":") if h else []
        for j in range(len(parts)):
            s = parts[j]
            if "." in s and i == len(halves) - 1 and j == len(parts) - 1:
                v4 = _ipv4(s)  # RFC 4291 2.2 form 3: the low 32 bits in dotted decimal
                if v4 is None:
                    return None
                words.append((v4[0] << 8) | v4[1])
                words.append((v4[2] << 8) | v4[3])
            elif 1 <= len(s) <= 4 and _digits(s, "0123456789abcdefABCDEF"):
                words.append(int(s, 16))
            else:
                return None
        groups.append(words)
    n = len(groups[0]) + (len(groups[1]) if len(halves) == 2 else 0)
    if len(halves) == 2:
        if n > 7:  # "::" stands for one or more zero groups
            return None
        words = groups[0] + [0] * (8 - n) + groups[1]
    elif n == 8:
        words = groups[0]
    else:
        return None
    return struct.pack(">8H", *words)
