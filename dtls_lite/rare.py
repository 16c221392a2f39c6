# Code only rare paths need: failure messages (a handshake that timed out, an alert from the
# server, alert names) and checks of options a caller passes only sometimes (suites=, rng=). Imported inside the functions that need it,
# never at module level: loaded from .mpy, every function and string costs heap from import
# on, so what a normal wake never runs stays out of RAM (frozen, it costs nothing anyway).
# It explains and checks; it never makes a protocol decision.
from dtls_lite.errors import AlertReceived, UsageError, alert_name

ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
    22: "record_overflow", 40: "handshake_failure", 42: "bad_certificate",
    47: "illegal_parameter", 50: "decode_error", 51: "decrypt_error",
    70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation",
    110: "unsupported_extension", 115: "unknown_psk_identity",
}

# Fatal alerts a server sends when it cannot verify our Finished or does not know our identity:
# bad_record_mac, handshake_failure, decrypt_error, internal_error (pion/dtls, for an unknown
# identity), unknown_psk_identity.
_PSK_REJECTED = (20, 40, 51, 80, 115)


def alert_error(c, level, desc):
    """The AlertReceived for the server's close_notify during the handshake or its fatal alert
    (Connection c); the message names the likely cause when our Finished is what it refused."""
    msg = None
    if desc == 0:  # close_notify
        msg = "server closed the connection (close_notify) during the handshake"
        if c._sent_finished():
            msg = ("server closed the connection (close_notify) instead of sending its"
                   " Finished: wrong PSK or identity?")
    elif c._sent_finished() and desc in _PSK_REJECTED:
        msg = ("server rejected our Finished with %s (%d): wrong PSK or identity?"
               % (alert_name(desc), desc))
    return AlertReceived(level, desc, msg)


def timeout_reason(c):
    """Why Connection c gives up its handshake, claiming no more than what was seen: a wrong
    PSK only once the server answered our earlier flights and then not our Finished."""
    from dtls_lite import connection as cn
    n = c._retransmits
    if c._sent_finished() and c._read.epoch > 0:
        # The server sends its ChangeCipherSpec only once our Finished verified: the PSK is right.
        msg = ("the server's ChangeCipherSpec arrived but not its Finished (%d retransmissions):"
               " packet loss?" % n)
    elif c._sent_finished():
        if c._repeats:
            msg = ("the server re-sent its previous flight %d times: it does not accept our"
                   " Finished flight (%d retransmissions): wrong PSK or identity? (servers"
                   " silently drop records they cannot decrypt) or our datagrams get lost"
                   % (c._repeats, n))
        else:
            msg = ("the server answered our earlier flights but not our Finished (%d"
                   " retransmissions): wrong PSK or identity? (servers silently drop records"
                   " they cannot decrypt) or the link failed" % n)
    elif c._repeats:
        msg = ("the server re-sent its previous flight %d times but never got ours (%d"
               " retransmissions): our datagrams get lost" % (c._repeats, n))
    elif c.state == cn.ST_WAIT_SERVER_HELLO and c._hvr_repeats:
        msg = ("the server keeps sending HelloVerifyRequest: %d more after we returned its"
               " cookie, never a ServerHello (%d retransmissions); its connection table may be"
               " full" % (c._hvr_repeats, n))
    elif c.state == cn.ST_WAIT_SERVER_KEY_EXCHANGE or c.state == cn.ST_WAIT_SERVER_HELLO_DONE:
        msg = "only part of the server's flight arrived (%d retransmissions): packet loss?" % n
    else:
        msg = "no answer from server after %d retransmissions" % n
    if c._hs_expired():
        msg = "handshake_timeout_ms (%d) reached: %s" % (c._hs_timeout, msg)
    if c._oom:
        msg += "; %d datagrams dropped for lack of memory" % c._oom
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
