# Portable tests (pytest on CPython, tests/mp_runner.py on MicroPython): the exception types
# of dtls_lite.errors and the const() of dtls_lite.compat behave the same on both runtimes.
# Also checks the MicroPython test rig itself (sys.path, discovery of test_* functions).
import sys

from dtls_lite import compat, errors
from dtls_lite.compat import const

_K = const(0xC0A8)


def test_const_is_identity():
    assert _K == 0xC0A8
    assert const(25) == 25


def test_compat_flag_matches_runtime():
    on_mp = sys.implementation.name == "micropython"
    assert compat.MICROPYTHON == on_mp


def test_alert_received_fields():
    e = errors.AlertReceived(2, 40)
    assert e.level == 2
    assert e.description == 40
    assert e.name == "handshake_failure"
    assert "handshake_failure" in str(e)
    assert isinstance(e, errors.DTLSError)


def test_alert_received_unknown_description():
    e = errors.AlertReceived(2, 123, "custom")
    assert e.name == "alert_123"
    assert str(e) == "custom"


def test_usage_error_is_value_error():
    assert issubclass(errors.UsageError, ValueError)
    assert not issubclass(errors.UsageError, errors.DTLSError)
    try:
        raise errors.UsageError("bad argument")
    except ValueError as e:
        assert str(e) == "bad argument"
    else:
        raise AssertionError("UsageError not caught as ValueError")


def test_protocol_error_carries_alert():
    e = errors.ProtocolError(47, "illegal parameter")
    assert e.alert == 47
    assert str(e) == "illegal parameter"
    for cls in (errors.HandshakeTimeout, errors.ProtocolError, errors.AlertReceived,
                errors.ConnectionClosed):
        assert issubclass(cls, errors.DTLSError)


def test_alert_name_table():
    assert errors.alert_name(0) == "close_notify"
    assert errors.alert_name(100) == "no_renegotiation"
    assert errors.alert_name(115) == "unknown_psk_identity"
