# A scripted DTLS 1.2 PSK server for deterministic client tests (both runtimes).
# It builds each server flight as a list of records the test may drop, reorder, duplicate,
# fragment or tamper with before handing datagrams to the client. Key schedule and record
# protection come from dtls_lite (checked by vectors and by the real-server interop tests);
# record and message parsing (tests/support/wire.py) and sequencing here are written
# independently of the client's.
import struct

from dtls_lite import crypto
from dtls_lite import handshake as hs
from dtls_lite import record as rl

try:
    from support import wire
except ImportError:  # only tests/portable and the repo root on sys.path (tools/bench.py)
    from tests.support import wire

CT_TLS12_CID = 25  # RFC 9146 (deliberately not taken from dtls_lite.record)
PSK = bytes.fromhex("73656372657450534b")
IDENTITY = b"Client_identity"


class Rng:
    """Deterministic stand-in for os.urandom."""

    def __init__(self, seed=1):
        self.state = seed

    def __call__(self, n):
        out = bytearray(n)
        for i in range(n):
            self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
            out[i] = self.state >> 16 & 0xFF
        return bytes(out)


def records(datagram, cid_len=0):
    """[(ctype, epoch, seq, fragment)] of a datagram (tls12_cid records: CID not included)."""
    return [(r[0], r[1], r[2], r[4]) for r in wire.records(datagram, cid_len)]


def cid_records(datagram, cid_len=0):
    """[(ctype, epoch, seq, cid, fragment)] of a datagram; cid is None but in tls12_cid records,
    whose header has cid_len bytes of CID before the length (RFC 9146 4)."""
    return [r[:5] for r in wire.records(datagram, cid_len)]


def messages(payload):
    """[(msg_type, message_seq, fragment_offset, length, body)] of a handshake payload."""
    return [m[:5] for m in wire.messages(payload)]


def cid_aad(epoch, seq, cid, length):
    """RFC 9146 5, from its text: seq_num_placeholder (8 x 0xff), tls12_cid, cid_length,
    tls12_cid, DTLSCiphertext.version, epoch, sequence_number, cid, then the length field
    (length_of_DTLSInnerPlaintext; with encrypt-then-MAC the length of IV + ciphertext)."""
    return (b"\xff" * 8 + bytes([CT_TLS12_CID, len(cid), CT_TLS12_CID, 0xFE, 0xFD])
            + struct.pack(">HHI", epoch, seq >> 32, seq & 0xFFFFFFFF) + cid + struct.pack(">H", length))


class CidCipher:
    """One direction of tls12_cid records (RFC 9146 4 and 5), written apart from
    dtls_lite.record so that the fake server checks the client's records independently.
    Keys from the key_block in RFC 5246 6.3 order. As a writer it pads the inner plaintext
    with zeros to a multiple of pad bytes (Mbed TLS pads to 16), and is a write state."""

    def __init__(self, suite, etm, kb, client_dir, cid, rng, pad=16):
        cbc = suite == rl.SUITE_PSK_AES_128_CBC_SHA256
        m, ivl = (32, 0) if cbc else (0, 4)
        k = 0 if client_dir else 1
        self.mac_key = kb[k * m:(k + 1) * m]
        self.key = kb[2 * m + 16 * k:2 * m + 16 * (k + 1)]
        self.iv = kb[2 * m + 32 + ivl * k:2 * m + 32 + ivl * (k + 1)]
        self.cbc, self.etm, self.cid, self.rng, self.pad = cbc, etm, cid, rng, pad
        self.tag = {rl.SUITE_PSK_AES_128_CCM_8: 8}.get(suite, 16)
        if not cbc:
            self.aead = crypto.AesGcm(self.key) if suite == rl.SUITE_PSK_AES_128_GCM_SHA256 \
                else crypto.AesCcm(self.key, self.tag)
        self.epoch = 1
        self.seq = 0

    def protect(self, ctype, payload):
        inner = payload + bytes([ctype]) + bytes(-(len(payload) + 1) % self.pad)
        seq = self.seq
        self.seq += 1
        seq_num = struct.pack(">HHI", self.epoch, seq >> 32, seq & 0xFFFFFFFF)
        if not self.cbc:
            ad = cid_aad(self.epoch, seq, self.cid, len(inner))
            body = seq_num + self.aead.seal(self.iv + seq_num, ad, inner)
        elif self.etm:
            iv = self.rng(16)
            body = iv + crypto.aes_cbc_encrypt(self.key, iv, _cbc_pad(inner))
            body += crypto.hmac_sha256(self.mac_key, cid_aad(self.epoch, seq, self.cid, len(body)) + body)
        else:
            iv = self.rng(16)
            mac = crypto.hmac_sha256(self.mac_key, cid_aad(self.epoch, seq, self.cid, len(inner)) + inner)
            body = iv + crypto.aes_cbc_encrypt(self.key, iv, _cbc_pad(inner + mac))
        return bytes([CT_TLS12_CID, 0xFE, 0xFD]) + seq_num + self.cid + struct.pack(">H", len(body)) + body

    def open(self, epoch, seq, frag):
        """(real type, content), or (None, None) if it does not authenticate or is all zeros."""
        if not self.cbc:
            n = len(frag) - 8 - self.tag
            ad = cid_aad(epoch, seq, self.cid, n)
            inner = self.aead.open(self.iv + frag[:8], ad, frag[8:]) if n >= 0 else None
        elif self.etm:
            enc = frag[:-32]
            ok = crypto.hmac_sha256(self.mac_key, cid_aad(epoch, seq, self.cid, len(enc)) + enc) == frag[-32:]
            inner = _cbc_unpad(crypto.aes_cbc_decrypt(self.key, enc[:16], enc[16:])) if ok else None
        else:
            plain = _cbc_unpad(crypto.aes_cbc_decrypt(self.key, frag[:16], frag[16:]))
            inner = plain[:-32] if plain is not None else None
            if inner is not None and crypto.hmac_sha256(
                    self.mac_key, cid_aad(epoch, seq, self.cid, len(inner)) + inner) != plain[-32:]:
                inner = None
        if inner is None:
            return None, None
        inner = bytes(inner).rstrip(b"\x00")
        return (inner[-1], inner[:-1]) if inner else (None, None)


