# The `dtls-lite` exit status: the codes, their help text, and the one mapping from an exception
# of a run to (code, one-line message). Never prints; cli.main() does.
from dtls_lite.errors import (AlertReceived, ConnectionClosed, HandshakeTimeout, HelloVerifyStorm,
                              ProtocolError, UsageError, alert_name)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_HANDSHAKE = 3
EXIT_ALERT = 4
EXIT_NO_REPLY = 5
EXIT_UNREACHABLE = 6
EXIT_STATE = 7
EXIT_HELLO_VERIFY = 8
EXIT_COAP_ERROR = 9
EXIT_INTERRUPTED = 130

EXIT_CODES = """exit codes:
  0    done: every record was sent and (unless --reply-ms 0) answered
  1    internal error (a bug: -v shows the traceback)
  2    usage error: bad argument, bad coaps:// URI, unreadable --psk-file, line too long
       for one record
  3    handshake failed: no answer after the retransmissions, or --handshake-timeout-ms
  4    the server sent a fatal alert (e.g. wrong PSK or identity), broke the protocol,
       or closed the connection (close_notify) before answering
  5    no reply to a record within --reply-ms (the rest of the input is not sent); with
       a coaps:// URI: no CoAP response within --reply-ms or the retransmissions
  6    network error: server unreachable (ICMP port unreachable), name not resolved,
       --bind address not available
  7    the --state file could not be read or written (checked before the handshake:
       a file that cannot be written is reported before any datagram is sent)
  8    the server keeps answering with HelloVerifyRequest, never a ServerHello (its
       connection table may be full): the 5th in one handshake, or --handshake-timeout-ms
       or the retransmissions ran out after it answered a ClientHello carrying its cookie
  9    coaps:// URI: the server answered with a CoAP error, 4.xx or 5.xx (the code and
       payload are still printed), or reset the request (RST)
  130  interrupted (Ctrl-C)"""


class CliError(Exception):
    """A failure with its exit code and a one-line message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class StateFileError(OSError):
    """The --state file failed (an OSError, so the adapter treats it as any store failure)."""


def error_code(e):
    """(exit code, message) of an exception from a run."""
    if isinstance(e, CliError):
        return e.code, str(e)
    if type(e).__module__ == "dtls_lite.coap":  # before DTLSError's kinds: CoAPError is one
        return _coap_code(e)
    if isinstance(e, StateFileError):
        return EXIT_STATE, e.strerror if isinstance(e.strerror, str) else str(e)
    if isinstance(e, HelloVerifyStorm):
        return EXIT_HELLO_VERIFY, "handshake failed: %s" % e
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


def _coap_code(e):
    """dtls_lite.coap's errors (only a coaps:// run raises them; the module stays unloaded
    otherwise): no response 5, reset 9, anything else the server got wrong 4."""
    from dtls_lite import coap
    if isinstance(e, coap.CoAPTimeout):
        return EXIT_NO_REPLY, "no CoAP response: %s" % e
    if isinstance(e, coap.CoAPReset):
        return EXIT_COAP_ERROR, "the server reset the request (RST): %s" % e
    if isinstance(e, coap.CoAPError):
        return EXIT_ALERT, "CoAP protocol error: %s" % e
    if isinstance(e, UsageError):
        return EXIT_USAGE, str(e)
    return EXIT_INTERNAL, "internal error: %s: %s (run with -v for the traceback)" % (type(e).__name__, e)
