# `dtls-lite`: the desktop command line client (console script, also `python -m dtls_lite`).
#
# CPython only: it uses argparse, stdin/stdout and files, and never ships to a device (tools
# that deploy or measure the device package leave cli.py and __main__.py out). It still
# compiles and imports under MicroPython (argparse and traceback are imported lazily), since
# tests/test_mpy.py loads every module of the package.
#
# Like `openssl s_client -dtls1_2 -psk`, plus saved state (--state, dtls_lite.store.FileStore):
# the wake policy (dtls_lite/wake.py) continues the saved connection, resumes the session or
# does a full handshake. It drives DTLSClient and Connection through their public API; the one
# intrusion is a wrapper around the adapter's UDP socket that traces datagrams for -v and tells
# an unreachable server (ICMP port unreachable) from a silent one. It decodes record and
# handshake headers read-only; every protocol decision stays in the library.
import errno
import os
import socket
import sys
import time

from dtls_lite import __version__
from dtls_lite import client as dc
from dtls_lite import record as rl
from dtls_lite.errors import (AlertReceived, ConnectionClosed, DTLSError, HandshakeTimeout,
                              ProtocolError, UsageError, alert_name)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_HANDSHAKE = 3
EXIT_ALERT = 4
EXIT_NO_REPLY = 5
EXIT_UNREACHABLE = 6
EXIT_STATE = 7
EXIT_INTERRUPTED = 130

EXIT_CODES = """exit codes:
  0    done: every record was sent and (unless --reply-ms 0) answered
  1    internal error (a bug: -v shows the traceback)
  2    usage error: bad argument, unreadable --psk-file, line too long for one record
  3    handshake failed: no answer after the retransmissions, or --handshake-timeout-ms
  4    the server sent a fatal alert (e.g. wrong PSK or identity), broke the protocol,
       or closed the connection (close_notify) before answering
  5    no reply to a record within --reply-ms (the rest of the input is not sent)
  6    network error: server unreachable (ICMP port unreachable), name not resolved,
       --bind address not available
  7    the --state file could not be read or written
  130  interrupted (Ctrl-C)"""

DEFAULT_PORT = 5684  # coaps (RFC 7252 12.7): what a DTLS-PSK device usually talks to
DEFAULT_IDENTITY = "Client_identity"  # openssl s_client's default -psk_identity
DEFAULT_REPLY_MS = 3000
_REFUSALS_FOR_UNREACHABLE = 2  # ICMP port unreachable twice, never an answer: nobody listens

# Cipher suite names the user may give (upper case, '-' read as '_'); full IANA names and
# hex code points work too.
_CIPHER_ALIASES = {
    "CCM8": rl.SUITE_PSK_AES_128_CCM_8, "CCM_8": rl.SUITE_PSK_AES_128_CCM_8,
    "PSK_AES128_CCM8": rl.SUITE_PSK_AES_128_CCM_8,
    "CCM": rl.SUITE_PSK_AES_128_CCM, "PSK_AES128_CCM": rl.SUITE_PSK_AES_128_CCM,
    "GCM": rl.SUITE_PSK_AES_128_GCM_SHA256, "PSK_AES128_GCM_SHA256": rl.SUITE_PSK_AES_128_GCM_SHA256,
    "CBC": rl.SUITE_PSK_AES_128_CBC_SHA256, "PSK_AES128_CBC_SHA256": rl.SUITE_PSK_AES_128_CBC_SHA256,
}

_CT_CID = 25  # tls12_cid (RFC 9146 4); CID length is not on the wire, the connection knows it
_CT_NAMES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData",
             _CT_CID: "CID record"}
_HT_NAMES = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest",
             11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest",
             14: "ServerHelloDone", 15: "CertificateVerify", 16: "ClientKeyExchange",
             20: "Finished"}


class CliError(Exception):
    """A failure with its exit code and a one-line message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class _StateFileError(OSError):
    """The --state file failed (an OSError, so the adapter treats it as any store failure)."""


# ---- arguments -------------------------------------------------------------------------------

def build_parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="dtls-lite",
        description="DTLS 1.2 PSK client, like `openssl s_client -dtls1_2 -psk`, that can keep\n"
                    "its session and connection in a state file. Sends each line of stdin (or\n"
                    "each --send) as one record and prints each reply on stdout.",
        epilog=EXIT_CODES + """

