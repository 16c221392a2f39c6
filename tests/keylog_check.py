"""Attribute captured DTLS 1.2 records to the key sets that protect them (tests, CPython only).

The nonce-safety test (tests/test_nonce_safety.py) captures every datagram between the client
and the server (tools/netem.py) and needs to know, for each record the client sent in epoch 1
or later, which keys authenticate it: a CCM/GCM nonce is (keys, epoch, sequence number), so a
pair seen twice under one key set is a nonce reuse.

Key sets come from the capture: each ServerHello (server_random) answers the client's latest
ClientHello (client_random) before it. The master secret of a pair comes from
- the client's NSS key log ("CLIENT_RANDOM <client_random> <master>"), written by DTLSClient
  right after a handshake completes; and, independently,
- the PSK: a full handshake's extended master secret (RFC 7627 4) from the captured transcript
  (RFC 6347 4.2.6: ClientHello with cookie .. ClientKeyExchange, DTLS headers included, the
  first ClientHello and HelloVerifyRequest left out), an abbreviated one's from the session
  whose ID the ServerHello echoed (RFC 5246 7.3).
The second source covers a client killed after its Finished left but before its key log line
was written; where both exist they must agree. The PRF is written here from the RFC, not taken
from dtls_lite, so a key schedule bug on the client's side cannot hide itself.

Trial decryption uses dtls_lite.record.RecordCipher.open directly (no replay window): a record
seen twice must authenticate twice, or the duplicate would go unnoticed.
"""
import hashlib
import hmac
import os
import struct

from dtls_lite import record as rl
from support import wire
from support.wire import (CT_HANDSHAKE, HT_CLIENT_HELLO, HT_CLIENT_KEY_EXCHANGE, HT_SERVER_HELLO,
                          HT_SERVER_HELLO_DONE, HT_SERVER_KEY_EXCHANGE)

UP = "up"
DOWN = "down"


# ---- RFC 5246 5 PRF (P_SHA256) and the key schedule ---------------------------------------

def prf(secret, label, seed, n):
    seed = label + seed
    out = b""
    a = seed
    while len(out) < n:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:n]


def psk_premaster(psk):
    """RFC 4279 2: uint16 N, N zero bytes, uint16 N, psk."""
    n = struct.pack(">H", len(psk))
    return n + bytes(len(psk)) + n + psk


def full_master(psk, transcript, client_random, server_random, ems):
    if ems:  # RFC 7627 4: session_hash = Hash(handshake messages up to ClientKeyExchange)
        return prf(psk_premaster(psk), b"extended master secret", hashlib.sha256(transcript).digest(), 48)
    return prf(psk_premaster(psk), b"master secret", client_random + server_random, 48)


# ---- parsing -------------------------------------------------------------------------------

def records(datagram):
    """[(ctype, epoch, seq, whole record bytes)] of a datagram (no CIDs); stops at garbage."""
    return [(r[wire.CTYPE], r[wire.EPOCH], r[wire.SEQ], r[wire.RAW])
            for r in wire.records(datagram, partial=True)]


def messages(fragment):
    """[(msg_type, message_seq, whole message bytes or None if fragmented, body)]."""
    return [(m[wire.MSG_TYPE], m[wire.MSG_SEQ], m[wire.MSG_RAW] if wire.whole(m) else None,
             m[wire.BODY]) for m in wire.messages(fragment, partial=True)]


def parse_client_hello(body):
    """(client_random, session_id, cookie)."""
    h = wire.client_hello(body)
    return h["random"], h["session_id"], h["cookie"]


def parse_server_hello(body):
    """(server_random, session_id, suite, ems)."""
    h = wire.server_hello(body)
    return (h["random"], h["session_id"], h["suite"],
            wire.extension(h, wire.EXT_EXTENDED_MASTER_SECRET) is not None)


def read_keylog(path):
    """{client_random: master_secret} from an NSS key log file (missing file: empty)."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            parts = line.split()
            # a client killed while writing leaves a cut line: skip it
            if len(parts) == 3 and parts[0] == "CLIENT_RANDOM" and len(parts[1]) == 64 and len(parts[2]) == 96:
                out[bytes.fromhex(parts[1])] = bytes.fromhex(parts[2])
    return out


# ---- key sets --------------------------------------------------------------------------------

class KeySet:
    """One handshake's keys: the pair of randoms, the suite, the master and where it came from."""

    def __init__(self, index, client_random, server_random, suite, master, sources, t, conflict):
        self.index = index
        self.client_random = client_random
        self.server_random = server_random
        self.suite = suite
        self.master = master
        self.sources = sources  # subset of {"keylog", "psk"}
        self.conflict = conflict  # the key log and the PSK gave different masters
        self.t = t  # capture time of the ServerHello
        kb = prf(master, b"key expansion", server_random + client_random, rl.key_block_len(suite))
        # client=False: the server's read state holds the client's write keys
        self.cipher = rl.epoch_states(1, suite, False, kb, os.urandom, client=False)[1].cipher

    def opens(self, rec):
        return self.cipher.open(rec)

    def __repr__(self):
        return "<KeySet %d cr %s.. sr %s.. %s>" % (self.index, self.client_random[:4].hex(),
                                                  self.server_random[:4].hex(), "+".join(sorted(self.sources)))


