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
CT_TLS12_CID = const(25)  # RFC 9146 4: a record carrying a CID; the real type is inside

HEADER_LEN = const(13)  # type, version, epoch, sequence_number(48), length (RFC 6347 4.1)
_WINDOW = const(64)  # RFC 6347 4.1.2.6 minimum window size
# Sequence numbers (48-bit) are kept as two 24-bit halves: an int of 2**30 or more is a heap
# object on 32-bit MicroPython, and the per-record path must not allocate one.
_LO_BITS = const(24)
_LO_MASK = const(0xFFFFFF)  # also the largest high half
_DTLS12 = const(0xFEFD)
# RFC 9146 5: seq_num_placeholder (8 x 0xFF), then tls12_cid: no non-CID MAC input starts so
_CID_AAD_START = b"\xff\xff\xff\xff\xff\xff\xff\xff\x19"

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


def epoch_states(epoch, suite, etm, key_block, rng, client=True, write_cid=b"", read_cid=b""):
    """(WriteState, ReadState) of one epoch from its key_block (RFC 5246 6.3 order: client
    MAC key, server MAC key, client key, server key, client IV, server IV). A non-empty
    write_cid makes every record written a tls12_cid record carrying it; a non-empty read_cid
    is the CID records to us must carry (RFC 9146 3: each side names the CID it receives)."""
    info = SUITES[suite]
    m, iv = info[3], info[2]
    p = 2 * m
    c = RecordCipher(suite, key_block[p:p + 16], key_block[p + 32:p + 32 + iv], key_block[:m], etm, rng,
                     write_cid if client else read_cid)
    s = RecordCipher(suite, key_block[p + 16:p + 32], key_block[p + 32 + iv:p + 32 + 2 * iv],
                     key_block[m:p], etm, rng, read_cid if client else write_cid)
    if client:
        return WriteState(epoch, c), ReadState(epoch, s)
    return WriteState(epoch, s), ReadState(epoch, c)


class RecordCipher:
    """One direction of one epoch's protection (RFC 5246 6.2.3, RFC 6655, RFC 7366); with a
    non-empty cid, in RFC 9146's tls12_cid form (the CID in the header, the real content type
    inside the encrypted DTLSInnerPlaintext, RFC 9146 5's additional data and MAC input)."""

    def __init__(self, suite, enc_key, fixed_iv, mac_key, etm, rng, cid=b""):
        self.suite = suite
        self.cid = bytes(cid)
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
        """Largest number of bytes protection adds to a plaintext (with a CID: also the CID
        in the header and the inner type byte)."""
        n = len(self.cid) + 1 if self.cid else 0
        if self._aead is not None:
            return n + 8 + self._tag_len
        return n + 16 + 16 + self._tag_len  # explicit IV, up to a block of padding, MAC

    # seal() and open() work on whole records and stay small: MicroPython puts larger frames
    # on the heap (see dtls_lite/crypto.py), and this is the per-record path.

    def seal(self, ctype, seq_num, plaintext):
        """seq_num: the 8-byte epoch||sequence_number. Returns the whole record."""
        if self.cid:
            # RFC 9146 4: DTLSInnerPlaintext = content || real_type (we add no zero padding)
            plaintext = plaintext + bytes((ctype,))
            ctype = CT_TLS12_CID
        if self._aead is None:
            return self._seal_cbc(ctype, seq_num, plaintext)
        # nonce = fixed IV || explicit nonce; we use epoch||seq as the explicit part, which
        # is unique per key as long as (epoch, seq) never repeats (RFC 6655 3, RFC 5288 3).
        ad = _aad(seq_num, ctype, len(plaintext), self.cid)
        body = self._aead.seal(self.fixed_iv + seq_num, ad, plaintext)
        return _header(ctype, seq_num, len(body) + 8, self.cid) + seq_num + body

    def open(self, rec):
        """Plaintext of the whole record rec, or None when it does not authenticate. With a
        CID: the DTLSInnerPlaintext's content || real_type, zero padding removed."""
        h = HEADER_LEN
        if self.cid or rec[0] == CT_TLS12_CID:
            h = self._cid_header_len(rec)
            if h == 0:
                return None
        plain = self._open_aead(rec, h) if self._aead is not None else self._open_cbc(rec, h)
        if self.cid and plain is not None:
            return _inner(plain)
        return plain

    def _cid_header_len(self, rec):
        """Header length of a record that has or should have a CID, or 0 if it must be dropped:
        RFC 9146 4, with our CID negotiated only tls12_cid records carrying it, else none."""
        cid = self.cid
        n = HEADER_LEN + len(cid)
        if cid and rec[0] == CT_TLS12_CID and rec[11:n - 2] == cid:
            return n
        return 0

    def _open_aead(self, rec, h):
        n = len(rec) - h - 8 - self._tag_len  # length of the plaintext
        if n < 0:
            return None
        n = _aad(rec[3:11], rec[0], n, self.cid)  # reused for the additional data: a small frame
        return self._aead.open(self.fixed_iv + rec[h:h + 8], n, rec[h + 8:])

    def _seal_cbc(self, ctype, seq_num, plaintext):
        iv = self._rng(16)
        pad = 15 - (len(plaintext) + (0 if self.etm else 32)) % 16
        if self.etm:  # RFC 7366 3: MAC over the IV and ciphertext (RFC 9146 5.2 with a CID)
            body = iv + crypto.aes_cbc_encrypt(self.enc_key, iv, plaintext + bytes([pad]) * (pad + 1))
            body += crypto.hmac_sha256(self.mac_key, _aad(seq_num, ctype, len(body), self.cid) + body)
        else:  # RFC 9146 5.1 with a CID: MAC over the whole DTLSInnerPlaintext
            mac = crypto.hmac_sha256(self.mac_key, _aad(seq_num, ctype, len(plaintext), self.cid) + plaintext)
            body = iv + crypto.aes_cbc_encrypt(self.enc_key, iv, plaintext + mac + bytes([pad]) * (pad + 1))
        return _header(ctype, seq_num, len(body), self.cid) + body

    def _open_cbc(self, rec, h):
        seq_num = rec[3:11]
        fragment = rec[h:]
        if self.etm:
            n = len(fragment) - 32
            if n < 32 or n % 16:
                return None
            mac = crypto.hmac_sha256(self.mac_key, _aad(seq_num, rec[0], n, self.cid) + fragment[:n])
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
        mac = crypto.hmac_sha256(self.mac_key, _aad(seq_num, rec[0], n, self.cid) + plain[:n])
        if crypto.ct_equal(mac, plain[n:n + 32]) and good:
            return plain[:n]
        return None


