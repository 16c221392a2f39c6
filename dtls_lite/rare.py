# Code only rare paths need: failure messages (a handshake that timed out, an alert from the
# server) and checks of options a caller passes only sometimes (suites=, rng=). Imported inside the functions that need it,
# never at module level: loaded from .mpy, every function and string costs heap from import
# on, so what a normal wake never runs stays out of RAM (frozen, it costs nothing anyway).
# It explains and checks; it never makes a protocol decision.
from dtls_lite.compat import const
from dtls_lite.errors import AlertReceived, HandshakeTimeout, HelloVerifyStorm, UsageError, alert_name

# Fatal alerts a server sends when it cannot verify our Finished or does not know our identity:
# bad_record_mac, handshake_failure, decrypt_error, internal_error (pion/dtls, for an unknown
# identity), unknown_psk_identity.
_PSK_REJECTED = (20, 40, 51, 80, 115)
_ST_WAIT_SERVER_HELLO = const(1)  # dtls_lite/connection.py's states
_ST_WAIT_SERVER_HELLO_DONE = const(3)


def alert_error(level, desc, sent_finished):
    """The AlertReceived for the server's close_notify during the handshake or its fatal alert;
    sent_finished: we wait for the server's Finished after ours (then the message names the
    likely cause: our Finished is what it refused)."""
    msg = None
    if desc == 0:  # close_notify
        msg = "server closed the connection (close_notify) during the handshake"
        if sent_finished:
            msg = ("server closed the connection (close_notify) instead of sending its"
                   " Finished: wrong PSK or identity?")
    elif sent_finished and desc in _PSK_REJECTED:
        msg = ("server rejected our Finished with %s (%d): wrong PSK or identity?"
               % (alert_name(desc), desc))
    return AlertReceived(level, desc, msg)


def timeout_error(h):
    """The error of the handshake h whose timer gave up (the flight's retransmissions or
    handshake_timeout_ms): HelloVerifyStorm once the server answered a ClientHello carrying
    its cookie with another HelloVerifyRequest (2 of them at least), else HandshakeTimeout."""
    if h.conn.state == _ST_WAIT_SERVER_HELLO and h.hello_verify_count >= 2:
        return storm_error(h)
    return HandshakeTimeout(timeout_reason(h))


def storm_error(h):
    """HelloVerifyStorm of the handshake h (a client_handshake.ClientHandshake)."""
    n = h.hello_verify_count
    msg = ("the server keeps answering with HelloVerifyRequest, never a ServerHello (its"
           " connection table may be full): %d HelloVerifyRequests, %d of them with a new cookie"
           % (n, h.new_cookies))
    if h.expired():
        msg = "handshake_timeout_ms (%d) reached: %s" % (h.hs_timeout, msg)
    return HelloVerifyStorm(n, h.new_cookies, msg)


def timeout_reason(h):
    """Why the handshake h (a client_handshake.ClientHandshake) gives up, claiming no more
    than what was seen: a wrong PSK only once the server answered our earlier flights and then
    not our Finished."""
    f = h.flight
    c = h.conn
    n = f.retransmits
    if h.sent_finished() and c.read_state.epoch > 0:
        # The server sends its ChangeCipherSpec only once our Finished verified: the PSK is right.
        msg = ("the server's ChangeCipherSpec arrived but not its Finished (%d retransmissions):"
               " packet loss?" % n)
    elif h.sent_finished():
        if f.repeats:
            msg = ("the server re-sent its previous flight %d times: it does not accept our"
                   " Finished flight (%d retransmissions): wrong PSK or identity? (servers"
                   " silently drop records they cannot decrypt) or our datagrams get lost"
                   % (f.repeats, n))
        else:
            msg = ("the server answered our earlier flights but not our Finished (%d"
                   " retransmissions): wrong PSK or identity? (servers silently drop records"
                   " they cannot decrypt) or the link failed" % n)
    elif f.repeats:
        msg = ("the server re-sent its previous flight %d times but never got ours (%d"
               " retransmissions): our datagrams get lost" % (f.repeats, n))
    elif _ST_WAIT_SERVER_HELLO < c.state <= _ST_WAIT_SERVER_HELLO_DONE:
        msg = "only part of the server's flight arrived (%d retransmissions): packet loss?" % n
    else:
        msg = "no answer from server after %d retransmissions" % n
    if h.expired():
        msg = "handshake_timeout_ms (%d) reached: %s" % (h.hs_timeout, msg)
    if c.oom_drops:
        msg += "; %d datagrams dropped for lack of memory" % c.oom_drops
    return msg


def check_suites(suites):
    """The caller's suites= as a list, or UsageError."""
    from dtls_lite import record as rl
    if isinstance(suites, (int, str, bytes, bytearray)):
        raise UsageError("suites must be a list of suite numbers (record.SUITE_*)")
    try:
        suites = list(suites)
    except TypeError:
        raise UsageError("suites must be a list of suite numbers (record.SUITE_*)")
    available = rl.supported_suites()
    for i, s in enumerate(suites):
        if not isinstance(s, int) or isinstance(s, bool):
            raise UsageError("suites: %r is not a suite number (record.SUITE_*)" % (s,))
        if s not in available:
            raise UsageError("suites: %s is not supported by this backend" % rl.suite_name(s))
        if s in suites[:i]:
            raise UsageError("suites: %s is listed twice" % rl.suite_name(s))
    if not suites:
        raise UsageError("suites must not be empty")
    return suites


def checked_rng(rng):
    """The caller's rng, refused (UsageError) when it does not return exactly n bytes: a short
    client random or IV padded with zeros would be a silent security defect."""
    if not callable(rng):
        raise UsageError("rng must be a function: rng(n) -> n random bytes")

    def draw(n):
        b = rng(n)
        if not isinstance(b, (bytes, bytearray)) or len(b) != n:
            got = "%d bytes" % len(b) if isinstance(b, (bytes, bytearray)) else type(b).__name__
            raise UsageError("rng(%d) returned %s, not %d bytes" % (n, got, n))
        return b if type(b) is bytes else bytes(b)

    return draw
