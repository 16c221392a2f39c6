# A scripted DTLS 1.2 PSK server for deterministic client tests (both runtimes).
# It builds each server flight as a list of records the test may drop, reorder, duplicate,
# fragment or tamper with before handing datagrams to the client. Key schedule and record
# protection come from dtls_lite (checked by vectors and by the real-server interop tests);
# message parsing and sequencing here are written independently of the client's.
import struct

from dtls_lite import crypto
from dtls_lite import handshake as hs
from dtls_lite import record as rl

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


def records(datagram):
    """[(ctype, epoch, seq, fragment)] of a datagram."""
    out = []
    off = 0
    while off < len(datagram):
        ctype, _, _, epoch, hi, lo, n = struct.unpack_from(">BBBHHIH", datagram, off)
        out.append((ctype, epoch, (hi << 32) | lo, datagram[off + 13:off + 13 + n]))
        off += 13 + n
    return out


def messages(payload):
    """[(msg_type, message_seq, fragment_offset, length, body)] of a handshake payload."""
    out = []
    off = 0
    while off < len(payload):
        t, length, seq, foff, flen = hs.pull_header(payload, off)
        out.append((t, seq, foff, length, payload[off + 12:off + 12 + flen]))
        off += 12 + flen
    return out


class FakeServer:
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
        for ctype, epoch, seq, frag in records(datagram):
            if epoch == 1 and self.read is not None:
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
        r.pull_vector8()  # session_id
        cookie = r.pull_vector8()
        suites_raw = r.pull_vector16()
        self.offered = [struct.unpack_from(">H", suites_raw, i)[0] for i in range(0, len(suites_raw), 2)]
        r.pull_vector8()
        self.client_extensions = []
        exts = hs.Reader(r.pull_vector16())
        while not exts.eof():
            self.client_extensions.append(exts.pull_uint16())
            exts.pull_vector16()
        if self.cookie and cookie != self.cookie:
            # RFC 6347 4.2.1: HelloVerifyRequest echoes the ClientHello's message_seq
            hvr = hs.whole_message(hs.HT_HELLO_VERIFY_REQUEST, mseq,
                                   struct.pack(">HB", self.hvr_version, len(self.cookie)) + self.cookie)
            self.seq = mseq + 1
            self.flight = [(self.write0, rl.CT_HANDSHAKE, hvr)]
            return self.records()
        self.seq = mseq
        self.transcript = [msg]
        ext = b"\xff\x01\x00\x01\x00"
        if self.ems:
            ext += b"\x00\x17\x00\x00"
        self.etm = self.suite == rl.SUITE_PSK_AES_128_CBC_SHA256 and hs.EXT_ENCRYPT_THEN_MAC in self.client_extensions
        if self.etm:
            ext += b"\x00\x16\x00\x00"
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

    def _on_client_finished(self, plain):
        t, mseq, _, _, body = messages(plain)[0]
        if t != hs.HT_FINISHED:
            return []
        if self.client_finished_ok is None:
            expected = hs.finished_verify_data(self.master, b"client finished", b"".join(self.transcript))
            self.client_finished_ok = body == expected
            self.transcript.append(hs.whole_message(t, mseq, body))
            verify = hs.finished_verify_data(self.master, b"server finished", b"".join(self.transcript))
            self.write = self.write1
            self.flight = [(self.write0, rl.CT_CHANGE_CIPHER_SPEC, b"\x01"),
                           self.message(hs.HT_FINISHED, verify, self.write1)]
        return self.records()