def _seq_num(epoch, hi, lo):
    """epoch||sequence_number (8 bytes) from the sequence number's 24-bit halves."""
    return struct.pack(">HHHH", epoch, hi >> 8, (hi & 0xFF) << 8 | lo >> 16, lo & 0xFFFF)


def _header(ctype, seq_num, length, cid=b""):
    """The record header (RFC 6347 4.1): type, version, epoch||sequence_number, length; a
    tls12_cid record has its CID before the length (RFC 9146 4)."""
    if cid:
        return struct.pack(">BH8s", ctype, _DTLS12, seq_num) + cid + struct.pack(">H", length)
    return struct.pack(">BH8sH", ctype, _DTLS12, seq_num, length)


def _aad(seq_num, ctype, length, cid=b""):
    """AEAD additional data and CBC MAC header alike (RFC 5246 6.2.3): seq_num, type, version,
    length. With a CID, RFC 9146 5's: seq_num_placeholder, tls12_cid, cid_length, tls12_cid,
    version, epoch, sequence_number, cid, length (of the DTLSInnerPlaintext for AEAD and
    MAC-then-encrypt, of IV + ciphertext with encrypt-then-MAC)."""
    if cid:
        return _cid_aad(seq_num, length, cid)
    return struct.pack(">8sBHH", seq_num, ctype, _DTLS12, length)


def _cid_aad(seq_num, length, cid):
    return (_CID_AAD_START + struct.pack(">BBH8s", len(cid), CT_TLS12_CID, _DTLS12, seq_num) + cid
            + struct.pack(">H", length))


def _inner(plain):
    """content || real_type of a DTLSInnerPlaintext: its zero padding stripped (RFC 9146 4);
    None (drop) when nothing but zeros is left."""
    plain = plain.rstrip(b"\x00")
    return plain if plain else None


class WriteState:
    """Outgoing epoch: cipher (None in epoch 0) and the next sequence number to use.

    left: None, or how many more records may be numbered below the stored reservation (the
    adapter sets it, protect() counts it down, the adapter saves a new reservation before a
    record numbered past it leaves): a small int, where comparing 48-bit sequence numbers
    would allocate on 32-bit boards."""

    left = None

    def __init__(self, epoch, cipher=None, seq=0):
        self.epoch = epoch
        self.cipher = cipher
        self.seq = seq

    @property
    def seq(self):
        """Next sequence number to use (for saving state: may allocate, read it rarely)."""
        return (self._hi << _LO_BITS) | self._lo

    @seq.setter
    def seq(self, seq):
        self._hi = seq >> _LO_BITS
        self._lo = seq & _LO_MASK

    def protect(self, ctype, payload):
        """One whole record. Never reuses or wraps a sequence number (RFC 6347 4.1)."""
        if self.left is not None:
            self.left -= 1
        seq = self._lo  # few locals: a larger frame would be heap-allocated on every call
        if seq < _LO_MASK and self._hi <= _LO_MASK:
            self._lo = seq + 1
            seq = _seq_num(self.epoch, self._hi, seq)
        else:
            seq = self._carry()
        if self.cipher is not None:
            return self.cipher.seal(ctype, seq, payload)
        return _header(ctype, seq, len(payload)) + payload

    def _carry(self):
        """epoch||hi||0xFFFFFF, then the next sequence number is (hi + 1)||0."""
        hi = self._hi
        if hi >= _LO_MASK:  # 2**48 - 1 stays unused: the next one would wrap
            raise OverflowError("sequence numbers of epoch %d exhausted" % self.epoch)
        self._hi, self._lo = hi + 1, 0
        return _seq_num(self.epoch, hi, _LO_MASK)

    def overhead(self):
        return HEADER_LEN + (self.cipher.overhead() if self.cipher is not None else 0)


