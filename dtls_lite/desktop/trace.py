# What `dtls-lite` says on stderr: one-line notes, the -v trace of datagrams and decisions, and
# the socket that feeds it. TracingSocket is what DTLSClient gets from its public
# socket_factory= hook: a real UDP socket whose every send and receive the Tracer sees, and
# which turns "ICMP port unreachable twice, never an answer" into exit 6. Record and handshake
# headers are decoded read-only for the trace; every protocol decision stays in the library.
import errno
import socket
import sys
import time

from dtls_lite import record as rl
from dtls_lite.desktop.exits import EXIT_UNREACHABLE, CliError
from dtls_lite.errors import alert_name

_REFUSALS_FOR_UNREACHABLE = 2  # ICMP port unreachable twice, never an answer: nobody listens

_CT_CID = 25  # tls12_cid (RFC 9146 4); CID length is not on the wire, the connection knows it
_CT_NAMES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData",
             _CT_CID: "CID record"}
_HT_NAMES = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest",
             11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest",
             14: "ServerHelloDone", 15: "CertificateVerify", 16: "ClientKeyExchange",
             20: "Finished"}


# ---- describing a datagram -------------------------------------------------------------------

def describe_datagram(d, cid_len=0):
    """One short text per record of a datagram: handshake message names with message_seq and
    size (fragments marked), ChangeCipherSpec, alerts; protected records by type and size."""
    out = []
    off = 0
    while off < len(d) and len(out) < 64:
        hlen = rl.HEADER_LEN + (cid_len if d[off] == _CT_CID else 0)
        if off + hlen > len(d):
            out.append("truncated record header (%d B)" % (len(d) - off))
            break
        ctype = d[off]
        epoch = (d[off + 3] << 8) | d[off + 4]
        length = (d[off + hlen - 2] << 8) | d[off + hlen - 1]
        end = off + hlen + length
        if d[off + 1] != 0xFE or end > len(d):
            out.append("not a DTLS record (%d B)" % (len(d) - off))
            break
        out.append(_describe_record(ctype, epoch, d[off + hlen:end]))
        off = end
    return out


def _describe_record(ctype, epoch, body):
    name = _CT_NAMES.get(ctype, "record type %d" % ctype)
    if epoch > 0 or ctype == _CT_CID:
        if ctype == rl.CT_HANDSHAKE:
            name = "Finished"  # the only handshake message we meet under epoch 1 keys
        return "%s (epoch %d, protected %d B)" % (name, epoch, len(body))
    if ctype == rl.CT_HANDSHAKE:
        return _describe_handshake(body)
    if ctype == rl.CT_ALERT and len(body) == 2:
        return "Alert %s %s" % ("fatal" if body[0] == 2 else "warning", alert_name(body[1]))
    if ctype == rl.CT_CHANGE_CIPHER_SPEC:
        return name
    return "%s (%d B)" % (name, len(body))


def _describe_handshake(body):
    """The plaintext handshake messages of one record: "ClientHello #0 (79 B)", ..."""
    parts = []
    off = 0
    while off + 12 <= len(body) and len(parts) < 16:
        t = body[off]
        length = int.from_bytes(body[off + 1:off + 4], "big")
        mseq = (body[off + 4] << 8) | body[off + 5]
        foff = int.from_bytes(body[off + 6:off + 9], "big")
        flen = int.from_bytes(body[off + 9:off + 12], "big")
        text = "%s #%d (%d B" % (_HT_NAMES.get(t, "handshake type %d" % t), mseq, length)
        if foff or flen != length:
            text += ", fragment %d..%d" % (foff, foff + flen)
        parts.append(text + ")")
        off += 12 + flen
    return ", ".join(parts) or "empty handshake record"


# ---- the stderr voice ------------------------------------------------------------------------