state (--state FILE):
  The next run continues the saved connection (no handshake) when it uses the same local
  address and port: without --bind, the CLI binds the port saved in FILE again. Else it
  resumes the session (abbreviated handshake), else does a full one. At exit the state is
  saved and the socket closed WITHOUT close_notify so the server keeps the connection;
  --close sends close_notify instead (the file then keeps only the session).
  --force-resume resumes the session even when the connection could continue.

key log (--keylog FILE, default $SSLKEYLOGFILE): appends "CLIENT_RANDOM <hex> <hex>" lines
  (NSS key log format) after each handshake, so Wireshark/tshark decrypt a capture:
  tshark -r f.pcap -o tls.keylog_file:FILE -d udp.port==PORT,dtls -T fields -e data.data
  A continued connection (no handshake in the capture) cannot be decrypted that way.""",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", metavar="HOST[:PORT]",
                   help="server; IPv6 in brackets: [::1]:5684 (default port %d)" % DEFAULT_PORT)
    p.add_argument("--server", "-s", metavar="HOST[:PORT]", help="the server (instead of the positional)")
    p.add_argument("--identity", "--psk-identity", "-i", default=DEFAULT_IDENTITY, metavar="ID",
                   help="PSK identity (default %s)" % DEFAULT_IDENTITY)
    k = p.add_mutually_exclusive_group(required=True)
    k.add_argument("--psk", metavar="HEX", help="pre-shared key as hex")
    k.add_argument("--psk-file", metavar="FILE",
                   help="read the key from FILE: hex text (whitespace ignored) if that is all it "
                        "holds, else the raw bytes as they are; see --psk-format")
    p.add_argument("--psk-format", choices=("auto", "hex", "raw"), default="auto",
                   help="how to read --psk-file (default auto: hex if the file is only hex digits)")
    p.add_argument("--state", metavar="FILE", help="keep session and connection in FILE between runs")
    p.add_argument("--force-resume", action="store_true",
                   help="with --state: resume the session (abbreviated handshake), never continue")
    p.add_argument("--close", action="store_true",
                   help="with --state: end with close_notify (the file keeps only the session)")
    p.add_argument("--bind", "-b", metavar="ADDR[:PORT]",
                   help="local address and port; IPv6 in brackets: [::1]:5000; :PORT = any address")
    p.add_argument("--cipher", "-c", action="append", metavar="NAME",
                   help="cipher suite to offer, in order of preference; repeatable or comma "
                        "separated: CCM8, CCM, GCM, CBC, an IANA or OpenSSL name, or hex (C0A8). "
                        "Default: all this backend has, CCM8 first")
    p.add_argument("--mtu", type=_int_range(128, 16384), metavar="BYTES",
                   help="largest datagram (default 1200)")
    p.add_argument("--timeout-ms", type=_int_range(1, 60000), metavar="MS",
                   help="initial retransmission timeout, doubled on each retransmission (default 1000)")
    p.add_argument("--handshake-timeout-ms", type=_int_range(1, 3600000), metavar="MS",
                   help="give up a handshake after this long in all")
    p.add_argument("--retransmits", type=_int_range(0, 100), metavar="N",
                   help="retransmissions of a flight before giving up (default 6)")
    p.add_argument("--reply-ms", type=_int_range(0, 3600000), default=DEFAULT_REPLY_MS, metavar="MS",
                   help="wait this long for the reply to each record (default %d; 0: send "
                        "without waiting)" % DEFAULT_REPLY_MS)
    p.add_argument("--send", action="append", metavar="DATA",
                   help="send DATA as one record instead of reading stdin; repeatable")
    p.add_argument("--keylog", metavar="FILE", default=os.environ.get("SSLKEYLOGFILE") or None,
                   help="append NSS key log lines to FILE (default $SSLKEYLOGFILE)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="trace datagrams (messages, sizes, retransmissions, drops) and the "
                        "state decisions to stderr")
    p.add_argument("--version", action="version", version="dtls-lite " + __version__)
    return p


def _int_range(lo, hi):
    def parse(text):
        import argparse
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not an integer" % text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError("%d is not in %d..%d" % (v, lo, hi))
        return v
    return parse


def split_host_port(text, default_port):
    """("host", port) of "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 literal;
    port is default_port when absent. ValueError on nonsense."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("missing ']' in %r" % text)
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError("unexpected %r after ']'" % rest)
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a name, an IPv4 address, or an IPv6 literal without a port
        host, port = text, ""
    if port == "":
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("bad port %r" % port)
    return host, int(port)


