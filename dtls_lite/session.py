# What lives on between handshakes and across deep sleep: the Session (what resumption needs)
# and the Epoch (one epoch's keys and the record states built from them).
# Plain data: never does I/O, never decides anything. The handshake makes them, the
# connection protects records with them, dtls_lite/state.py saves and loads them.
from dtls_lite import record as rl


class Session:
    """What resumption needs (RFC 5246 7.3): kept after the handshake."""

    def __init__(self, session_id, master_secret, suite, ems, etm):
        self.session_id = session_id
        self.master_secret = master_secret
        self.suite = suite
        self.ems = ems
        self.etm = etm


def resumable(s):
    """Whether Session s (or None) may be offered: RFC 7627 5.3 forbids resuming a session
    without extended master secret."""
    return s is not None and s.ems and 0 < len(s.session_id) <= 32 and len(s.master_secret) == 48


class Epoch:
    """One epoch's keys (RFC 5246 6.3 key_block) and CIDs (RFC 9146: write_cid goes in the
    records we send, read_cid is in the server's), with .write (next sequence number) and
    .read (replay window): the part of a connection that continues after deep sleep."""

    def __init__(self, epoch, suite, etm, key_block, write_cid, read_cid, rng):
        self.epoch = epoch
        self.suite = suite
        self.etm = etm
        self.key_block = key_block
        self.write_cid = write_cid
        self.read_cid = read_cid
        self.write, self.read = rl.epoch_states(epoch, suite, etm, key_block, rng, True, write_cid, read_cid)
