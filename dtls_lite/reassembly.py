# Handshake message reassembly for the client (RFC 6347 4.2.3).
#
# Holds fragments of server handshake messages that cannot be handed on yet: not yet whole, or
# not yet due. Connection decides which fragments are admitted (the message_seq window) and
# what a whole message means; this module never parses a message body and never raises.
#
# Bounds, because epoch-0 fragments are unauthenticated and anyone can send them:
# - memory is reserved only for bytes that arrived (a header announcing 4096 bytes with an
#   empty fragment costs nothing), at most 2x while a run grows, and all buffers together
#   stay under the caller's cap; a fragment that would exceed it evicts messages further ahead;
# - each message is kept as at most _MAX_RUNS contiguous runs of bytes; a fragment that would
#   open one more is dropped (the peer's retransmission brings it again);
# - the work per fragment is O(_MAX_RUNS) plus the bytes copied, and a run grows by doubling,
#   so reassembling from n fragments in any order is linear in n (small runs are copied into
#   the largest: each byte moves O(log n) times at worst).
from dtls_lite import handshake as hs
from dtls_lite.compat import const

_MAX_RUNS = const(8)


class _Message:
    """One message's fragments: sorted, disjoint, non-touching runs [start, end, base, buf]
    where bytes start..end of the message body are buf[start - base:end - base]."""

    def __init__(self, msg_type, length, epoch):
        self.msg_type = msg_type
        self.length = length
        self.epoch = epoch
        self.runs = []
        self.reserved = 0  # sum of len(buf) over runs

    def complete(self):
        r = self.runs
        return self.length == 0 or (len(r) == 1 and r[0][0] == 0 and r[0][1] == self.length)

    def put(self, off, data, budget):
        """Copies data (the fragment body at off) in. Returns the change of self.reserved, or
        None (nothing changed) if that would add more than budget bytes or one run too many."""
        runs = self.runs
        s = off
        e = off + len(data)
        n = len(runs)
        i = 0
        while i < n and runs[i][1] < s:
            i += 1
        j = i
        while j < n and runs[j][0] <= e:
            j += 1
        if i == j:  # touches no run: a run of its own
            if not data:
                return 0
            if n >= _MAX_RUNS or len(data) > budget:
                return None
            runs.insert(i, [s, e, s, bytearray(data)])
            self.reserved += len(data)
            return len(data)
        host = runs[i]  # the largest touched run keeps its buffer when there is room
        for k in range(i + 1, j):
            if runs[k][1] - runs[k][0] > host[1] - host[0]:
                host = runs[k]
        lo = min(s, runs[i][0])
        hi = max(e, runs[j - 1][1])
        base = host[2]
        buf = host[3]
        freed = 0
        for k in range(i, j):
            if runs[k] is not host:
                freed += len(runs[k][3])
        grow = 0
        if lo < base or hi > base + len(buf):
            size = min(self.length, max(hi - lo, 2 * len(buf)))  # doubling: amortized O(1)
            if size - len(buf) - freed > budget:
                size = hi - lo
                if size - len(buf) - freed > budget:
                    return None
            # room on the side the run grows towards (in-order or reverse-order arrival)
            nbase = max(0, hi - size) if lo < host[0] else min(lo, self.length - size)
            nbuf = bytearray(size)
            nbuf[host[0] - nbase:host[1] - nbase] = memoryview(buf)[host[0] - base:host[1] - base]
            grow = size - len(buf)
            base = nbase
            buf = nbuf
        for k in range(i, j):
            r = runs[k]
            if r is not host:
                buf[r[0] - base:r[1] - base] = memoryview(r[3])[r[0] - r[2]:r[1] - r[2]]
        buf[s - base:e - base] = data
        if j == i + 1:
            host[0] = lo
            host[1] = hi
            host[2] = base
            host[3] = buf
        else:
            runs[i:j] = [[lo, hi, base, buf]]
        self.reserved += grow - freed
        return grow - freed

    def message(self, message_seq):
        """The whole message as one fragment (header included): the form that is hashed."""
        head = hs.push_header(self.msg_type, self.length, message_seq, 0, self.length)
        if self.length == 0:
            return head
        buf = self.runs[0][3]  # one run from 0: its base is 0
        return head + (buf if len(buf) == self.length else memoryview(buf)[:self.length])


class Reassembly:
    """message_seq -> _Message for the messages of the server's flight that wait."""

    def __init__(self):
        self._msgs = {}
        self.reserved = 0  # bytes of fragment buffers held, over all messages

    def __len__(self):
        return len(self._msgs)

    def add(self, f, frag, epoch, cap):
        """Buffers one fragment (f: its header fields, frag: its bytes, header included) that
        arrived in epoch. False if it was refused: no room under cap bytes, or too scattered."""
        mseq = f[2]
        m = self._msgs.get(mseq)
        if m is not None and (m.msg_type != f[0] or m.length != f[1] or m.epoch != epoch):
            # Two different messages claim this message_seq (one is forged or stale): keep the
            # latest, so a forger has to win the race against every retransmission.
            self.discard(mseq)
            m = None
        if f[4] == 0 and f[1] > 0:
            return True  # an empty fragment adds nothing (and reserves nothing)
        if m is None:
            m = _Message(f[0], f[1], epoch)
        data = memoryview(frag)[hs.HS_HEADER_LEN:]
        got = m.put(f[3], data, cap - self.reserved)
        if got is None and self._evict_above(mseq):
            got = m.put(f[3], data, cap - self.reserved)
        if got is None:
            return False
        self.reserved += got
        self._msgs[mseq] = m
        return True

    def _evict_above(self, mseq):
        """Drops the messages after mseq (they are due later); True if any was."""
        ahead = [k for k in self._msgs if k > mseq]
        for k in ahead:
            self.discard(k)
        return bool(ahead)

    def pop(self, mseq):
        """(whole message, epoch) of message mseq if all of it arrived, taking it out; else None."""
        m = self._msgs.get(mseq)
        if m is None or not m.complete():
            return None
        msg = m.message(mseq)  # before any change: a MemoryError here leaves everything as it was
        self.discard(mseq)
        return msg, m.epoch

    def first_complete(self, types, below):
        """The lowest message_seq under below of a complete message of one of types, or None."""
        best = None
        for k in self._msgs:
            m = self._msgs[k]
            if k < below and (best is None or k < best) and m.msg_type in types and m.complete():
                best = k
        return best

    def discard(self, mseq):
        m = self._msgs.pop(mseq, None)
        if m is not None:
            self.reserved -= m.reserved

    def drop_below(self, mseq):
        for k in [k for k in self._msgs if k < mseq]:
            self.discard(k)

    def clear(self):
        self._msgs.clear()  # in place: this runs after a MemoryError too
        self.reserved = 0
