# A dtls_lite store (load/save/clear, see dtls_lite/store.py) in ESP32 RTC memory:
# machine.RTC().memory(), at most 2048 bytes, kept through deep sleep, lost on power-off.
#
# RTC user memory is not initialised at power-on (it holds whatever the chip woke up with), so
# this store frames the blob: magic, length, and the first 4 bytes of SHA-256 over length and
# blob. Anything else reads as None, never as a blob: garbage must not even reach state.load()
# (its HMAC would refuse it, but with a "corrupt state" reason for what is only a power-on).
#
# It owns the whole RTC user memory. It never touches flash: writing it costs no wear, so the
# client may save after every reservation (DESIGN.md section 4).
import hashlib

from dtls_lite.compat import const
from dtls_lite.errors import UsageError

_MAGIC = b"rT"  # not the state blob's b"dL": a frame is not a blob
_HEADER = const(8)  # magic 2, length 2 (big-endian), check 4
RTC_MEMORY_SIZE = const(2048)  # MICROPY_HW_RTC_USER_MEM_MAX on the ESP32 port
MAX_DATA = RTC_MEMORY_SIZE - _HEADER
_EIO = const(5)


def _check(length2, data):
    h = hashlib.sha256(length2)
    h.update(data)
    return h.digest()[:4]


def frame(data):
    """The bytes written to RTC memory for data."""
    n = len(data)
    if n > MAX_DATA:
        raise UsageError("%d bytes do not fit in RTC memory (at most %d)" % (n, MAX_DATA))
    length2 = bytes((n >> 8, n & 0xFF))
    return _MAGIC + length2 + _check(length2, data) + data


def unframe(mem):
    """The data framed in mem, or None when mem holds no valid frame (power-on garbage,
    cleared, torn write)."""
    if mem is None or len(mem) < _HEADER or mem[:2] != _MAGIC:
        return None
    n = (mem[2] << 8) | mem[3]
    if _HEADER + n > len(mem):
        return None
    data = bytes(mem[_HEADER:_HEADER + n])
    if _check(bytes(mem[2:4]), data) != bytes(mem[4:_HEADER]):
        return None
    return data


class RTCStore:
    """Store in RTC memory. rtc: an object with memory([data]) (default machine.RTC())."""

    def __init__(self, rtc=None):
        if rtc is None:
            import machine
            rtc = machine.RTC()
        self._rtc = rtc

    def load(self):
        try:
            return unframe(self._rtc.memory())
        except (OSError, ValueError):
            return None

    def save(self, data):
        f = frame(bytes(data))
        self._rtc.memory(f)
        # Read back: save() must raise if the blob is not there (the client then sends nothing
        # numbered under a reservation it failed to store). 2 KB at most: cheap.
        if bytes(self._rtc.memory()[:len(f)]) != f:
            raise OSError(_EIO)

    def clear(self):
        self._rtc.memory(b"")
