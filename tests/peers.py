"""Real DTLS 1.2 PSK servers on loopback, for interop tests (CPython only).

Each server is a context manager that takes a free UDP port (free_udp_port: a block of ports
per test process, so parallel pytest-xdist workers never collide), starts the server, waits (at most
READY_TIMEOUT s) until its socket is bound, yields a `Server` and stops it by PID on exit.
A missing binary raises `PeerUnavailable`, whose message names the install command; the pytest
fixtures in tests/conftest.py turn it into a test failure, never a skip.

Behaviour common to all three servers, measured with their own reference clients:
- They serve ONE association at a time. A client that goes away without close_notify (killed,
  deep sleep) leaves the server stuck on that association: new ClientHellos, from any port, are
  not answered (seen for > 80 s on gnutls-serv and s_server; ssl_server2 recovers only with
  `read_timeout=`). After a close_notify they serve the next client. Use a fresh server per test.
- They always send HelloVerifyRequest unless told otherwise (gnutls `cookie=False`,
  ssl_server2 `cookies=False`).

This module never talks to anything but loopback and never leaves a process running.
"""
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_BIN = os.path.join(ROOT, ".peers", "bin")
INSTALL_HINT = "run `make peers` (tools/install_peers.sh) to install the DTLS peers"

PSK_HEX = "73656372657450534b"  # b"secretPSK"
IDENTITY = "Client_identity"
OPENSSL_CIPHERS = "PSK-AES128-CCM8:PSK-AES128-CBC-SHA256:PSK-AES128-GCM-SHA256:@SECLEVEL=0"
GNUTLS_PRIORITY = ("NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8"
                   ":+AES-128-CCM:+AES-128-GCM:+AES-128-CBC:-MAC-ALL:+AEAD:+SHA256")
MBEDTLS_SUITE = "TLS-PSK-WITH-AES-128-CCM-8"
# What ssl_server2 answers to the first application record of each exchange (%s = suite name).
MBEDTLS_RESPONSE = ("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n"
                    "<h2>Mbed TLS Test Server</h2>\r\n"
                    "<p>Successful connection using: %s</p>\r\n")

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 3.0


class PeerUnavailable(RuntimeError):
    """A server binary is missing or the server did not come up."""


def find_binary(name):
    """Path of a peer binary: .peers/bin first (Mbed TLS), then PATH (openssl, gnutls)."""
    local = os.path.join(PEERS_BIN, name)
    if os.access(local, os.X_OK):
        return local
    path = shutil.which(name)
    if path is None:
        raise PeerUnavailable("DTLS peer %r not found (looked in .peers/bin and PATH): %s"
                              % (name, INSTALL_HINT))
    return path


