# The wake policy: what a node does with its saved state when it wakes (DESIGN.md section 1).
# A table read top to bottom; the first row whose conditions hold decides. It never does I/O
# and never looks at a clock: the adapter measures the facts and passes them in as flags.
from dtls_lite.compat import const

CONTINUE = const(0)  # send application records at once under the saved keys: no handshake
ABBREVIATED = const(1)  # resume the saved session: 1 round trip (+1 with a cookie exchange)
FULL = const(2)  # full PSK handshake: 2 round trips (+1)

ACTION_NAMES = ("continue", "abbreviated", "full")

# Facts about this wake (bits).
SESSION = const(1)  # a valid saved session that may be resumed (extended master secret, an ID)
CONNECTION = const(2)  # a valid saved connection (keys, sequence reservation, replay window)
SAME_LOCAL = const(4)  # bound to the same local address and port as when it was saved
FORCED = const(8)  # the application called force_resume() (e.g. NAT rebinding suspected)
IDLE = const(16)  # longer than auto_handshake_timeout since the server was last heard
SERVER_CID = const(32)  # the server gave a connection ID (RFC 9146): it finds us by that

# (facts that must all hold, action, why): the first matching row wins.
POLICY = (
    (FORCED | SESSION, ABBREVIATED, "resumption forced"),
    (FORCED, FULL, "resumption forced, but no resumable session"),
    (IDLE | SESSION, ABBREVIATED, "idle longer than auto_handshake_timeout"),
    (IDLE, FULL, "idle longer than auto_handshake_timeout, no resumable session"),
    (CONNECTION | SAME_LOCAL, CONTINUE, "same local address and port"),
    (CONNECTION | SERVER_CID, CONTINUE, "address changed, but the server gave a connection ID"),
    (SESSION | CONNECTION, ABBREVIATED, "local address or port changed"),
    (SESSION, ABBREVIATED, "only the session was saved"),
    (CONNECTION, FULL, "local address or port changed, and the session cannot be resumed"),
    (0, FULL, "no valid saved state"),
)


def decide(facts):
    """(action, reason) for the facts (a bit set of the constants above)."""
    for need, action, why in POLICY:
        if facts & need == need:
            return action, why
    return FULL, "no rule"  # unreachable: the last row matches everything