def _cbc_pad(data):
    pad = 15 - len(data) % 16
    return data + bytes([pad]) * (pad + 1)


def _cbc_unpad(plain):
    pad = plain[-1]
    return plain[:-pad - 1] if pad < len(plain) and plain[-pad - 1:] == bytes([pad]) * (pad + 1) else None


class FakeServer:
    sessions = None  # {session_id: master_secret} this server can resume (RFC 5246 7.3)
    resumed = False  # the last ClientHello was answered with an abbreviated handshake
    # RFC 9146, checked apart from dtls_lite.record (see CidCipher): cid is the CID we ask for
    # when a client offers connection_id (None: ignore the extension, as servers without CID
    # support do). Once negotiated, cid_read is ours (in client records) and cid_write the
    # client's (in ours); cid_seen lists (epoch, seq, cid) of the client's tls12_cid records and
    # cid_violations counts epoch-1 records without our CID.
    cid = None
    client_cid = None  # what the client offered; None = no extension
    cid_read = b""
    cid_write = b""
    cid_in = None  # CidCipher opening the client's tls12_cid records
    cid_seen = ()
    cid_violations = 0

    def __init__(self, suite=rl.SUITE_PSK_AES_128_CCM_8, cookie=b"\x42" * 16, hint=None,
                 session_id=b"\x5a" * 32, ems=True, psk=PSK, extensions=None, hvr_version=0xFEFD):
        self.suite = suite
        self.cookie = cookie
        self.hint = hint
        self.session_id = session_id
        self.ems = ems
        self.psk = psk
        self.extra_extensions = extensions
        self.hvr_version = hvr_version
        self.rng = Rng(7)
        self.server_random = self.rng(32)
        self.write0 = rl.WriteState(0)
        self.write = self.write0
        self.read = None
        self.seq = 0  # next message_seq we send
        self.transcript = []
        self.flight = []  # [(write_state, ctype, payload)] of our last flight
        self.client_hellos = []
        self.client_finished_ok = None
        self.etm = False
        self.pieces = {}  # message_seq -> body bytes so far
        self.received = []  # decrypted (ctype, plaintext) of epoch-1 records from the client

    # ---- building records -------------------------------------------------------------------

    def protect(self, items, frag=None):
        """Records for [(write_state, ctype, payload)]; handshake messages split into frag-byte pieces."""
        out = []
        for ws, ctype, payload in items:
            if ctype != rl.CT_HANDSHAKE or frag is None:
                out.append(ws.protect(ctype, payload))
                continue
            t, length, seq, _, _ = hs.pull_header(payload, 0)
            for off in range(0, max(length, 1), frag):
                piece = payload[12 + off:12 + off + frag]
                out.append(ws.protect(ctype, hs.push_header(t, length, seq, off, len(piece)) + piece))
        return out

    def records(self, frag=None):
        """Our last flight, freshly protected (as a retransmission would be)."""
        return self.protect(self.flight, frag)

    def message(self, t, body, ws=None):
        msg = hs.whole_message(t, self.seq, body)
        self.seq += 1
        return (ws or self.write, rl.CT_HANDSHAKE, msg)

    def app(self, data):
        return self.write.protect(rl.CT_APPLICATION_DATA, data)

    def alert(self, level, desc):
        return self.write.protect(rl.CT_ALERT, bytes((level, desc)))

    # ---- the handshake ----------------------------------------------------------------------

    def handle(self, datagram):
        """Feed a client datagram; returns our answering flight's records (maybe [])."""
        answer = []
        for ctype, epoch, seq, cid, frag in cid_records(datagram, len(self.cid_read)):
            if epoch == 1 and self.read is not None:
                if self.cid_in is not None:
                    ctype, plain = self._open_cid(ctype, epoch, seq, cid, frag)
                else:
                    rec = struct.pack(">BHHHIH", ctype, 0xFEFD, epoch, seq >> 32, seq & 0xFFFFFFFF, len(frag)) + frag
                    plain = self.read.open(rec)
                if plain is None:
                    continue
                self.received.append((ctype, plain))
                if ctype == rl.CT_HANDSHAKE:
                    answer = self._on_client_finished(plain)
                continue
            if ctype != rl.CT_HANDSHAKE:
                continue
            for t, mseq, foff, length, body in messages(frag):
                body = self._reassemble(t, mseq, foff, length, body)
                if body is None:
                    continue
                if t == hs.HT_CLIENT_HELLO:
                    answer = self._on_client_hello(hs.whole_message(t, mseq, body), mseq, body)
                elif t == hs.HT_CLIENT_KEY_EXCHANGE:
                    self._on_client_key_exchange(hs.whole_message(t, mseq, body), body)
        return answer

    def _reassemble(self, t, mseq, foff, length, body):
        """Whole body once every byte of message mseq arrived (in-order pieces suffice here)."""
        if foff == 0 and len(body) == length:
            return body
        got = self.pieces.get(mseq, b"")
        if foff == len(got):
            got += body
            self.pieces[mseq] = got
        return got if len(got) == length else None

    def _on_client_hello(self, msg, mseq, body):
        self.client_hellos.append(body)
        r = hs.Reader(body)
        r.pull_uint16()
        self.client_random = r.pull_bytes(32)
        offered_id = r.pull_vector8()
        cookie = r.pull_vector8()
        suites_raw = r.pull_vector16()
        self.offered = [struct.unpack_from(">H", suites_raw, i)[0] for i in range(0, len(suites_raw), 2)]
        r.pull_vector8()
        self.client_extensions = []
        exts = hs.Reader(r.pull_vector16())
        while not exts.eof():
            self.client_extensions.append(exts.pull_uint16())
            data = exts.pull_vector16()
            if self.client_extensions[-1] == 54:  # connection_id: opaque cid<0..2^8-1>
                self.client_cid = data[1:] if len(data) == 1 + data[0] else "malformed"
        if self.cookie and cookie != self.cookie:
            # RFC 6347 4.2.1: HelloVerifyRequest echoes the ClientHello's message_seq
            hvr = hs.whole_message(hs.HT_HELLO_VERIFY_REQUEST, mseq,
                                   struct.pack(">HB", self.hvr_version, len(self.cookie)) + self.cookie)
            self.seq = mseq + 1
            self.flight = [(self.write0, rl.CT_HANDSHAKE, hvr)]
            return self.records()
        self.seq = mseq
        self.transcript = [msg]
        if self.sessions and offered_id in self.sessions:
            return self._resume(offered_id)
        ext = b"\xff\x01\x00\x01\x00"
        if self.ems:
            ext += b"\x00\x17\x00\x00"
        self.etm = self.suite == rl.SUITE_PSK_AES_128_CBC_SHA256 and hs.EXT_ENCRYPT_THEN_MAC in self.client_extensions
        if self.etm:
            ext += b"\x00\x16\x00\x00"
        ext += self._cid_extension()
        if self.extra_extensions is not None:
            ext = self.extra_extensions
            self.etm = self.etm and b"\x00\x16\x00\x00" in ext
        sh = (struct.pack(">H", 0xFEFD) + self.server_random + bytes([len(self.session_id)]) + self.session_id
              + struct.pack(">HBH", self.suite, 0, len(ext)) + ext)
        self.flight = [self.message(hs.HT_SERVER_HELLO, sh)]
        if self.hint is not None:
            self.flight.append(self.message(hs.HT_SERVER_KEY_EXCHANGE, struct.pack(">H", len(self.hint)) + self.hint))
        self.flight.append(self.message(hs.HT_SERVER_HELLO_DONE, b""))
        for _, _, m in self.flight:
            self.transcript.append(m)
        return self.records()

    def _resume(self, session_id):
        """Abbreviated handshake: ServerHello echoing the ID, ChangeCipherSpec, Finished."""
        self.resumed = True
        self.master = self.sessions[session_id]
        ext = b"\xff\x01\x00\x01\x00" + (b"\x00\x17\x00\x00" if self.ems else b"")
        self.etm = self.suite == rl.SUITE_PSK_AES_128_CBC_SHA256 and hs.EXT_ENCRYPT_THEN_MAC in self.client_extensions
        if self.etm:
            ext += b"\x00\x16\x00\x00"
        ext += self._cid_extension()
        sh = (struct.pack(">H", 0xFEFD) + self.server_random + bytes([len(session_id)]) + session_id
              + struct.pack(">HBH", self.suite, 0, len(ext)) + ext)
        hello = self.message(hs.HT_SERVER_HELLO, sh)
        self.transcript.append(hello[2])
        kb = hs.key_block(self.master, self.client_random, self.server_random, rl.key_block_len(self.suite))
        self.write1, self.read = rl.epoch_states(1, self.suite, self.etm, kb, self.rng, client=False)
        self._cid_keys(kb)
        verify = hs.finished_verify_data(self.master, b"server finished", b"".join(self.transcript))
        fin = self.message(hs.HT_FINISHED, verify, self.write1)
        self.transcript.append(fin[2])
        self.write = self.write1
        self.flight = [hello, (self.write0, rl.CT_CHANGE_CIPHER_SPEC, b"\x01"), fin]
        return self.records()

    def _on_client_key_exchange(self, msg, body):
        if self.read is not None:
            return  # retransmission
        self.identity = body[2:]
        self.transcript.append(msg)
        pms = hs.psk_premaster(self.psk)
        sh_hash = crypto.sha256(b"".join(self.transcript)) if self.ems else None
        self.master = hs.master_secret(pms, sh_hash, self.client_random, self.server_random)
        kb = hs.key_block(self.master, self.client_random, self.server_random, rl.key_block_len(self.suite))
        self.write1, self.read = rl.epoch_states(1, self.suite, self.etm, kb, self.rng, client=False)
        self._cid_keys(kb)

    # ---- RFC 9146 connection IDs --------------------------------------------------------------

    def _cid_extension(self):
        """Our connection_id extension if we take the client's offer (RFC 9146 3), else b""."""
        self.cid_read = self.cid_write = b""
        self.cid_in = None
        if self.cid is None or self.client_cid is None:
            return b""
        self.cid_read, self.cid_write = self.cid, self.client_cid
        return struct.pack(">HHB", 54, len(self.cid) + 1, len(self.cid)) + self.cid

    def _cid_keys(self, kb):
        """Epoch-1 tls12_cid protection per direction whose CID is non-empty (RFC 9146 3)."""
        self.cid_seen = []
        if self.cid_read:
            self.cid_in = CidCipher(self.suite, self.etm, kb, True, self.cid_read, self.rng)
        if self.cid_write:
            self.write1 = CidCipher(self.suite, self.etm, kb, False, self.cid_write, self.rng)

    def _open_cid(self, ctype, epoch, seq, cid, frag):
        """(real type, content) of a client record that must be tls12_cid with our CID."""
        if ctype != CT_TLS12_CID or cid != self.cid_read:
            self.cid_violations += 1
            return ctype, None
        self.cid_seen.append((epoch, seq, cid))
        return self.cid_in.open(epoch, seq, frag)

    def _on_client_finished(self, plain):
        t, mseq, _, _, body = messages(plain)[0]
        if t != hs.HT_FINISHED:
            return []
        if self.resumed:
            if self.client_finished_ok is None:  # over ClientHello, ServerHello, our Finished
                expected = hs.finished_verify_data(self.master, b"client finished", b"".join(self.transcript))
                self.client_finished_ok = body == expected
            return []  # the client's flight was the last one
        if self.client_finished_ok is None:
            expected = hs.finished_verify_data(self.master, b"client finished", b"".join(self.transcript))
            self.client_finished_ok = body == expected
            self.transcript.append(hs.whole_message(t, mseq, body))
            verify = hs.finished_verify_data(self.master, b"server finished", b"".join(self.transcript))
            self.write = self.write1
            self.flight = [(self.write0, rl.CT_CHANGE_CIPHER_SPEC, b"\x01"),
                           self.message(hs.HT_FINISHED, verify, self.write1)]
        return self.records()
