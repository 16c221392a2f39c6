# DTLS 1.2 record layer: cipher suites, per-epoch read/write state, protect/unprotect,
# anti-replay window. Plain data a caller can persist; never does I/O, never raises on a bad
# record (unprotect returns None and the caller counts the drop).
import struct

from dtls_lite import crypto
from dtls_lite.compat import const

CT_CHANGE_CIPHER_SPEC = const(20)
CT_ALERT = const(21)
CT_HANDSHAKE = const(22)
CT_APPLICATION_DATA = const(23)

HEADER_LEN = const(13)  # type, version, epoch, sequence_number(48), length (RFC 6347 4.1)
_MAX_SEQ = const(0xFFFFFFFFFFFF)
_WINDOW = const(64)  # RFC 6347 4.1.2.6 minimum window size
_WINDOW_MASK = const(0xFFFFFFFFFFFFFFFF)
_DTLS12 = const(0xFEFD)

SUITE_PSK_AES_128_CCM_8 = const(0xC0A8)  # RFC 6655, mandatory in RFC 7925
SUITE_PSK_AES_128_CCM = const(0xC0A4)  # RFC 6655
SUITE_PSK_AES_128_GCM_SHA256 = const(0x00A8)  # RFC 5487
SUITE_PSK_AES_128_CBC_SHA256 = const(0x00AE)  # RFC 5487

# suite -> (name, tag/MAC length, fixed IV length, MAC key length); AES-128 keys throughout.
SUITES = {
    SUITE_PSK_AES_128_CCM_8: ("TLS_PSK_WITH_AES_128_CCM_8", 8, 4, 0),
    SUITE_PSK_AES_128_CCM: ("TLS_PSK_WITH_AES_128_CCM", 16, 4, 0),
    SUITE_PSK_AES_128_GCM_SHA256: ("TLS_PSK_WITH_AES_128_GCM_SHA256", 16, 4, 0),
    SUITE_PSK_AES_128_CBC_SHA256: ("TLS_PSK_WITH_AES_128_CBC_SHA256", 32, 0, 32),
}


def supported_suites():
    """The suites the running crypto backend can do, most preferred first."""
    out = [SUITE_PSK_AES_128_CCM_8, SUITE_PSK_AES_128_CCM]
    if crypto.HAS_GCM:
        out.append(SUITE_PSK_AES_128_GCM_SHA256)
    out.append(SUITE_PSK_AES_128_CBC_SHA256)
    return out


def suite_name(suite):
    return SUITES[suite][0] if suite in SUITES else "0x%04X" % suite


def key_block_len(suite):
    info = SUITES[suite]
    return 2 * (info[3] + 16 + info[2])


def epoch_states(epoch, suite, etm, key_block, rng, client=True):
    """(WriteState, ReadState) of one epoch from its key_block (RFC 5246 6.3 order: client
    MAC key, server MAC key, client key, server key, client IV, server IV)."""
    info = SUITES[suite]
    m, iv = info[3], info[2]
    p = 2 * m
    c = RecordCipher(suite, key_block[p:p + 16], key_block[p + 32:p + 32 + iv], key_block[:m], etm, rng)
    s = RecordCipher(suite, key_block[p + 16:p + 32], key_block[p + 32 + iv:p + 32 + 2 * iv],
                     key_block[m:p], etm, rng)
    if client:
        return WriteState(epoch, c), ReadState(epoch, s)
    return WriteState(epoch, s), ReadState(epoch, c)


