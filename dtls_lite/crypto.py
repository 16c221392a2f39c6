# Crypto shim of dtls-lite: SHA-256, HMAC-SHA256, the TLS 1.2 PRF, raw AES-ECB/CBC, AES-CCM
# (RFC 3610, NIST SP 800-38C) built on the block cipher, and AES-GCM where the backend has it.
# AES comes from pycryptodome on CPython and from cryptolib on MicroPython, SHA-256 from hashlib
# on both; the backend is picked once at import and nothing else runs then.
# It never does I/O, never logs, and keeps no state besides per-key cipher objects (and, for
# CCM, the chaining value of its CBC object).
# Bad arguments raise ValueError naming the parameter; a record that fails authentication makes
# open() return None (the caller drops it): no exception on that path, never plaintext.
import hashlib
import os

from dtls_lite.compat import MICROPYTHON, const

if MICROPYTHON:
    import cryptolib as _cryptolib

    BACKEND = "cryptolib"
    HAS_GCM = False

    def _ecb(key):
        return _cryptolib.aes(key, 1)  # 1 = ECB (no MODE_* constants on ESP32)

    def _cbc(key, iv):
        return _cryptolib.aes(key, 2, iv)  # 2 = CBC; one direction per object

    def ct_equal(a, b):
        # Constant time for equal lengths: one big-int XOR, no early exit.
        if len(a) != len(b):
            return False
        return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")) == 0

else:
    from hmac import compare_digest as _compare_digest

    from Crypto.Cipher import AES as _AES

    BACKEND = "pycryptodome"
    HAS_GCM = True

    def _ecb(key):
        return _AES.new(key, _AES.MODE_ECB)

    def _cbc(key, iv):
        return _AES.new(key, _AES.MODE_CBC, iv=iv)

    def ct_equal(a, b):
        return _compare_digest(a, b)


_BLOCK = const(16)
_HMAC_BLOCK = const(64)
_MAX_TEXT = const(0xFFFF0)  # CCM payload limit here (block counter < 2**16); DTLS needs 2**14
_TAG_LENS = (4, 6, 8, 10, 12, 14, 16)


def random_bytes(n):
    return os.urandom(n)


def sha256(data):
    return hashlib.sha256(data).digest()


def _check_key(key):
    if len(key) != 16 and len(key) != 32:
        raise ValueError("key must be 16 or 32 bytes")


def _check_blocks(data):
    if len(data) % _BLOCK:
        raise ValueError("data must be a multiple of 16 bytes")


def aes_ecb_encrypt(key, data):
    _check_key(key)
    _check_blocks(data)
    if not data:
        return b""
    return _ecb(key).encrypt(data)


def _cbc_checked(key, iv, data):
    _check_key(key)
    if len(iv) != _BLOCK:
        raise ValueError("iv must be 16 bytes")
    _check_blocks(data)
    return _cbc(key, iv) if data else None


def aes_cbc_encrypt(key, iv, data):
    c = _cbc_checked(key, iv, data)
    return c.encrypt(data) if c is not None else b""


def aes_cbc_decrypt(key, iv, data):
    c = _cbc_checked(key, iv, data)
    return c.decrypt(data) if c is not None else b""


# --- HMAC-SHA256 (RFC 2104) and the TLS 1.2 PRF (RFC 5246 section 5) ---

def _hmac_pads(key):
    # Returns (K ^ ipad, K ^ opad), each 64 bytes; long keys are hashed first (RFC 2104 section 2).
    if len(key) > _HMAC_BLOCK:
        key = hashlib.sha256(key).digest()
    k = int.from_bytes(key, "big") << (8 * (_HMAC_BLOCK - len(key)))
    ipad = k ^ int.from_bytes(b"\x36" * _HMAC_BLOCK, "big")
    # 0x36 ^ 0x5c == 0x6a: derive the outer pad from the inner one
    opad = ipad ^ int.from_bytes(b"\x6a" * _HMAC_BLOCK, "big")
    return ipad.to_bytes(_HMAC_BLOCK, "big"), opad.to_bytes(_HMAC_BLOCK, "big")


