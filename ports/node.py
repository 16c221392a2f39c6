# One wake of a battery sensor node, the same on ESP32, the MicroPython unix port and CPython:
# bring the network up, let dtls_lite's wake policy continue / resume / handshake, send one
# reading, wait for the reply, save, sleep. What differs per platform (reset cause, RTC memory,
# WiFi, deep sleep) comes from a Board (ports/esp32/esp32board.py, ports/unix/unixboard.py).
#
# PROTOCOL = "coap" makes the reading a CoAP request (COAP_METHOD to COAP_PATH, dtls_lite/coap.py)
# and the reply its response. Its message ID and token come from the counter saved with the
# connection (DTLSClient.reserve_counter), so a continued wake never repeats the last wake's
# message ID: a server that deduplicates (RFC 7252 4.5: Californium, aiocoap, for 247 s) would
# answer it from its cache and drop the new reading.
#
# Failure policy: a wake never raises (only KeyboardInterrupt passes, so a developer at the
# REPL can stop it). A WiFi or server failure is logged and reported, the stores keep what
# is safe (the client writes state only after a handshake completed, and a sequence reservation
# before any record uses it) and the node sleeps: the next wake simply tries again.
#
# State layout (DESIGN.md section 4): the whole state (session + connection) in RTC memory,
# rewritten on every reservation; the session alone in a file (flash), rewritten only when the
# session changes. After any reset other than a deep-sleep wake the RTC copy is cleared, not
# trusted: power-on leaves garbage there, and after a crash, the reset button or a watchdog the
# node starts over from the durable session (an abbreviated handshake).
#
# Local port (DESIGN.md section 4: a continued connection needs the same address and port):
# 1. the port the connection in RTC memory was saved with (it rides in front of the blob);
# 2. else BIND_PORT if set, else a random port in 49152-65535;
# 3. a handshake from a port of rule 1 or 2 that times out is tried once more from a new random
#    port. Some servers (older pion, s_server) silently ignore a ClientHello from an address
#    whose old association they still hold (a node that lost power, or resumes from its old
#    port); from a new port they answer. A random port is not retried: the server is down.
#    Nor is a HelloVerifyStorm: that server answers, but only with HelloVerifyRequests (its
#    connection table is full), from any port.
import gc
import time

# (its own copy of the clock: node.py must load and report even when dtls_lite cannot;
# anode.py uses this one)
try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
except AttributeError:  # CPython
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

DEEPSLEEP = "deepsleep"

# Settings a config module may leave out, with their defaults.
_DEFAULTS = {
    "NODE_NAME": "node",
    "BIND_HOST": "0.0.0.0",
    "BIND_PORT": None,  # first port when nothing is saved (None: random); see the header
    "SLEEP_MS": 60000,
    "FAIL_SLEEP_MS": None,  # sleep after a failed wake; None: SLEEP_MS
    "REPLY_TIMEOUT_MS": 3000,
    "AUTO_HANDSHAKE_TIMEOUT_S": None,
    "FORCE_RESUME": False,
    "SESSION_FILE": "session.bin",  # None: no durable copy (RTC memory only)
    "INITIAL_TIMEOUT_MS": 1000,  # RFC 6347 4.2.4.1
    "MAX_RETRANSMITS": 3,  # a flight nobody answers: 1+2+4+8 = 15 s of radio time
    # A whole handshake ends within this, however the server answers. A server whose connection
    # table is full (HelloVerifyRequest to every ClientHello) is given up at the 5th of them:
    # about 7 s with the timers above; one that restarts the schedule with new cookies, here.
    "HANDSHAKE_TIMEOUT_MS": 30000,
    "WIFI_TIMEOUT_MS": 15000,
    # Report the free heap (after gc.collect()) at the wake's steps: a measurement aid, off
    # by default because each collection costs CPU time on a node that wakes to do little.
    "HEAP_REPORT": False,
    # "dtls": the reading as one record, the server's reply (an echo server's) the answer;
    # "coap": a CoAP request over the connection, its response the answer (2.xx: ok).
    "PROTOCOL": "dtls",
    "COAP_METHOD": "POST",
    "COAP_PATH": None,  # None: "/sensors/" + NODE_NAME
}


def _heap(cfg, report, step):
    if getattr(cfg, "HEAP_REPORT", False):
        gc.collect()
        report.setdefault("heap", {})[step] = gc.mem_free()


def setting(cfg, name):
    """cfg.name, or its default; AttributeError names a required setting that is missing."""
    v = getattr(cfg, name, _DEFAULTS.get(name, _DEFAULTS))
    if v is _DEFAULTS:
        raise AttributeError("config has no " + name)
    return v


