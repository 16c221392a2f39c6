# What a client does to keep its security state across deep sleep (DESIGN.md section 4): read
# the stores, gather the facts for the wake policy (dtls_lite/wake.py), write the sequence
# reservation before any record at or above it leaves, keep the old state until a new
# handshake works ("probing"), say what to do when a continued connection gets no reply, and
# how long to wait for that reply: the server's round-trip time, smoothed (RFC 6298), kept in
# the saved state with the keys; and the application's counter (CoAP message IDs and tokens),
# reserved in the store before a value is handed out, as record sequence numbers are.
# Shared by the adapters; never touches a socket or a clock (the wall clock is injected).
import struct

from dtls_lite import connection as cn
from dtls_lite import state
from dtls_lite import wake
from dtls_lite.session import Session, resumable

RESERVE = 64  # sequence numbers reserved per save: one store write per 64 records at most
COUNTER_RESERVE = 16  # application counter values reserved per save
_U32 = 0xFFFFFFFF

# Bounds of the RTO (ms) a continued wake's first record waits before its retry. Below: loopback
# and a LAN answer in ~1 ms, but a loaded host (two cores, a test worker and the server) or a
# MicroPython GC pause delays a reply by tens of ms; no radio link answers faster than this.
# Above: the request's timeout_ms (the caller's), so the wait is never longer than before.
RTO_MIN_MS = 50
_MAX_BACKOFF = 3  # RFC 6298 5.5 doublings kept across wakes (Karn): 8 RTO at most
_MAX_RTT_MS = 0xFFFF  # the blob's field (dtls_lite/state.py)