# ---- ports ---------------------------------------------------------------------------------
# Servers and the fixed local addresses of clients take their ports from a block of PORT_BLOCK
# ports below the kernel's ephemeral range, which this process claims with an flock on a file
# in the temp directory and holds until it exits. pytest-xdist workers (and pytest sessions
# running side by side) each hold a block of their own, so no two of them hand out the same
# port; and no socket bound to port 0 (relays, clients) is ever given one of these ports, so a
# server that restarts finds its port free. Within its block a process hands ports out in turn
# (a port comes back after PORT_BLOCK others), skipping any that is in use.
PORT_FIRST = 20000
PORT_BLOCK = 256
_PORTS = {"file": None, "base": 0, "next": 0}
_PORTS_LOCK = threading.Lock()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def worker_index():
    """0 without pytest-xdist; N on its worker gwN (where the search for a free block starts)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def _claim_block():
    import fcntl
    blocks = (min(_ephemeral_low(), 32768) - PORT_FIRST) // PORT_BLOCK
    if blocks < 1:
        raise PeerUnavailable("no room for test ports below the ephemeral range (%d)" % _ephemeral_low())
    folder = os.path.join(tempfile.gettempdir(), "dtls-lite-ports")
    os.makedirs(folder, exist_ok=True)
    for i in range(blocks):
        b = (worker_index() + i) % blocks
        f = open(os.path.join(folder, "block-%d" % b), "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _PORTS.update(file=f, base=PORT_FIRST + b * PORT_BLOCK, next=0)
        return
    raise PeerUnavailable("all %d blocks of test ports are held by other processes" % blocks)


def _bindable(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_udp_port(host="127.0.0.1", count=1):
    """A UDP port free on `host` (the first of `count` consecutive ones), from this process's
    block: no other test process is handed it, and nothing binding port 0 gets it."""
    with _PORTS_LOCK:
        if _PORTS["file"] is None:
            _claim_block()
        for _ in range(PORT_BLOCK):
            off = _PORTS["next"]
            if off + count > PORT_BLOCK:
                off = 0
            _PORTS["next"] = (off + count) % PORT_BLOCK
            port = _PORTS["base"] + off
            if all(_bindable(host, port + k) for k in range(count)):
                return port
    raise PeerUnavailable("no free UDP port left in %d..%d on %s"
                          % (_PORTS["base"], _PORTS["base"] + PORT_BLOCK - 1, host))


def _udp_port_bound_by(pid, port):
    """True once process `pid` holds a UDP socket bound to `port` (Linux /proc)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    try:
        for fd in os.listdir(fd_dir):
            try:
                link = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return False
    want = ":%04X" % port
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(want) and fields[9] in inodes:
                        return True
        except OSError:
            pass
    return False