class ReadState:
    """Incoming epoch: cipher and the 64-record replay window (RFC 6347 4.1.2.6).

    No per-record allocation, also on 32-bit MicroPython: the highest authenticated sequence
    number is kept as two 24-bit halves and the window as a circular bitmap (bit seq % 64 of
    an 8-byte bytearray holds the sequence numbers max_seq - 63 .. max_seq). The attributes
    max_seq (-1 before the first record) and window (bit i set: max_seq - i was received) are
    computed on demand, for saving state."""

    def __init__(self, epoch, cipher=None):
        self.epoch = epoch
        self.cipher = cipher
        self._hi, self._lo = -1, _LO_MASK  # max_seq -1: nothing received yet
        self._bits = bytearray(8)

    @property
    def max_seq(self):
        return (self._hi << _LO_BITS) | self._lo

    @max_seq.setter
    def max_seq(self, seq):
        w = self.window  # keep the window relative to max_seq, as a plain attribute would
        self._hi = seq >> _LO_BITS
        self._lo = seq & _LO_MASK
        self.window = w

    @property
    def window(self):
        w, b = 0, self._bits
        for i in range(_WINDOW):
            j = (self._lo - i) & 63
            if b[j >> 3] >> (j & 7) & 1:
                w |= 1 << i
        return w

    @window.setter
    def window(self, w):
        b = self._bits
        for i in range(8):
            b[i] = 0
        for i in range(_WINDOW):
            if w >> i & 1:
                j = (self._lo - i) & 63
                b[j >> 3] |= 1 << (j & 7)

    def is_replay(self, seq):
        return self._replay(seq >> _LO_BITS, seq & _LO_MASK)

    def mark(self, seq):
        """Record seq as received; call only after the record authenticated."""
        self._mark(seq >> _LO_BITS, seq & _LO_MASK)

    def _replay(self, hi, lo):
        d = self._hi - hi
        if d < 0 or (d == 0 and lo > self._lo):
            return False  # newer than any seen
        if d > 1:
            return True  # far older than the window: too old to tell, so dropped
        d = (d << _LO_BITS) + self._lo - lo  # max_seq - seq, below 2**25
        if d >= _WINDOW:
            return True
        lo &= 63
        return self._bits[lo >> 3] >> (lo & 7) & 1 == 1

    def _mark(self, hi, lo):
        # Few locals: a larger frame would be heap-allocated on every call.
        d = hi - self._hi
        if d > 0 or (d == 0 and lo > self._lo):  # newer: slide the window up to seq
            d = _WINDOW if d > 1 else min((d << _LO_BITS) + lo - self._lo, _WINDOW)
            self._hi, self._lo = hi, lo
            while d > 1:  # clear the slots of the numbers the window takes in below seq
                d -= 1
                hi = (lo - d) & 63
                self._bits[hi >> 3] &= ~(1 << (hi & 7))
        lo &= 63
        self._bits[lo >> 3] |= 1 << (lo & 7)

    def open(self, rec):
        """Plaintext of the whole record rec (header included; the caller checked its epoch)
        if it is authentic and fresh, else None (the caller counts the drop)."""
        if self.cipher is None:
            return rec[HEADER_LEN:]  # epoch 0: nothing to check; handshake layer drops duplicates
        if rec[2] != 0xFD:  # protected records are DTLS 1.2 (0xFEFD): the MAC covers our constant
            return None
        hi = (rec[5] << 16) | (rec[6] << 8) | rec[7]  # the 48-bit sequence number's halves
        lo = (rec[8] << 16) | (rec[9] << 8) | rec[10]
        if self._replay(hi, lo):
            return None
        plain = self.cipher.open(rec)
        if plain is not None:
            self._mark(hi, lo)
        return plain



def record_end(data, off, cid_len=0):
    """Offset just past the record that starts at off, or -1 if data does not hold all of it.
    cid_len: length of the CID in tls12_cid records to us (RFC 9146 4: the record does not
    say; its length field follows the CID)."""
    end = off + HEADER_LEN
    if data[off] == CT_TLS12_CID:
        end += cid_len
    if end > len(data):
        return -1
    end += (data[end - 2] << 8) | data[end - 1]
    return end if end <= len(data) else -1


def record_epoch(rec):
    return (rec[3] << 8) | rec[4]
