# Exception types of dtls-lite, split by who is at fault (caller, peer, network).
# Records that fail to decrypt or are replays are never raised: they are dropped and counted.


class DTLSError(Exception):
    """Base of every dtls-lite error."""


class UsageError(ValueError):
    """The caller misused the API (wrong argument, wrong state).

    A ValueError, not a DTLSError: MicroPython cannot derive from two exception types.
    """


class HandshakeTimeout(DTLSError):
    """The peer did not answer a flight within the retransmission limit."""


class HelloVerifyStorm(DTLSError):
    """The server answered our ClientHellos with HelloVerifyRequests and never a ServerHello
    (e.g. a full connection table: Californium): `count` of them in this handshake,
    `new_cookies` of those whose cookie differed from the one before. Not a HandshakeTimeout:
    the server is there but will not take us; a new port or at once again will not help."""

    def __init__(self, count, new_cookies, message):
        super().__init__(message)
        self.count = count
        self.new_cookies = new_cookies


class ProtocolError(DTLSError):
    """The peer violated the protocol; we sent (or would send) the fatal alert `alert`."""

    def __init__(self, alert, message):
        super().__init__(message)
        self.alert = alert


class AlertReceived(DTLSError):
    """The peer sent a fatal alert (`level`, `description`, `name`)."""

    def __init__(self, level, description, message=None):
        self.level = level
        self.description = description
        self.name = alert_name(description)
        super().__init__(message or "peer sent fatal alert %s (%d)" % (self.name, description))


class ConnectionClosed(DTLSError):
    """The connection is closed (close_notify or a fatal error); no more data can be sent."""


class StateError(DTLSError):
    """A saved-state blob was refused (dtls_lite/state.py); `reason` says why. The caller
    does a full handshake instead."""

    def __init__(self, reason):
        super().__init__("saved state refused: " + reason)
        self.reason = reason


def alert_name(description):
    from dtls_lite.compat import need
    # only for messages: not loaded otherwise
    return need("dtls_lite.alerts").ALERT_NAMES.get(description, "alert_%d" % description)