class Handshakes:
    """What the capture says about handshakes: candidate key sets (a ServerHello paired with
    each of the client's last three ClientHellos: the wrong pairs never authenticate anything)."""

    def __init__(self):
        self.key_sets = []
        self.client_hellos = 0  # ClientHello messages the client sent (retransmissions included)
        self.server_hellos = 0
        self.abbreviated = 0  # ServerHellos that echoed the offered session ID
        self.full = 0

    def add(self, cr, sr, suite, t, keylog_master, psk_master):
        masters = {}
        for source, m in (("keylog", keylog_master), ("psk", psk_master)):
            if m is not None:
                masters.setdefault(m, set()).add(source)
        for m, sources in masters.items():
            if any(k.client_random == cr and k.server_random == sr and k.master == m for k in self.key_sets):
                continue  # the same ServerHello again (a retransmitted flight)
            self.key_sets.append(KeySet(len(self.key_sets), cr, sr, suite, m, sources, t, len(masters) > 1))


def key_sets(capture, psk, keylog):
    """Handshakes of a capture [(direction, datagram, t)] given the PSK and the key log dict."""
    out = Handshakes()
    sessions = {}  # session_id -> master (from full handshakes, and from the key log)
    events = []  # (i, t, direction, msg_type, whole, body)
    for i, (direction, data, t) in enumerate(capture):
        for ctype, epoch, _, rec in records(data):
            if ctype != CT_HANDSHAKE or epoch != 0:
                continue
            for mt, _, whole, body in messages(rec[rl.HEADER_LEN:]):
                events.append((i, t, direction, mt, whole, body))
    last_hellos = []  # the client's latest ClientHellos: (client_random, sid, whole)
    for k, (i, t, direction, mt, whole, body) in enumerate(events):
        if direction == UP and mt == HT_CLIENT_HELLO and whole is not None:
            cr, sid, _ = parse_client_hello(body)
            out.client_hellos += 1
            if last_hellos and last_hellos[-1][0] == cr:
                last_hellos[-1] = (cr, sid, whole)  # the hello with the cookie is the one that counts
            else:
                last_hellos = (last_hellos + [(cr, sid, whole)])[-3:]
            continue
        if direction != DOWN or mt != HT_SERVER_HELLO or not last_hellos or whole is None:
            continue
        out.server_hellos += 1
        sr, sh_sid, suite, ems = parse_server_hello(body)
        if suite not in rl.SUITES:
            continue
        rest = _server_flight_and_cke(events, k)
        newest = True
        for cr, offered, ch_whole in reversed(last_hellos):
            resumed = bool(offered) and sh_sid == offered  # RFC 5246 7.3
            if newest:
                out.abbreviated += resumed
                out.full += not resumed
                newest = False
            derived = None
            if resumed:
                derived = sessions.get(sh_sid)
            elif rest is not None:
                derived = full_master(psk, ch_whole + whole + rest, cr, sr, ems)
            logged = keylog.get(cr)
            master = logged or derived
            if master is None:
                continue
            if sh_sid and not resumed and rest is not None:
                sessions.setdefault(sh_sid, derived)
            out.add(cr, sr, suite, t, logged, derived)
    return out


def _server_flight_and_cke(events, k):
    """The rest of a full handshake's transcript after the ServerHello at events[k]: the
    server's ServerKeyExchange (if any) and ServerHelloDone, then the client's
    ClientKeyExchange; None if the capture does not hold them all (no Finished followed)."""
    server = {}
    for i, t, direction, mt, whole, body in events[k + 1:]:
        if direction == UP and mt == HT_CLIENT_HELLO:
            return None
        if direction == DOWN and mt == HT_SERVER_HELLO:
            return None
        if whole is None:
            continue
        if direction == DOWN and mt in (HT_SERVER_KEY_EXCHANGE, HT_SERVER_HELLO_DONE):
            server.setdefault(mt, whole)
        elif direction == UP and mt == HT_CLIENT_KEY_EXCHANGE and HT_SERVER_HELLO_DONE in server:
            return server.get(HT_SERVER_KEY_EXCHANGE, b"") + server[HT_SERVER_HELLO_DONE] + whole
    return None


# ---- attribution -----------------------------------------------------------------------------

class Attribution:
    def __init__(self):
        self.records = []  # (key set index, epoch, seq, ctype, capture index)
        self.unattributed = []  # (epoch, seq, ctype, capture index)

    def duplicates(self):
        """(key set, epoch, seq) seen more than once: [(triple, capture indexes)]."""
        seen = {}
        for ks, epoch, seq, _, i in self.records:
            seen.setdefault((ks, epoch, seq), []).append(i)
        return [(key, idx) for key, idx in seen.items() if len(idx) > 1]

    def used_key_sets(self):
        return sorted(set(r[0] for r in self.records))


def attribute(capture, handshakes, direction=UP):
    """Every epoch>=1 record of `direction` tried against the key sets made before it, newest
    first; the first that authenticates it owns it (a forgery under CCM_8's 64-bit tag is out
    of reach, and equal key sets were merged, so no record has two owners)."""
    out = Attribution()
    sets = sorted(handshakes.key_sets, key=lambda s: -s.t)
    for i, (d, data, t) in enumerate(capture):
        if d != direction:
            continue
        for ctype, epoch, seq, rec in records(data):
            if epoch == 0:
                continue
            owner = None
            for s in sets:
                if s.t <= t and s.opens(rec) is not None:
                    owner = s.index
                    break
            if owner is None:
                out.unattributed.append((epoch, seq, ctype, i))
            else:
                out.records.append((owner, epoch, seq, ctype, i))
    return out