class Board:
    """Platform hooks with neutral defaults; a port overrides what it has."""

    name = "generic"

    def reset_cause(self):
        """DEEPSLEEP after a deep-sleep wake, else "power-on", "soft", "hard", ..."""
        return "power-on"

    def rtc_store(self):
        """A store that survives deep sleep and is cheap to write, or None."""
        return None

    def network_up(self, cfg):
        """Join the network (bounded by WIFI_TIMEOUT_MS); the local IP text, or None when the
        client can learn it itself (bound to a fixed address). Raises OSError on failure."""
        return None

    def wall_clock(self):
        return int(time.time())

    def read_sensor(self):
        return None

    def mem_free(self):
        f = getattr(gc, "mem_free", None)
        return f() if f else None

    def log(self, msg):
        print("node: " + msg)

    def deepsleep(self, ms):
        """Sleep; on a real board this never returns (the chip reboots on wake)."""
        time.sleep(ms / 1000)


class PortTaggedStore:
    """Wraps a store: saves the local port (2 bytes) in front of each blob, so the next wake
    knows which port to bind before the client reads the blob."""

    def __init__(self, inner):
        self._inner = inner
        self.port = None  # the port of the client saving through it
        self.saved_port = None  # the port of the blob last loaded

    def load(self):
        data = self._inner.load()
        if data is None or len(data) < 2:
            return None
        self.saved_port = (data[0] << 8) | data[1]
        return data[2:]

    def save(self, data):
        p = self.port or 0
        self._inner.save(bytes((p >> 8, p & 0xFF)) + data)

    def clear(self):
        self._inner.clear()


def random_port():
    import os
    b = os.urandom(2)
    return 49152 + (((b[0] << 8) | b[1]) & 0x3FFF)  # RFC 6335 dynamic ports


def reading(cfg, board):
    """The payload of this wake: a small JSON object, unique per wake."""
    import os
    v = None
    try:
        v = board.read_sensor()
    except Exception as e:  # a broken sensor must not stop the report
        board.log("sensor: %s: %s" % (type(e).__name__, e))
    t = None
    try:
        t = board.wall_clock()
    except Exception:
        pass
    return '{"node":"%s","t":%s,"v":%s,"id":"%s"}' % (
        setting(cfg, "NODE_NAME"), "null" if t is None else t,
        "null" if v is None else v, _hex(os.urandom(3)))


def _hex(b):
    return "".join("%02x" % x for x in b)


def _error(report, stage, e, board):
    report["ok"] = False
    report["stage"] = stage
    report["error"] = type(e).__name__
    report["message"] = str(e)
    board.log("%s failed: %s: %s" % (stage, type(e).__name__, e))


def wake(cfg, board, client_class=None):
    """One wake; returns the report (a dict of JSON-able values). Never raises Exception."""
    t0 = ticks_ms()
    report = {"node": None, "board": board.name, "ok": False}
    _heap(cfg, report, "start")
    client = None
    stage = "config"
    try:
        report["node"] = setting(cfg, "NODE_NAME")
        host = setting(cfg, "SERVER_HOST")
        server_port = setting(cfg, "SERVER_PORT")
        identity = setting(cfg, "IDENTITY")
        from binascii import unhexlify  # MicroPython 1.16 has no bytes.fromhex
        psk = unhexlify(setting(cfg, "PSK_HEX"))
        if isinstance(identity, str):
            identity = identity.encode()
        bind_host = setting(cfg, "BIND_HOST")
        protocol = check_protocol(cfg)

        stage = "stores"
        cause = report["reset"] = board.reset_cause()
        rtc = board.rtc_store()
        if rtc is not None:
            if cause != DEEPSLEEP:
                rtc.clear()  # see the header: only a deep-sleep wake trusts RTC memory
            rtc = PortTaggedStore(rtc)
            rtc.load()  # learn saved_port; the client reads (and checks) the blob itself
        session_file = setting(cfg, "SESSION_FILE")
        session = None
        if session_file:
            from dtls_lite.store import FileStore
            session = FileStore(session_file)
        if rtc is None and session is None:
            board.log("no store configured: every wake does a full handshake")

        stage = "network"
        t_net = ticks_ms()
        ip = board.network_up(cfg)
        report["ip"] = ip
        report["net_ms"] = ticks_diff(ticks_ms(), t_net)  # WiFi/PPP up: radio time too

        stage = "connect"
        if client_class is None:
            from dtls_lite.client import DTLSClient as client_class
        from dtls_lite.errors import HandshakeTimeout
        options = {"initial_timeout_ms": setting(cfg, "INITIAL_TIMEOUT_MS"),
                   "max_retransmits": setting(cfg, "MAX_RETRANSMITS"),
                   "handshake_timeout_ms": setting(cfg, "HANDSHAKE_TIMEOUT_MS"),
                   "store": rtc, "session_store": session, "wall_clock": board.wall_clock,
                   "auto_handshake_timeout_s": setting(cfg, "AUTO_HANDSHAKE_TIMEOUT_S")}
        suites = getattr(cfg, "SUITES", None)
        if suites:
            options["suites"] = suites
        port = (rtc.saved_port if rtc is not None else None) or setting(cfg, "BIND_PORT")
        fresh = not port  # a random port: no server can hold an old association for it
        if fresh:
            port = random_port()
        for attempt in (1, 2):
            report["port"] = port
            if rtc is not None:
                rtc.port = port
            gc.collect()
            client = client_class(host, server_port, identity, psk, bind=(bind_host, port),
                                  connect=False, local=None if ip is None else (ip, port),
                                  **options)
            if setting(cfg, "FORCE_RESUME"):
                client.force_resume()
            _heap(cfg, report, "client")
            try:
                client.connect()
                _heap(cfg, report, "connected")
                break
            except HandshakeTimeout as e:
                if attempt == 2 or fresh:
                    raise
                _policy(report, client)
                report["first_error"] = str(e)
                report["first_wire"] = client.wire
                board.log("handshake from port %d timed out; once more from a new port" % port)
                client.suspend()  # lets the socket go; saves nothing (no handshake completed)
                client = None
                port = random_port()
            finally:
                if client is not None:
                    _policy(report, client)

        stage = "request"
        sent = reading(cfg, board)
        report["sent"] = sent
        if protocol == "coap":
            _coap_request(cfg, client, sent, report)
        else:
            reply = client.request(sent.encode(), setting(cfg, "REPLY_TIMEOUT_MS"))
            _policy(report, client)  # request() may have resumed a silently dead connection
            if reply is None:
                report["reply"] = None
                raise OSError("no reply within %d ms" % setting(cfg, "REPLY_TIMEOUT_MS"))
            report["reply"] = reply.decode("utf-8", "replace") if reply else ""
            report["echoed"] = reply == sent.encode()
        _heap(cfg, report, "replied")

        stage = "save"
        client.suspend()  # save, and no close_notify: the server keeps the connection
        report["ok"] = True
    except Exception as e:
        _error(report, stage, e, board)
        if client is not None:
            try:
                client.suspend()  # saves only what is safe (never mid-handshake)
            except Exception as e2:
                board.log("suspend after failure: %s: %s" % (type(e2).__name__, e2))
    if client is not None:
        try:
            report["kind"] = client.stats.handshake_kind
            report["wire"] = client.wire
        except Exception:
            pass
    report["ms"] = ticks_diff(ticks_ms(), t0)
    report["mem_free"] = board.mem_free()
    return report