class Tracer:
    """Notes (always) and the -v trace (time-stamped) on stderr. Set .client once the
    DTLSClient exists: the trace then reads its public state (wake decision, connection stats,
    CIDs) to annotate each datagram."""

    def __init__(self, o, stderr=None):
        self.o = o
        self.stderr = stderr if stderr is not None else sys.stderr
        self.client = None
        self._t0 = time.monotonic()
        self._heard = False  # any datagram from the server this run
        self._refused = 0
        self._seen = [None, 0, 0]  # [conn, retransmissions, records_dropped] last reported
        self._wake_shown = False

    def note(self, text):
        self.stderr.write("dtls-lite: %s\n" % text)
        self.stderr.flush()

    def trace(self, text):
        if self.o.verbose:
            self.stderr.write("%8.1f ms  %s\n" % ((time.monotonic() - self._t0) * 1000, text))
            self.stderr.flush()

    def wake(self):
        """What the wake policy chose, once, before the first datagram it causes."""
        c = self.client
        if self.o.state and c.wake_action is not None and not self._wake_shown:
            self._wake_shown = True
            self.trace("state: %s (%s)" % (c.wake_action, c.wake_reason))

    def before_io(self):
        """Report what the connection did with the last datagram (drops) since the last I/O."""
        if self.client is None or not self.o.verbose:
            return
        self.wake()
        st = self._stats()
        if st.records_dropped > self._seen[2]:
            self.trace("   dropped %d record(s): not authentic, replayed, or not expected now"
                       % (st.records_dropped - self._seen[2]))
            self._seen[2] = st.records_dropped

    def _stats(self):
        """Stats of the adapter's current connection (request() may replace it)."""
        conn = self.client.conn
        if conn is not self._seen[0]:
            self._seen = [conn, 0, 0]
        return conn.stats

    def on_datagram(self, arrow, data):
        """A datagram went out ('>') or came in ('<')."""
        if arrow == "<":
            self._heard = True
            self._refused = 0
        if not self.o.verbose or self.client is None:
            return
        st = self._stats()
        conn = self.client.conn
        note = ""
        if arrow == ">":
            if st.retransmissions > self._seen[1]:
                note = "retransmission %d: " % st.retransmissions
                self._seen[1] = st.retransmissions
            cid = len(conn.write_cid or b"")
        else:
            cid = len(conn.read_cid or b"")
        self.trace("%s %4d B  %s%s" % (arrow, len(data), note, ", ".join(describe_datagram(data, cid))))

    def on_error(self, e):
        """A send or receive failed; CliError (exit 6) once the server is plainly unreachable."""
        if e.args and e.args[0] == errno.ECONNREFUSED:
            self._refused += 1
            self.trace("!  ICMP port unreachable (%d)" % self._refused)
            if not self._heard and self._refused >= _REFUSALS_FOR_UNREACHABLE:
                raise CliError(EXIT_UNREACHABLE, "%s port %d is unreachable: ICMP port unreachable "
                               "%d times and no answer; is a DTLS server listening there?"
                               % (self.o.host, self.o.port, self._refused))
        elif not (isinstance(e, socket.timeout) or (e.args and e.args[0] in (errno.EAGAIN, errno.ETIMEDOUT))):
            self.trace("!  %s" % e)


# ---- the socket DTLSClient gets (socket_factory=) --------------------------------------------

class TracingSocket:
    """A UDP socket that shows the Tracer every datagram and failure; every other call
    (bind, connect, settimeout, close, getsockname) goes to the real socket."""

    def __init__(self, sock, tracer):
        self._sock = sock
        self._tracer = tracer

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def send(self, data):
        self._tracer.before_io()
        try:
            n = self._sock.send(data)
        except OSError as e:
            self._tracer.on_error(e)
            raise
        self._tracer.on_datagram(">", data)
        return n

    def recv(self, size):
        self._tracer.before_io()
        try:
            data = self._sock.recv(size)
        except OSError as e:
            self._tracer.on_error(e)
            raise
        self._tracer.on_datagram("<", data)
        return data

    def recv_into(self, buf, size=0):
        self._tracer.before_io()
        try:
            n = self._sock.recv_into(buf, size)
        except OSError as e:
            self._tracer.on_error(e)
            raise
        self._tracer.on_datagram("<", memoryview(buf)[:n])
        return n