def parse_ciphers(values):
    """Suite code points from --cipher values, in order, without duplicates."""
    out = []
    for v in values:
        for name in v.split(","):
            name = name.strip()
            if not name:
                continue
            key = name.upper().replace("-", "_")
            suite = _CIPHER_ALIASES.get(key)
            if suite is None:
                for code, info in rl.SUITES.items():
                    if info[0] == key:
                        suite = code
            if suite is None:
                h = key[2:] if key.startswith("0X") else key
                if len(h) == 4 and all(c in "0123456789ABCDEF" for c in h):
                    suite = int(h, 16)
            if suite is None:
                raise ValueError("unknown cipher %r (try CCM8, CCM, GCM, CBC or hex like C0A8)" % name)
            if suite not in rl.supported_suites():
                raise ValueError("cipher %s is not supported by this crypto backend"
                                 % rl.suite_name(suite))
            if suite not in out:
                out.append(suite)
    return out


def read_psk_file(path, fmt):
    with open(path, "rb") as f:
        data = f.read()
    text = b"".join(data.split())
    if text[:2] in (b"0x", b"0X"):
        text = text[2:]
    is_hex = len(text) > 0 and len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text)
    if fmt == "hex" or (fmt == "auto" and is_hex):
        if not is_hex:
            raise ValueError("%s does not hold a hex key" % path)
        return bytes.fromhex(text.decode())
    return data


class Options:
    """Checked settings (argparse gives strings; this is what the run uses)."""


def check_args(parser, a):
    """Options from argparse's namespace; parser.error() (exit 2) on a bad value."""
    o = Options()
    if a.target and a.server:
        parser.error("give the server once: positional HOST[:PORT] or --server")
    target = a.target or a.server
    if not target:
        parser.error("the server is required (HOST[:PORT] or --server)")
    try:
        o.host, o.port = split_host_port(target, DEFAULT_PORT)
        if not o.host or o.port == 0:
            raise ValueError("need a host and a port other than 0")
    except ValueError as e:
        parser.error("server %r: %s" % (target, e))
    o.bind = None
    o.bind_port_given = False
    if a.bind:
        try:
            bhost, bport = split_host_port(a.bind, 0)
        except ValueError as e:
            parser.error("--bind %r: %s" % (a.bind, e))
        o.bind = (bhost, bport)
        o.bind_port_given = bport != 0
    o.identity = a.identity.encode()
    if not 1 <= len(o.identity) <= 128:
        parser.error("--identity must be 1..128 bytes")
    if a.psk is not None:
        try:
            o.psk = bytes.fromhex(a.psk[2:] if a.psk[:2] in ("0x", "0X") else a.psk)
        except ValueError:
            parser.error("--psk must be hex, e.g. 73656372657450534b")
    else:
        try:
            o.psk = read_psk_file(a.psk_file, a.psk_format)
        except (OSError, ValueError) as e:
            parser.error("--psk-file: %s" % (getattr(e, "strerror", None) and
                                            "%s: %s" % (a.psk_file, e.strerror) or e))
    if not 1 <= len(o.psk) <= 64:
        parser.error("the PSK must be 1..64 bytes (got %d)" % len(o.psk))
    if (a.force_resume or a.close) and not a.state:
        parser.error("--force-resume and --close need --state FILE")
    o.options = {}
    if a.cipher:
        try:
            o.options["suites"] = parse_ciphers(a.cipher)
        except ValueError as e:
            parser.error("--cipher: %s" % e)
        if not o.options["suites"]:
            parser.error("--cipher: no cipher named")
    if a.mtu is not None:
        o.options["mtu"] = a.mtu
    if a.timeout_ms is not None:
        o.options["initial_timeout_ms"] = a.timeout_ms
    if a.retransmits is not None:
        o.options["max_retransmits"] = a.retransmits
    if a.handshake_timeout_ms is not None:
        o.options["handshake_timeout_ms"] = a.handshake_timeout_ms
    o.send = [s.encode() for s in a.send] if a.send is not None else None
    for name in ("state", "force_resume", "close", "reply_ms", "keylog", "verbose"):
        setattr(o, name, getattr(a, name))
    return o