class Server:
    """A running peer: `.name`, `.host`, `.port`, `.psk_hex`, `.identity`, `.output()`."""

    def __init__(self, name, host, port, psk_hex, identity):
        self.name = name
        self.host = host
        self.port = port
        self.psk_hex = psk_hex
        self.identity = identity
        self.argv = None
        self.proc = None
        self._echo_stdout = False
        self._ready_text = None
        self._log = []
        self._lock = threading.Lock()
        self._threads = []

    @property
    def address(self):
        return (self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        """Everything the server printed so far (str; for s_server also the echoed data)."""
        with self._lock:
            return b"".join(self._log).decode("utf-8", "replace")

    def wait_for_output(self, text, timeout=5.0):
        """Wait until `text` appears in output(); return True, or False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            time.sleep(0.02)
        return text in self.output()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def __repr__(self):
        return "<%s DTLS server %s port %d pid %s>" % (
            self.name, self.host, self.port, self.proc.pid if self.proc else None)

    # -- internals ------------------------------------------------------------------------
    def _add_log(self, data):
        with self._lock:
            self._log.append(data)

    def _reader(self, fileobj, echo_to=None):
        fd = fileobj.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            if echo_to is None:
                self._add_log(data)
                continue
            self._add_log(b"[echo %d bytes] %r\n" % (len(data), data))
            try:
                os.write(echo_to.fileno(), data)
            except OSError:
                break

    def _start_thread(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def restart(self, timeout=READY_TIMEOUT):
        """Stop the server (by PID) and start it again with the same argv on the SAME port,
        waiting until it is ready: a "server restarted" scenario. Everything it knew (sessions,
        associations) is gone; output() keeps the old log followed by the new one."""
        self._stop()
        self._add_log(b"\n[restart]\n")
        deadline = time.monotonic() + timeout
        while True:  # the port was just freed; retry if another socket grabbed it meanwhile
            self._threads = []
            since = len(self.output())
            self._spawn(self.argv, echo_stdout=self._echo_stdout)
            if self._wait_ready(self._ready_text, max(0.5, deadline - time.monotonic()), since):
                return
            self._stop()
            if time.monotonic() >= deadline:
                raise PeerUnavailable("%s server did not come back on port %d; output:\n%s"
                                      % (self.name, self.port, self.output()[-3000:]))
            time.sleep(0.1)

    def _spawn(self, argv, echo_stdout=False):
        self.argv = argv
        self._echo_stdout = echo_stdout
        if echo_stdout:
            # s_server -quiet writes only received application data to stdout and sends what
            # it reads on stdin: loop one into the other. Its log goes to stderr.
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0, cwd=ROOT)
            self._start_thread(self._reader, self.proc.stdout, self.proc.stdin)
            self._start_thread(self._reader, self.proc.stderr)
        else:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, bufsize=0, cwd=ROOT)
            self._start_thread(self._reader, self.proc.stdout)

    def _wait_ready(self, ready_text=None, timeout=READY_TIMEOUT, since=0):
        # `since`: look for ready_text only in output after that offset (restart())
        self._ready_text = ready_text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if _udp_port_bound_by(self.proc.pid, self.port) and (
                    ready_text is None or ready_text in self.output()[since:]):
                return True
            time.sleep(0.02)
        return False

    def _stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        for t in self._threads:
            t.join(1.0)


@contextlib.contextmanager
def _serve(name, host, psk_hex, identity, make_argv, echo_stdout=False, ready_text=None, ports=1):
    """Start a server on a free port (3 tries against port races); stop it on exit. `ports`:
    how many consecutive ports it binds; its .port is the last of them."""
    last = None
    for _ in range(3):
        srv = Server(name, host, free_udp_port(host, ports) + ports - 1, psk_hex, identity)
        try:
            srv._spawn(make_argv(srv.port), echo_stdout=echo_stdout)
            if srv._wait_ready(ready_text):
                break
            last = srv.output()
        except BaseException:
            srv._stop()
            raise
        srv._stop()
    else:
        raise PeerUnavailable("%s server did not become ready on %s within %.0f s; output:\n%s"
                              % (name, host, READY_TIMEOUT, last))
    try:
        yield srv
    finally:
        srv._stop()


def _host_port(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


@contextlib.contextmanager
def openssl_server(ciphers=OPENSSL_CIPHERS, psk_hex=PSK_HEX, identity=IDENTITY,
                   host="127.0.0.1", extra=()):
    """OpenSSL 3.0 `s_server -dtls1_2 -nocert -psk ... -no_ticket -quiet`, an ECHO server.

    Application data is echoed byte for byte (binary safe): s_server -quiet prints only the
    received data on stdout (nothing else; log and errors go to stderr) and a pump thread
    writes it back to its stdin, which s_server sends as one record per read. With -quiet,
    lines such as "Q" or "r" are NOT interpreted as commands. output() shows the stderr log
    and "[echo N bytes] ..." lines. Always sends HelloVerifyRequest (also on resumption),
    always negotiates extended master secret; no -listen (a resumption from a new port works
    once the previous association ended with close_notify). After close_notify it accepts
    the next client; a client that vanishes without close_notify blocks it for good.
    Caveat: data echoed after its client closed would go to the next client.
    """
    binary = find_binary("openssl")
    argv = lambda port: [binary, "s_server", "-dtls1_2", "-accept", _host_port(host, port),
                         "-nocert", "-psk", psk_hex, "-psk_identity", identity,
                         "-cipher", ciphers, "-no_ticket", "-quiet"] + list(extra)
    with _serve("openssl", host, psk_hex, identity, argv, echo_stdout=True) as srv:
        yield srv


@contextlib.contextmanager
def gnutls_server(cookie=True, priority=GNUTLS_PRIORITY, psk_hex=PSK_HEX, identity=IDENTITY,
                  host="127.0.0.1", pskhint=None, extra=()):
    """GnuTLS 3.7 `gnutls-serv --udp --pskpasswd FILE --noticket --echo`, an ECHO server.

    Echoes each application record back. gnutls-serv has no bind-address option: it binds
    the port on 0.0.0.0 and :: (tests still only talk to `host`, a loopback address). It serves
    one association at a time (it connects its socket to the client); `cookie=False` adds
    --nocookie (no HelloVerifyRequest); `pskhint` sends a ServerKeyExchange identity hint.
    output() is its stdout, e.g. "*** Processing 4 bytes command: ...".
    """
    binary = find_binary("gnutls-serv")
    tmpdir = tempfile.mkdtemp(prefix="dtls-lite-gnutls-")
    try:
        pskfile = os.path.join(tmpdir, "psk.passwd")
        with open(pskfile, "w") as f:
            f.write("%s:%s\n" % (identity, psk_hex))

        def argv(port):
            a = [binary, "--udp", "-p", str(port), "--pskpasswd", pskfile,
                 "--priority", priority, "--noticket", "--echo"]
            if not cookie:
                a.append("--nocookie")
            if pskhint is not None:
                a += ["--pskhint", pskhint]
            return a + list(extra)

        with _serve("gnutls", host, psk_hex, identity, argv) as srv:
            yield srv
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def mbedtls_server(suite=MBEDTLS_SUITE, cid=True, psk_hex=PSK_HEX, identity=IDENTITY,
                   host="127.0.0.1", cookies=True, exchanges=None, read_timeout_ms=None,
                   extra=()):
    """Mbed TLS 3.6 `ssl_server2 dtls=1 ... tickets=0` (built by `make peers`), NOT an echo.

    For each exchange it reads ONE application record (any content) and answers with the
    fixed text MBEDTLS_RESPONSE % suite, e.g. for CCM_8 these 139 bytes:
      "HTTP/1.0 200 OK\\r\\nContent-Type: text/html\\r\\n\\r\\n<h2>Mbed TLS Test Server</h2>\\r\\n"
      "<p>Successful connection using: TLS-PSK-WITH-AES-128-CCM-8</p>\\r\\n"
    After `exchanges` request/response pairs (default 1) it sends close_notify, forgets the
    connection (the session stays in its cache for resumption by session ID) and waits for the
    next client; it keeps serving clients one after another. `cid=True` negotiates a DTLS
    Connection ID (RFC 9146) with server CID be:ef:01; its UDP socket is connected to the
    client once the handshake starts, so a client at a new address is not routed to the old
    connection. `read_timeout_ms` makes it drop a silent client (default: wait forever).
    `suite=None` enables all its suites. `extra` adds raw `key=value` options
    (e.g. "debug_level=1", "response_size=10", "nss_keylog=1").
    Ready when its log says "Waiting for a remote connection".
    """
    binary = find_binary("ssl_server2")

    def argv(port):
        a = [binary, "dtls=1", "server_addr=%s" % host, "server_port=%d" % port,
             "psk=%s" % psk_hex, "psk_identity=%s" % identity, "tickets=0"]
        if cid:
            a += ["cid=1", "cid_val=beef01"]
        if suite:
            a.append("force_ciphersuite=%s" % suite)
        if not cookies:
            a.append("cookies=0")
        if exchanges is not None:
            a.append("exchanges=%d" % exchanges)
        if read_timeout_ms is not None:
            a.append("read_timeout=%d" % read_timeout_ms)
        return a + list(extra)

    with _serve("mbedtls", host, psk_hex, identity, argv,
                ready_text="Waiting for a remote connection") as srv:
        yield srv


@contextlib.contextmanager
def pion_server(cookie=True, psk_hex=PSK_HEX, identity=IDENTITY, host="127.0.0.1", pskhint=None,
                hstimeout=None, noems=False):
    """pion/dtls 2.2 (Go) PSK ECHO server, tools/pion_server/main.go (built by `make peers`).

    Offers CCM_8, CCM, GCM and CBC-SHA256, requires extended master secret (`noems=True`
    accepts clients without it), answers unknown identities with a fatal alert. Unlike the
    others it serves many associations at once (each handshake in its own goroutine) and keeps
    sessions in memory: it resumes by session ID, without HelloVerifyRequest on resumption.
    `cookie=False` skips HelloVerifyRequest on full handshakes; `pskhint` sends a
    ServerKeyExchange hint; `hstimeout` (seconds, default 10) bounds each handshake.
    output() logs "session stored|resumed|unknown <id hex>", "handshake done from ADDR session
    <id hex>", "echo N bytes", "handshake failed from ADDR: ..." and "association ended: ...".
    """
    binary = find_binary("pion_server")

    def argv(port):
        a = [binary, "-addr", _host_port(host, port), "-psk", psk_hex, "-identity", identity]
        if not cookie:
            a.append("-nocookie")
        if pskhint is not None:
            a += ["-hint", pskhint]
        if hstimeout is not None:
            a += ["-hstimeout", "%dms" % int(hstimeout * 1000)]
        if noems:
            a.append("-noems")
        return a

    with _serve("pion", host, psk_hex, identity, argv, ready_text="listening on") as srv:
        yield srv


@contextlib.contextmanager
def coap_server(backend="openssl", psk_hex=PSK_HEX, identity=IDENTITY, host="127.0.0.1", resources=0,
                verbose=4):
    """libcoap 4.3 `coap-server-<backend>` (openssl or gnutls): a CoAP server whose coaps
    (CoAP over DTLS, RFC 7252 9) port is .port; it accepts any identity with the PSK.
    Answers GET /time with 2.05 Content and the time, GET /.well-known/core with its links.
    resources=N (`-d N`): a PUT or POST to an unknown path creates a resource, N at most.
    verbose=7 logs every CoAP message ("v:1 t:CON c:PUT i:04b4 {01020304} [ Uri-Path:x ] :: 'p'").
    Its plain CoAP port (.port - 1) is also bound; tests never use it.
    """
    binary = find_binary("coap-server-" + backend)
    psk = bytes.fromhex(psk_hex)

    def argv(port):
        a = [binary, "-A", host, "-p", str(port - 1), "-k", psk.decode("latin-1"), "-v", str(verbose)]
        return a + (["-d", str(resources)] if resources else [])

    with _serve("coap-" + backend, host, psk_hex, identity, argv, ports=2) as srv:
        yield srv


COAP_VENV_PYTHON = os.path.join(ROOT, ".peers", "coapvenv", "bin", "python")
COAP_SERVER_SCRIPT = os.path.join(ROOT, "tools", "coap_server.py")


@contextlib.contextmanager
def aiocoap_server(psk_hex=PSK_HEX, identity=IDENTITY, host="127.0.0.1", dedup=True, big=None,
                   extra=()):
    """aiocoap 0.4.17 over tinydtls (`tinydtls_server` transport; DTLSSocket 0.2.3 builds
    tinydtls 0.8.6), tools/coap_server.py run by .peers/coapvenv's python (`make peers`).
    A CoAP server (coaps) on .port, the one socket it binds (the script hands aiocoap .port - 1:
    the transport adds 1). Resources: POST /echo (2.05, the payload back), PUT/GET /store,
    GET /big (3000 bytes unless `big`: Block2), GET /count (requests handled so far).

    Message deduplication (RFC 7252 4.5) stays on (`dedup=False` turns it off): the same
    message ID from the same address and port, within EXCHANGE_LIFETIME (247 s), gets the
    cached answer, even after a new full handshake from that address.
    tinydtls (measured): PSK suites CCM_8 and CCM only (GCM, CBC: handshake_failure), always a
    HelloVerifyRequest, requires extended master secret and renegotiation_info, sends an empty
    session ID (nothing to resume: dtls-lite's forced resumption or new address is a full
    handshake at once), negotiates no CID.
    output() logs "request POST /echo mid=N token=HEX from HOST:PORT len=N payload=..." per
    request the resources handled (a deduplicated one prints nothing).
    """
    if not os.access(COAP_VENV_PYTHON, os.X_OK):
        raise PeerUnavailable("the aiocoap/tinydtls server's venv is missing (%s): %s"
                              % (COAP_VENV_PYTHON, INSTALL_HINT))

    def argv(port):
        a = [COAP_VENV_PYTHON, COAP_SERVER_SCRIPT, str(port), "--host", host, "--psk", psk_hex,
             "--identity", identity]
        if not dedup:
            a.append("--no-dedup")
        if big is not None:
            a += ["--big", str(big)]
        return a + list(extra)

    with _serve("aiocoap", host, psk_hex, identity, argv, ready_text="coap_server: ready on") as srv:
        yield srv


SERVERS = {"openssl": openssl_server, "gnutls": gnutls_server, "mbedtls": mbedtls_server,
           "pion": pion_server}


# ---- reference clients (to prove the peers work, and to compare against) -----------------

def _converse(argv, ready_marker, data, expect, timeout):
    """Run a line-oriented client: wait for `ready_marker`, send `data`, wait for `expect`,
    close stdin (the client then sends close_notify and exits). Returns (ok, output str)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, bufsize=0, cwd=ROOT)
    buf = []
    lock = threading.Lock()

    def read():
        while True:
            try:
                chunk = os.read(proc.stdout.fileno(), 65536)
            except OSError:
                break
            if not chunk:
                break
            with lock:
                buf.append(chunk)

    def text():
        with lock:
            return b"".join(buf)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    ok = False
    try:
        while time.monotonic() < deadline and ready_marker not in text() and proc.poll() is None:
            time.sleep(0.02)
        if ready_marker in text():
            start = len(text())
            proc.stdin.write(data)
            while time.monotonic() < deadline and expect not in text()[start:]:
                time.sleep(0.02)
            ok = expect in text()[start:]
        proc.stdin.close()
        try:
            proc.wait(max(0.5, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            ok = False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        t.join(1.0)
        proc.stdout.close()
    return ok and proc.returncode == 0, text().decode("utf-8", "replace")


def openssl_client_echo(server, data=b"ping from s_client\n", ciphers=OPENSSL_CIPHERS,
                        timeout=10.0, extra=()):
    """`openssl s_client -dtls1_2 -psk ...`: handshake, send `data`, expect it back."""
    argv = [find_binary("openssl"), "s_client", "-dtls1_2", "-connect",
            _host_port(server.host, server.port), "-psk", server.psk_hex,
            "-psk_identity", server.identity, "-cipher", ciphers] + list(extra)
    return _converse(argv, b"Verify return code", data, data, timeout)


def gnutls_client_echo(server, data=b"ping from gnutls-cli\n", priority=GNUTLS_PRIORITY,
                       timeout=10.0, extra=()):
    """`gnutls-cli --udp --pskusername ... --pskkey ...`: handshake, send, expect the echo."""
    argv = [find_binary("gnutls-cli"), "--udp", "--priority", priority,
            "--pskusername", server.identity, "--pskkey", server.psk_hex,
            "-p", str(server.port), server.host] + list(extra)
    return _converse(argv, b"Handshake was completed", data, data, timeout)


def mbedtls_client(server, timeout=15.0, extra=()):
    """`ssl_client2 dtls=1 ...` sends an HTTP-like GET and prints the answer.

    Returns (returncode, output str). Against ssl_server2 add "cid=1" to negotiate a CID and
    "reconnect=1" to resume by session ID.
    """
    argv = [find_binary("ssl_client2"), "dtls=1", "server_addr=%s" % server.host,
            "server_port=%d" % server.port, "psk=%s" % server.psk_hex,
            "psk_identity=%s" % server.identity] + list(extra)
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        return -1, out.decode("utf-8", "replace") + "\n[ssl_client2 timed out]"
    return proc.returncode, proc.stdout.decode("utf-8", "replace")