class Keeper:
    """Persistence of one client's Connection in store (session and connection, e.g. RTC
    memory) and session_store (the session only, durable, e.g. a file)."""

    def __init__(self, identity, psk, server_key, store, session_store, idle_s, wall):
        self.key = state.state_key(psk, identity)
        self.server_key = server_key  # (ip bytes, port) the state must have been made for
        self.store = store
        self.session_store = session_store
        self.idle_s = idle_s  # auto_handshake_timeout_s
        self.wall = wall  # wall clock, int seconds
        self.reserved = False  # the store holds a reservation for the live connection's keys
        self.saved_session_id = None  # session ID last written to session_store
        self.state_error = None  # why a stored blob was refused (a StateError), if it was
        self.srtt = None  # smoothed round-trip time, ms (RFC 6298 2); None: never measured
        self.rttvar = 0
        self.backoff = 0  # RTO doublings since the last valid sample (RFC 6298 5.5, Karn)
        self.counter = None  # next application counter value (handed out mod 2**32); None: unused
        self.counter_top = 0  # the stored reservation: no value at or above it was handed out
        self.app_data = b""

    def load(self):
        """The SavedState in the store (or else the session store), or None; a refused blob
        sets state_error (its reason) and counts as nothing saved. The session store is read
        either way, so that a session it already holds is not written again (flash wear)."""
        found = None
        for st in (self.store, self.session_store):
            if st is None:
                continue
            try:
                blob = st.load()
            except OSError as e:  # unreadable: as if nothing were saved, never a crash
                self.state_error = state.StateError("store could not be read: %s" % (e,))
                continue
            if blob is None:
                continue
            try:
                saved = state.load(self.key, blob, self.server_key)
            except state.StateError as e:
                self.state_error = e
                continue
            if st is self.session_store:
                self.saved_session_id = saved.session_id
            if found is None:
                found = saved
                if saved.app_counter is not None:  # never in the session store's copy
                    self.counter = self.counter_top = saved.app_counter
                self.app_data = saved.app_data
                if saved.srtt_ms is not None:
                    self.srtt, self.rttvar, self.backoff = saved.srtt_ms, saved.rttvar_ms, saved.rto_backoff
        return found

    # ---- round-trip time (RFC 6298) ----------------------------------------------------------

    def sample(self, ms):
        """A round trip of ms: a reply matched to a request (or a handshake flight) sent once;
        never one answered after a retransmission (Karn: which copy was answered is unknown)."""
        ms = min(max(ms, 0), _MAX_RTT_MS)
        if self.srtt is None:  # RFC 6298 2.2
            self.srtt = ms
            self.rttvar = ms // 2
        else:  # RFC 6298 2.3, alpha 1/8, beta 1/4
            d = self.srtt - ms
            self.rttvar = (3 * self.rttvar + (d if d >= 0 else -d)) // 4
            self.srtt = (7 * self.srtt + ms) // 8
        self.backoff = 0  # RFC 6298 5.7: a valid sample ends the back-off

    def backed_off(self):
        """The reply came only after a retry: keep a doubled RTO until a valid sample (RFC 6298
        5.5; Karn's algorithm: the ambiguous round trip itself is not a sample)."""
        if self.backoff < _MAX_BACKOFF:
            self.backoff += 1

    def rto(self, initial_ms, ceiling_ms):
        """How long a continued wake's first record waits for its reply (ms): SRTT +
        max(4 RTTVAR, SRTT), doubled per back-off, within RTO_MIN_MS..ceiling_ms; before any
        sample initial_ms (RFC 6298 2.1: 1 s; the client's initial_timeout_ms). The SRTT term
        is RFC 6298 2.3's max(G, K*RTTVAR) with G = SRTT: after steady samples RTTVAR nears 0,
        and a server that takes twice as long as usual is slow, not gone."""
        if self.srtt is None:
            r = initial_ms
        else:
            v = 4 * self.rttvar
            r = self.srtt + (v if v > self.srtt else self.srtt)
        r <<= self.backoff
        if r < RTO_MIN_MS:
            r = RTO_MIN_MS
        return r if r < ceiling_ms else ceiling_ms

    def facts(self, saved, suites, local_key, forced):
        """The wake policy's facts (wake.SESSION, ...) about saved (a SavedState or None)."""
        if saved is None:
            return wake.FORCED if forced else 0
        facts = 0
        if saved.suite in suites:
            if resumable(session_of(saved)):
                facts |= wake.SESSION
            if saved.has_connection:
                facts |= wake.CONNECTION
                if local_key is not None and saved.local == local_key:
                    facts |= wake.SAME_LOCAL
                if saved.write_cid:
                    facts |= wake.SERVER_CID
        if forced:
            facts |= wake.FORCED
        if self.idle_s is not None:
            last = saved.last_exchange_s
            now = int(self.wall())
            if last is None or now < last or now - last > self.idle_s:
                facts |= wake.IDLE
        return facts

    def restored(self, conn):
        """conn continues a saved connection: the store holds its reservation already, and
        its write sequence number starts at it, so no record may leave before the next save."""
        self.reserved = True
        conn.write_state.left = 0

    def persist(self, conn, local_key, last_heard):
        """Write what is safe to keep; True if the store (not the session store) was written.
        A connection that failed leaves the stores as they were ("probing": the older state
        stays usable until a new handshake completes)."""
        if conn.session is None or (conn.state == cn.ST_CLOSED and conn.error is not None):
            return False
        st = conn.snapshot(RESERVE)
        st.server = self.server_key
        st.local = local_key
        st.last_exchange_s = last_heard
        if self.srtt is not None:
            st.srtt_ms, st.rttvar_ms, st.rto_backoff = self.srtt, min(self.rttvar, _MAX_RTT_MS), self.backoff
        top = self.counter_top
        if self.counter is not None:
            if self.counter + COUNTER_RESERVE > top:
                top = self.counter + COUNTER_RESERVE
            st.app_counter = top & _U32
        st.app_data = self.app_data
        wrote = False
        if self.store is not None:
            self.store.save(state.dump(self.key, st))
            wrote = True
            self.counter_top = top  # only once it is stored: take() trusts it
            self.reserved = st.has_connection
            if st.has_connection:
                # records this write state may still protect below the reservation
                conn.write_state.left = st.write_seq - conn.write_state.seq
        ss = self.session_store
        if ss is not None and conn.session.session_id != self.saved_session_id and resumable(conn.session):
            # durable copy: the session only, never a reservation (written only when the
            # session changes, so a counter there would be stale)
            st.has_connection = False
            st.app_counter = None
            st.app_data = b""
            ss.save(state.dump(self.key, st))
            self.saved_session_id = conn.session.session_id
        return wrote

    def take(self, n, rng, conn, local_key, last_heard):
        """The first of n application counter values (mod 2**32), stored as used before they
        are handed out: a reservation past them is saved first when the stored one is used up,
        so a crash never hands out a value twice. A first boot (nothing stored) starts at a
        random value (RFC 7252 4.4). Without a store the counter lives in memory only."""
        if self.counter is None:
            self.counter = self.counter_top = struct.unpack(">I", rng(4))[0]
        c = self.counter
        if self.store is not None and c + n > self.counter_top:
            self.counter = c + n
            try:
                ok = self.persist(conn, local_key, last_heard)
            except BaseException:
                self.counter = c  # not stored: not handed out
                raise
            if not ok:
                self.counter = c
                from dtls_lite.errors import ConnectionClosed
                raise ConnectionClosed("the connection failed: no counter value can be reserved")
        self.counter = c + n
        return c & _U32

    def guard(self, conn, out, local_key, last_heard):
        """The datagrams of out that may leave: records numbered at or above the stored
        reservation are queued, so reserve further ahead first (a failed save raises: none
        leaves); if nothing could be saved (the connection failed, e.g. a fatal alert is
        queued), those numbers may be reused by a later continued wake, so none leaves."""
        if not self.reserved or conn.write_state.left is None or conn.write_state.left >= 0:
            return out
        self.persist(conn, local_key, last_heard)
        if self.reserved and conn.write_state.left < 0:
            return ()
        return out

    def fallback(self, conn):
        """The continued connection conn got no reply (the server restarted or evicted it):
        the Session to offer next (None: a full handshake) and the wake action's name."""
        s = conn.session
        return s, ("abbreviated" if resumable(s) else "full")


def session_of(saved):
    return Session(saved.session_id, saved.master_secret, saved.suite, saved.ems, saved.etm)