# ---- tracing (-v) ----------------------------------------------------------------------------

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
    if ctype == rl.CT_ALERT and len(body) == 2:
        return "Alert %s %s" % ("fatal" if body[0] == 2 else "warning", alert_name(body[1]))
    if ctype == rl.CT_CHANGE_CIPHER_SPEC:
        return name
    return "%s (%d B)" % (name, len(body))


class _Wire:
    """Stands in for the adapter's UDP socket: passes every call through, traces datagrams,
    and raises CliError once ICMP port unreachable came twice and the server never spoke."""

    def __init__(self, sock, run):
        self._sock = sock
        self._run = run

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def send(self, data):
        self._run.before_io()
        try:
            n = self._sock.send(data)
        except OSError as e:
            self._run.on_error(e)
            raise
        self._run.on_datagram(">", data)
        return n

    def recv(self, size):
        self._run.before_io()
        try:
            data = self._sock.recv(size)
        except OSError as e:
            self._run.on_error(e)
            raise
        self._run.on_datagram("<", data)
        return data

    def recv_into(self, buf, size=0):
        self._run.before_io()
        try:
            n = self._sock.recv_into(buf, size)
        except OSError as e:
            self._run.on_error(e)
            raise
        self._run.on_datagram("<", bytes(memoryview(buf)[:n]))
        return n


class _GuardedStore:
    """The FileStore, with its OSErrors marked as state-file errors (exit 7, not 6)."""

    def __init__(self, store):
        self._store = store

    def _call(self, what, *args):
        try:
            return getattr(self._store, what)(*args)
        except OSError as e:
            raise _StateFileError(e.errno, "cannot %s state file %s: %s"
                                  % (what, self._store.path, e.strerror or e))

    def load(self):
        return self._call("load")

    def save(self, data):
        return self._call("save", data)

    def clear(self):
        return self._call("clear")


# ---- the run ---------------------------------------------------------------------------------