class RecordCipher:
    """One direction of one epoch's protection (RFC 5246 6.2.3, RFC 6655, RFC 7366)."""

    def __init__(self, suite, enc_key, fixed_iv, mac_key, etm, rng):
        self.suite = suite
        self.enc_key = enc_key
        self.fixed_iv = fixed_iv
        self.mac_key = mac_key
        self.etm = etm
        self._rng = rng
        info = SUITES[suite]
        self._tag_len = info[1]
        if suite == SUITE_PSK_AES_128_CBC_SHA256:
            self._aead = None
        elif suite == SUITE_PSK_AES_128_GCM_SHA256:
            self._aead = crypto.AesGcm(enc_key)
        else:
            self._aead = crypto.AesCcm(enc_key, info[1])

    def overhead(self):
        """Largest number of bytes protection adds to a plaintext."""
        if self._aead is not None:
            return 8 + self._tag_len
        return 16 + 16 + self._tag_len  # explicit IV, up to a block of padding, MAC

    # seal() and open() work on whole records and stay small: MicroPython puts larger frames
    # on the heap (see dtls_lite/crypto.py), and this is the per-record path.

    def seal(self, ctype, seq_num, plaintext):
        """seq_num: the 8-byte epoch||sequence_number. Returns the whole record."""
        if self._aead is None:
            return self._seal_cbc(ctype, seq_num, plaintext)
        # nonce = fixed IV || explicit nonce; we use epoch||seq as the explicit part, which
        # is unique per key as long as (epoch, seq) never repeats (RFC 6655 3, RFC 5288 3).
        ad = _aad(seq_num, ctype, len(plaintext))
        body = self._aead.seal(self.fixed_iv + seq_num, ad, plaintext)
        return _header(ctype, seq_num, len(body) + 8) + seq_num + body

    def open(self, rec):
        """Plaintext of the whole record rec, or None when it does not authenticate."""
        if self._aead is None:
            return self._open_cbc(rec)
        n = len(rec) - HEADER_LEN - 8 - self._tag_len
        if n < 0:
            return None
        ad = _aad(rec[3:11], rec[0], n)
        return self._aead.open(self.fixed_iv + rec[HEADER_LEN:HEADER_LEN + 8], ad, rec[HEADER_LEN + 8:])

    def _seal_cbc(self, ctype, seq_num, plaintext):
        iv = self._rng(16)
        pad = 15 - (len(plaintext) + (0 if self.etm else 32)) % 16
        if self.etm:  # RFC 7366 3: MAC over the IV and ciphertext
            body = iv + crypto.aes_cbc_encrypt(self.enc_key, iv, plaintext + bytes([pad]) * (pad + 1))
            body += crypto.hmac_sha256(self.mac_key, _aad(seq_num, ctype, len(body)) + body)
        else:
            mac = crypto.hmac_sha256(self.mac_key, _aad(seq_num, ctype, len(plaintext)) + plaintext)
            body = iv + crypto.aes_cbc_encrypt(self.enc_key, iv, plaintext + mac + bytes([pad]) * (pad + 1))
        return _header(ctype, seq_num, len(body)) + body

    def _open_cbc(self, rec):
        seq_num = rec[3:11]
        fragment = rec[HEADER_LEN:]
        if self.etm:
            n = len(fragment) - 32
            if n < 32 or n % 16:
                return None
            mac = crypto.hmac_sha256(self.mac_key, _aad(seq_num, rec[0], n) + fragment[:n])
            if not crypto.ct_equal(mac, fragment[n:]):
                return None
            plain = crypto.aes_cbc_decrypt(self.enc_key, fragment[:16], fragment[16:n])
            pad = plain[-1]
            if pad + 1 > len(plain) or plain[-pad - 1:] != bytes([pad]) * (pad + 1):
                return None
            return plain[:-pad - 1]
        if len(fragment) < 64 or len(fragment) % 16:
            return None
        plain = crypto.aes_cbc_decrypt(self.enc_key, fragment[:16], fragment[16:])
        pad = plain[-1]
        # Check padding and MAC both before deciding, so the two failures look alike
        # (RFC 5246 6.2.3.2); DTLS drops bad records silently, which blunts timing further.
        good = pad + 33 <= len(plain) and plain[-pad - 1:] == bytes([pad]) * (pad + 1)
        n = len(plain) - pad - 33 if good else len(plain) - 32
        mac = crypto.hmac_sha256(self.mac_key, _aad(seq_num, rec[0], n) + plain[:n])
        if crypto.ct_equal(mac, plain[n:n + 32]) and good:
            return plain[:n]
        return None


def _seq_num(epoch, seq):
    return struct.pack(">HHI", epoch, seq >> 32, seq & 0xFFFFFFFF)


def _header(ctype, seq_num, length):
    """The record header (RFC 6347 4.1): type, version, epoch||sequence_number, length."""
    return struct.pack(">BH8sH", ctype, _DTLS12, seq_num, length)


def _aad(seq_num, ctype, length):
    """AEAD additional data and CBC MAC header alike (RFC 5246 6.2.3): seq_num, type, version, length."""
    return struct.pack(">8sBHH", seq_num, ctype, _DTLS12, length)


class WriteState:
    """Outgoing epoch: cipher (None in epoch 0) and the next sequence number to use."""

    def __init__(self, epoch, cipher=None, seq=0):
        self.epoch = epoch
        self.cipher = cipher
        self.seq = seq

    def protect(self, ctype, payload):
        """One whole record. Never reuses or wraps a sequence number (RFC 6347 4.1)."""
        seq = self.seq
        if seq >= _MAX_SEQ:
            raise OverflowError("sequence numbers of epoch %d exhausted" % self.epoch)
        self.seq = seq + 1
        seq = _seq_num(self.epoch, seq)
        if self.cipher is not None:
            return self.cipher.seal(ctype, seq, payload)
        return _header(ctype, seq, len(payload)) + payload

    def overhead(self):
        return HEADER_LEN + (self.cipher.overhead() if self.cipher is not None else 0)


class ReadState:
    """Incoming epoch: cipher and the 64-record replay window (RFC 6347 4.1.2.6)."""

    def __init__(self, epoch, cipher=None):
        self.epoch = epoch
        self.cipher = cipher
        self.max_seq = -1  # highest authenticated sequence number
        self.window = 0  # bit i set: max_seq - i was received

    def is_replay(self, seq):
        if seq > self.max_seq:
            return False
        diff = self.max_seq - seq
        return diff >= _WINDOW or (self.window >> diff) & 1 == 1

    def mark(self, seq):
        """Record seq as received; call only after the record authenticated."""
        if seq > self.max_seq:
            shift = seq - self.max_seq
            self.window = ((self.window << shift) | 1) & _WINDOW_MASK if shift < _WINDOW else 1
            self.max_seq = seq
        else:
            self.window |= 1 << (self.max_seq - seq)

    def open(self, rec):
        """Plaintext of the whole record rec (header included; the caller checked its epoch)
        if it is authentic and fresh, else None (the caller counts the drop)."""
        if self.cipher is None:
            return rec[HEADER_LEN:]  # epoch 0: nothing to check; handshake layer drops duplicates
        seq = int.from_bytes(rec[5:11], "big")
        if self.is_replay(seq):
            return None
        plain = self.cipher.open(rec)
        if plain is not None:
            self.mark(seq)
        return plain



def record_end(data, off):
    """Offset just past the record that starts at off, or -1 if data does not hold all of it."""
    end = off + HEADER_LEN
    if end > len(data):
        return -1
    end += (data[end - 2] << 8) | data[end - 1]
    return end if end <= len(data) else -1


def record_epoch(rec):
    return (rec[3] << 8) | rec[4]