def check_protocol(cfg):
    """PROTOCOL, checked: "dtls" or "coap"."""
    protocol = setting(cfg, "PROTOCOL")
    if protocol not in ("dtls", "coap"):
        raise ValueError("PROTOCOL must be 'dtls' or 'coap', not %r" % (protocol,))
    return protocol


def coap_request_args(cfg, sent, report):
    """(method, path, keyword arguments) of the CoAP wake's request: COAP_METHOD the reading
    (application/json) to COAP_PATH, the whole exchange (CoAP retransmissions, the client's
    fallback when a continued connection is not answered) within REPLY_TIMEOUT_MS."""
    path = setting(cfg, "COAP_PATH") or "/sensors/" + setting(cfg, "NODE_NAME")
    method = setting(cfg, "COAP_METHOD")
    report["coap"] = method + " " + path
    return method, path, {"payload": sent.encode(), "content_format": 50,
                          "timeout_ms": setting(cfg, "REPLY_TIMEOUT_MS")}


def coap_response(report, r):
    """Report the response; OSError for an error response (4.xx, 5.xx)."""
    report["reply"] = str(r)  # "2.04 Changed"
    if r.payload:
        report["reply_payload"] = r.payload.decode("utf-8", "replace")
    if r.code >= 0x80:
        raise OSError("CoAP " + str(r))


def _coap_request(cfg, client, sent, report):
    """The CoAP form of the request stage (coap_request_args). Raises for no response
    (CoAPTimeout, a DTLSError) and for an error response, after reporting it."""
    from dtls_lite import coap  # only a CoAP node loads it
    method, path, kw = coap_request_args(cfg, sent, report)
    cc = coap.Client(client)
    try:
        r = cc.request(method, path, **kw)
    finally:
        _policy(report, client)  # the request may have resumed a silently dead connection
        report["coap_retransmissions"] = cc.retransmissions
    coap_response(report, r)


def _policy(report, client):
    report["action"] = client.wake_action
    report["reason"] = client.wake_reason
    err = getattr(client, "state_error", None)
    if err is not None:
        report["state_error"] = getattr(err, "reason", str(err))


def sleep_ms(cfg, report):
    """How long to sleep after this wake."""
    try:
        ms = setting(cfg, "SLEEP_MS")
        if not report.get("ok"):
            fail = setting(cfg, "FAIL_SLEEP_MS")
            if fail is not None:
                ms = fail
        return int(ms)
    except Exception:
        return _DEFAULTS["SLEEP_MS"]


def run(cfg, board, client_class=None):
    """wake(), print the report as one JSON line, deep sleep. Never returns on a board."""
    import json
    report = wake(cfg, board, client_class)
    ms = sleep_ms(cfg, report)
    report["sleep_ms"] = ms
    try:
        print(json.dumps(report))
    except Exception as e:  # never let the report stop the sleep
        board.log("report: %s" % e)
    board.deepsleep(ms)
    return report