class Run:
    def __init__(self, o, stdin=None, stdout=None, stderr=None):
        self.o = o
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr
        self.client = None
        self._t0 = time.monotonic()
        self._heard = False  # any datagram from the server this run
        self._refused = 0
        self._seen = [None, 0, 0]  # [conn, retransmissions, records_dropped] last reported
        self._keylogged = None
        self._wake_shown = False

    # -- messages
    def note(self, text):
        self.stderr.write("dtls-lite: %s\n" % text)
        self.stderr.flush()

    def trace(self, text):
        if self.o.verbose:
            self.stderr.write("%8.1f ms  %s\n" % ((time.monotonic() - self._t0) * 1000, text))
            self.stderr.flush()

    # -- socket hooks (_Wire)
    def before_io(self):
        """Report what the connection did with the last datagram (drops) since the last I/O."""
        if self.client is None or not self.o.verbose:
            return
        self._trace_wake()
        st = self._stats()
        if st.records_dropped > self._seen[2]:
            self.trace("   dropped %d record(s): not authentic, replayed, or not expected now"
                       % (st.records_dropped - self._seen[2]))
            self._seen[2] = st.records_dropped

    def _trace_wake(self):
        """What the wake policy chose, once, before the first datagram it causes."""
        c = self.client
        if self.o.state and c.wake_action is not None and not self._wake_shown:
            self._wake_shown = True
            self.trace("state: %s (%s)" % (c.wake_action, c.wake_reason))

    def _stats(self):
        """Stats of the adapter's current connection (request() may replace it)."""
        conn = self.client.conn
        if conn is not self._seen[0]:
            self._seen = [conn, 0, 0]
        return conn.stats

    def on_datagram(self, arrow, data):
        if arrow == "<":
            self._heard = True
            self._refused = 0
        if not self.o.verbose:
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
        if e.args and e.args[0] == errno.ECONNREFUSED:
            self._refused += 1
            self.trace("!  ICMP port unreachable (%d)" % self._refused)
            if not self._heard and self._refused >= _REFUSALS_FOR_UNREACHABLE:
                raise CliError(EXIT_UNREACHABLE, "%s port %d is unreachable: ICMP port unreachable "
                               "%d times and no answer; is a DTLS server listening there?"
                               % (self.o.host, self.o.port, self._refused))
        elif not (isinstance(e, socket.timeout) or (e.args and e.args[0] in (errno.EAGAIN, errno.ETIMEDOUT))):
            self.trace("!  %s" % e)

    # -- the work
    def run(self):
        o = self.o
        store = None
        if o.state:
            from dtls_lite.store import FileStore
            store = _GuardedStore(FileStore(o.state))
        bind = self._choose_bind(store)
        kwargs = dict(o.options)
        if store is not None:
            kwargs["store"] = store
        try:
            c = dc.DTLSClient(o.host, o.port, o.identity, o.psk, bind=bind, connect=False, **kwargs)
        except OSError as e:
            if isinstance(e, _StateFileError):
                raise
            raise CliError(EXIT_UNREACHABLE, "cannot use local address %s: %s" % (
                _fmt_addr(bind) if bind else "(any)", e.strerror or e))
        except TypeError as e:  # an option this library build does not have
            raise CliError(EXIT_USAGE, "this dtls_lite does not support an option given: %s" % e)
        self.client = c
        c._sock = _Wire(c._sock, self)  # the adapter keeps one socket for its lifetime
        self.trace("%s -> %s, identity %r" % (_local_text(c), _fmt_addr((o.host, o.port)),
                                             o.identity.decode("utf-8", "replace")))
        try:
            self._session(c)
        except BaseException:
            self._finish(c, failed=True)
            raise
        self._finish(c, failed=False)
        return EXIT_OK

    def _choose_bind(self, store):
        """--bind as given; with --state and no port given, the saved local port again (the
        server knows the connection by address and port), or a fixed fresh one to save."""
        o = self.o
        host = o.bind[0] if o.bind else ""
        if not host:  # ":PORT" or no --bind: any address of the server's family
            host = "::" if ":" in _resolved_ip(o.host, o.port) else "0.0.0.0"
        if store is None or o.bind_port_given:
            return (host, o.bind[1]) if o.bind else None
        port = 0
        saved = self._saved_local(store)
        if saved is not None and _port_free(host, saved):
            port = saved
            self.trace("state: binding the saved local port %d again" % port)
        elif saved is not None:
            self.trace("state: saved local port %d is taken; a new port cannot continue" % saved)
        if port == 0:
            port = _free_port(host)
        return (host, port)

    def _saved_local(self, store):
        """Local port recorded in the state file, or None (the adapter reports refusals)."""
        from dtls_lite import state
        try:
            blob = store.load()
            if blob is None:
                return None
            fam, addr = dc.resolve(self.o.host, self.o.port)
            st = state.load(state.state_key(self.o.psk, self.o.identity), blob,
                            (state.ip_bytes(addr[0]), addr[1]))
        except (DTLSError, UsageError):
            return None
        return st.local[1] if st.local else None

    def _session(self, c):
        o = self.o
        if o.force_resume:
            c.force_resume()
        c.connect()
        if c.state_error is not None:
            self.note("state file %s not used: %s" % (o.state, getattr(c.state_error, "reason", c.state_error)))
        self._trace_wake()
        self._connected(c)
        if o.send is None and _isatty(self.stdin):
            self.note("connected; each line you type is sent as one record (Ctrl-D ends)")
        for n, data in enumerate(self._payloads(), 1):
            limit = c.conn.max_data_size
            if len(data) > limit:
                raise CliError(EXIT_USAGE, "record %d is %d bytes; at most %d fit one record with "
                               "this MTU" % (n, len(data), limit))
            if o.reply_ms == 0:
                c.send(data)
                continue
            kind = c.conn.stats.handshake_kind
            reply = c.request(data, o.reply_ms)
            if c.conn.stats.handshake_kind != kind or c.conn.stats.handshake_ms is None:
                self._connected(c)  # request() fell back to a handshake
            if reply is None:
                raise CliError(EXIT_NO_REPLY, "no reply to record %d within %d ms" % (n, o.reply_ms))
            if reply == b"":
                raise CliError(EXIT_ALERT, "the server closed the connection (close_notify)")
            self.stdout.write(reply if reply.endswith(b"\n") else reply + b"\n")
            self.stdout.flush()

    def _payloads(self):
        if self.o.send is not None:
            for d in self.o.send:
                yield d
            return
        while True:
            line = self.stdin.readline()
            if not line:
                return
            line = line.rstrip(b"\r\n")
            if line:  # an empty line sends nothing
                yield line

    def _connected(self, c):
        st = c.conn.stats
        self._write_keylog(c)
        if not self.o.verbose:
            return
        if st.handshake_kind == "continued":
            self.trace("connected: continued the saved connection, no handshake; %s"
                       % rl.suite_name(c.conn.suite))
        else:
            self.trace("connected: %s handshake in %d ms, %s, cookie %s"
                       % (st.handshake_kind, st.handshake_ms, rl.suite_name(c.conn.suite),
                          "yes" if st.hello_verify else "no"))

    def _write_keylog(self, c):
        if not self.o.keylog:
            return
        line = c.conn.keylog_line()
        if line is None or line == self._keylogged:
            return  # a continued connection: no client random in this run
        try:
            with open(self.o.keylog, "a") as f:
                f.write(line + "\n")
        except OSError as e:
            raise CliError(EXIT_USAGE, "--keylog %s: %s" % (self.o.keylog, e.strerror or e))
        self._keylogged = line

    def _finish(self, c, failed):
        """suspend() with --state (the next run continues), else close_notify."""
        try:
            if self.o.state and not self.o.close:
                c.suspend()
            else:
                c.close()
        except (OSError, DTLSError, UsageError) as e:
            if not failed:
                raise
            self.trace("!  while closing: %s" % e)
        if self.o.verbose:
            st = c.conn.stats
            w = c.wire
            self.trace("done: %d datagrams / %d B sent, %d / %d B received; retransmissions %d, "
                       "records dropped %d" % (w["datagrams_sent"], w["bytes_sent"],
                                               w["datagrams_received"], w["bytes_received"],
                                               st.retransmissions, st.records_dropped))


