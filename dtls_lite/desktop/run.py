# One `dtls-lite` run: pick the local address, open a DTLSClient whose socket the Tracer
# watches (socket_factory=, the client's public hook), connect as the wake policy says, send
# each input line as one record and print each reply, then suspend (--state) or close.
# It drives DTLSClient and Connection through their public API only; failures leave as
# exceptions that exits.error_code() maps to an exit status.
import errno
import os
import socket
import sys

from dtls_lite import client as dc
from dtls_lite import record as rl
from dtls_lite.desktop.exits import (EXIT_ALERT, EXIT_NO_REPLY, EXIT_OK, EXIT_UNREACHABLE,
                                     EXIT_USAGE, CliError, StateFileError)
from dtls_lite.desktop.trace import Tracer, TracingSocket
from dtls_lite.errors import DTLSError, UsageError


class Run:
    def __init__(self, o, stdin=None, stdout=None, stderr=None):
        self.o = o
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.tracer = Tracer(o, stderr)
        self.client = None
        self.sock = None  # the TracingSocket the client made through socket_factory
        self._keylogged = None

    def run(self):
        c = self._open()
        self.tracer.trace("%s -> %s, identity %r" % (self._local_text(), fmt_addr((self.o.host, self.o.port)),
                                                     self.o.identity.decode("utf-8", "replace")))
        try:
            self._connect(c)
            for n, data in enumerate(self._payloads(), 1):
                self._exchange(c, n, data)
        except BaseException:
            self._finish(c, failed=True)
            raise
        self._finish(c, failed=False)
        return EXIT_OK

    # -- open, connect, exchange, finish

    def _open(self):
        """The DTLSClient, not yet connected, on the chosen local address."""
        o = self.o
        store = None
        if o.state:
            from dtls_lite.store import FileStore
            check_state_writable(o.state)
            store = _GuardedStore(FileStore(o.state))
        bind = choose_bind(o, store, self.tracer)
        kwargs = dict(o.options)
        if store is not None:
            kwargs["store"] = store
        try:
            c = dc.DTLSClient(o.host, o.port, o.identity, o.psk, bind=bind, connect=False,
                              socket_factory=self._socket, **kwargs)
        except OSError as e:
            if isinstance(e, StateFileError):
                raise
            raise CliError(EXIT_UNREACHABLE, "cannot use local address %s: %s" % (
                fmt_addr(bind) if bind else "(any)", e.strerror or e))
        except TypeError as e:  # an option this library build does not have
            raise CliError(EXIT_USAGE, "this dtls_lite does not support an option given: %s" % e)
        self.client = self.tracer.client = c
        return c

    def _socket(self, family):
        """DTLSClient's socket_factory: a real UDP socket that the tracer watches."""
        self.sock = TracingSocket(socket.socket(family, socket.SOCK_DGRAM), self.tracer)
        return self.sock

    def _connect(self, c):
        o = self.o
        if o.force_resume:
            c.force_resume()
        c.connect()
        if c.state_error is not None:
            self.tracer.note("state file %s not used: %s"
                             % (o.state, getattr(c.state_error, "reason", c.state_error)))
        self.tracer.wake()
        self._connected(c)
        if o.send is None and getattr(o, "uri", None) is None and _isatty(self.stdin):
            self.tracer.note("connected; each line you type is sent as one record (Ctrl-D ends)")

    def _exchange(self, c, n, data):
        """Send record n; unless --reply-ms 0, wait for its reply and print it."""
        o = self.o
        limit = c.conn.max_data_size
        if len(data) > limit:
            raise CliError(EXIT_USAGE, "record %d is %d bytes; at most %d fit one record with "
                           "this MTU" % (n, len(data), limit))
        if o.reply_ms == 0:
            c.send(data)
            return
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
        """The records to send: each --send, else each non-empty stdin line."""
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
            self.tracer.trace("!  while closing: %s" % e)
        if self.o.verbose:
            st = c.conn.stats
            w = c.wire
            self.tracer.trace("done: %d datagrams / %d B sent, %d / %d B received; "
                              "retransmissions %d, records dropped %d"
                              % (w["datagrams_sent"], w["bytes_sent"], w["datagrams_received"],
                                 w["bytes_received"], st.retransmissions, st.records_dropped))

    # -- after each handshake: the trace line and the key log

    def _connected(self, c):
        st = c.conn.stats
        self._write_keylog(c)
        if not self.o.verbose:
            return
        if st.handshake_kind == "continued":
            self.tracer.trace("connected: continued the saved connection, no handshake; %s"
                              % rl.suite_name(c.conn.suite))
        else:
            self.tracer.trace("connected: %s handshake in %d ms, %s, cookie %s"
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

    def _local_text(self):
        try:
            return fmt_addr(self.sock.getsockname()[:2])
        except (OSError, AttributeError):
            return "?"


class _GuardedStore:
    """The FileStore, with its OSErrors marked as state-file errors (exit 7, not 6)."""

    def __init__(self, store):
        self._store = store

    def _call(self, what, *args):
        try:
            return getattr(self._store, what)(*args)
        except OSError as e:
            raise StateFileError(e.errno, "cannot %s state file %s: %s"
                                 % (what, self._store.path, e.strerror or e))

    def load(self):
        return self._call("load")

    def save(self, data):
        return self._call("save", data)

    def clear(self):
        return self._call("clear")


def check_state_writable(path):
    """StateFileError (exit 7) unless FileStore(path).save() can work: path is no directory
    and its directory takes a new file (path + ".tmp", what save() writes first, then renames
    onto path). Checked before the first datagram: found only after the handshake, the failure
    would leave the data unsent and the handshake's keys unsaved."""
    if os.path.isdir(path):
        raise StateFileError(errno.EISDIR, "cannot write state file %s: it is a directory" % path)
    tmp = path + ".tmp"  # never loaded (dtls_lite/store.py): a leftover may be overwritten
    try:
        with open(tmp, "wb"):
            pass
        os.remove(tmp)
    except OSError as e:
        raise StateFileError(e.errno, "cannot write state file %s: %s (checked before the "
                             "handshake: nothing was sent)" % (path, e.strerror or e))


# ---- the local address -----------------------------------------------------------------------

def choose_bind(o, store, tracer):
    """--bind as given; with --state and no port given, the saved local port again (the
    server knows the connection by address and port), or a fixed fresh one to save."""
    host = o.bind[0] if o.bind else ""
    if not host:  # ":PORT" or no --bind: any address of the server's family
        host = "::" if ":" in _resolved_ip(o.host, o.port) else "0.0.0.0"
    if store is None or o.bind_port_given:
        return (host, o.bind[1]) if o.bind else None
    port = 0
    saved = _saved_local_port(o, store)
    if saved is not None and _port_free(host, saved):
        port = saved
        tracer.trace("state: binding the saved local port %d again" % port)
    elif saved is not None:
        tracer.trace("state: saved local port %d is taken; a new port cannot continue" % saved)
    if port == 0:
        port = _free_port(host)
    return (host, port)


def _saved_local_port(o, store):
    """Local port recorded in the state file, or None (the adapter reports refusals)."""
    from dtls_lite import state
    try:
        blob = store.load()
        if blob is None:
            return None
        addr = dc.resolve(o.host, o.port)[1]
        st = state.load(state.state_key(o.psk, o.identity), blob,
                        (state.ip_bytes(addr[0]), addr[1]))
    except (DTLSError, UsageError):
        return None
    return st.local[1] if st.local else None


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


def fmt_addr(a):
    return ("[%s]:%d" if ":" in a[0] else "%s:%d") % (a[0], a[1])


def _isatty(f):
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False