def _hmac(pads, data, data2=None):
    h = hashlib.sha256(pads[0])
    h.update(data)
    if data2 is not None:
        h.update(data2)
    h2 = hashlib.sha256(pads[1])
    h2.update(h.digest())
    return h2.digest()


def hmac_sha256(key, data):
    return _hmac(_hmac_pads(key), data)


def prf(secret, label, seed, length):
    # P_SHA256(secret, label + seed) = HMAC(A(1) + label + seed) || HMAC(A(2) + ...) ...
    # with A(0) = label + seed, A(i) = HMAC(secret, A(i-1)); cut to length bytes.
    if length < 0:
        raise ValueError("length must be >= 0")
    return _p_sha256(_hmac_pads(secret), bytes(label) + bytes(seed), length)


def _p_sha256(pads, ls, length):
    out = bytearray((length + 31) & ~31)
    a = ls
    pos = 0
    while pos < length:
        a = _hmac(pads, a)
        out[pos:pos + 32] = _hmac(pads, a, ls)
        pos += 32
    return bytes(out[:length])


# --- AES-CCM from the block cipher (RFC 3610 section 2, NIST SP 800-38C) ---
# MicroPython puts a function's frame on the heap, and frees it on return, when locals plus
# stack exceed 11 slots; each such free pins the allocator's first-free pointer, so every later
# allocation scans all garbage made since the last collection. The hot path below is therefore
# cut into small functions (checked with `tools/footprint.py --frames`).

def _xor(x, y, off, n):
    # x[:n] XOR y[off:off + n] as bytes: one big-int XOR instead of a per-byte loop.
    if len(x) != n:
        x = memoryview(x)[:n]
    y = memoryview(y)[off:off + n]
    return (int.from_bytes(x, "big") ^ int.from_bytes(y, "big")).to_bytes(n, "big")


def _counters(a, end):
    # A0 .. An (end = 16 * (n + 1)): A_i is A0 with i in its last two octets (section 2.3).
    c = bytearray(end)
    for o in range(0, end, _BLOCK):
        c[o:o + 16] = a
    for o in range(31, end if end < 4096 else 4096, _BLOCK):  # i < 256: one octet
        c[o] = o >> 4
    for o in range(4111, end, _BLOCK):
        c[o] = (o >> 4) & 0xFF
        c[o - 1] = o >> 12
    return c