def _isatty(f):
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_addr(a):
    return ("[%s]:%d" if ":" in a[0] else "%s:%d") % (a[0], a[1])


def _local_text(c):
    try:
        return _fmt_addr(c._sock.getsockname()[:2])
    except (OSError, AttributeError):
        return "?"


def _resolved_ip(host, port):
    try:
        return dc.resolve(host, port)[1][0]
    except UsageError:
        return host


def _port_free(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _free_port(host):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    except OSError:
        return 0  # let the adapter's bind() report the address
    finally:
        s.close()


def error_code(e):
    """(exit code, message) of an exception from a run."""
    if isinstance(e, CliError):
        return e.code, str(e)
    if isinstance(e, _StateFileError):
        return EXIT_STATE, e.strerror if isinstance(e.strerror, str) else str(e)
    if isinstance(e, HandshakeTimeout):
        return EXIT_HANDSHAKE, "handshake failed: %s" % e
    if isinstance(e, AlertReceived):
        return EXIT_ALERT, "%s" % e
    if isinstance(e, ProtocolError):
        return EXIT_ALERT, "protocol error (we sent alert %s): %s" % (alert_name(e.alert), e)
    if isinstance(e, ConnectionClosed):
        return EXIT_ALERT, "connection closed: %s" % e
    if isinstance(e, UsageError):
        msg = str(e)
        if msg.startswith("cannot resolve"):
            return EXIT_UNREACHABLE, msg
        return EXIT_USAGE, msg
    if isinstance(e, OSError):
        return EXIT_UNREACHABLE, "network error: %s" % (e.strerror or e)
    return EXIT_INTERNAL, "internal error: %s: %s (run with -v for the traceback)" % (type(e).__name__, e)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with argparse's usage message on a bad argument
    o = check_args(parser, args)
    r = Run(o)
    try:
        return r.run()
    except KeyboardInterrupt:
        r.note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_INTERNAL  # stdout went away (e.g. `| head -1`): nothing left to say
    except Exception as e:
        code, msg = error_code(e)
        if o.verbose and code == EXIT_INTERNAL:
            import traceback
            traceback.print_exc()
        r.note(msg)
        return code