class PortableAesCcm:
    """AES-128-CCM with a tag of `tag_len` bytes, built on one ECB and one CBC object per key.

    Keeps per-message state between its steps: one object must not be shared between threads.
    """

    def __init__(self, key, tag_len=8):
        if len(key) != 16:
            raise ValueError("key must be 16 bytes")
        if tag_len not in _TAG_LENS:
            raise ValueError("tag_len must be one of 4, 6, 8, 10, 12, 14, 16")
        self._m = tag_len
        self._f = (tag_len - 2) << 2  # M' = (M - 2) / 2 in bits 3..5 of B0's flags
        self._ecb = _ecb(key)
        # One CBC object serves every CBC-MAC: it keeps chaining from the last block it output,
        # so each message's B0 is XORed with that block (self._chain) to get CCM's zero IV.
        self._cbc = _cbc(key, bytes(_BLOCK))
        self._chain = 0
        self._a = None  # A0 = flags || nonce || 0 of the message in progress
        self._s = None  # E(A0) .. E(An) of the message in progress

    def _start(self, nonce, n):
        # Sets up the counter blocks for an n-byte payload; False if n cannot be sealed.
        q = 15 - len(nonce)  # L, the size of the length field
        if q < 2 or q > 8:
            raise ValueError("nonce must be 7..13 bytes")
        if n < 0 or n > _MAX_TEXT or n >> (q << 3):
            return False
        a = self._a = bytearray(_BLOCK)
        a[0] = q - 1  # RFC 3610 section 2.3: flags of A_i = L - 1
        a[1:16 - q] = nonce
        a = self._s = _counters(a, (n + 31) & ~15)
        self._ecb.encrypt(a, a)  # E(A0) .. E(An): one ECB call
        return True

    def _mac_input(self, aad, n):
        # B0 || l(a) || a || pad, then room for the padded payload (section 2.2).
        la = len(aad)
        if la >> 32:
            raise ValueError("aad must be shorter than 2**32 bytes")
        h = 18 if la < 0xFF00 else 22  # where a starts: after B0 and 2 or 6 octets of l(a)
        b = bytearray(((la + h + 15) & ~15 if la else 16) + ((n + 15) & ~15))
        b[0:16] = self._a
        b[0] |= (0x40 if la else 0) | self._f  # Adata bit; L' = L - 1 is there from A0
        b[15] = n & 0xFF
        b[14] = (n >> 8) & 0xFF
        if n > 0xFFFF:  # only reachable with L >= 3, so octet 13 is part of the length field
            b[13] = n >> 16
        if h == 22:
            b[16:22] = (0xFFFE00000000 | la).to_bytes(6, "big")
        elif la:
            b[16] = la >> 8
            b[17] = la & 0xFF
        b[h:h + la] = aad
        return b

    def _tag(self, aad, text):
        # CBC-MAC over B0 || aad || text, masked with E(A0): the tag as sent (section 2.4).
        n = len(text)
        b = self._mac_input(aad, n)
        n = len(b) - ((n + 15) & ~15)  # where the payload goes
        b[n:n + len(text)] = text
        if self._chain:  # cancel the CBC object's chaining value: the MAC's IV must be 0
            n = int.from_bytes(memoryview(b)[:16], "big") ^ self._chain
            b[0:16] = n.to_bytes(16, "big")
        self._cbc.encrypt(b, b)
        b = memoryview(b)[len(b) - 16:]
        self._chain = int.from_bytes(b, "big")
        b = _xor(b, self._s, 0, self._m)
        self._s = self._a = None  # drop the per-message buffers
        return b

    def seal(self, nonce, aad, plaintext):
        if not self._start(nonce, len(plaintext)):
            raise ValueError("plaintext too long for this nonce length")
        return _xor(plaintext, self._s, 16, len(plaintext)) + self._tag(aad, plaintext)

    def open(self, nonce, aad, data):
        n = len(data) - self._m
        if not self._start(nonce, n):
            return None
        data = memoryview(data)
        pt = _xor(data, self._s, 16, n)
        if ct_equal(self._tag(aad, pt), data[n:]):
            return pt
        return None


# pycryptodome's own CCM is written in Python over per-message cipher objects and measures
# ~4x slower than PortableAesCcm on CPython (tools/bench.py), so one implementation serves both.
AesCcm = PortableAesCcm


class AesGcm:
    """AES-GCM (16-byte tag, 12-byte nonce) on pycryptodome; same seal/open interface as AesCcm."""

    def __init__(self, key):
        if not HAS_GCM:
            raise ValueError("AES-GCM needs the pycryptodome backend (HAS_GCM is False)")
        _check_key(key)
        self._key = bytes(key)

    def _new(self, nonce, aad):
        if len(nonce) != 12:
            raise ValueError("nonce must be 12 bytes")
        c = _AES.new(self._key, _AES.MODE_GCM, nonce=bytes(nonce), mac_len=16)
        c.update(aad)
        return c

    def seal(self, nonce, aad, plaintext):
        ct, tag = self._new(nonce, aad).encrypt_and_digest(plaintext)
        return ct + tag

    def open(self, nonce, aad, data):
        c = self._new(nonce, aad)
        if len(data) < 16:
            return None
        data = memoryview(data)
        try:
            return c.decrypt_and_verify(data[:len(data) - 16], data[len(data) - 16:])
        except ValueError:  # MAC check failed
            return None
