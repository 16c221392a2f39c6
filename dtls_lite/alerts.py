# Names of TLS alerts (RFC 5246 7.2, RFC 4279, RFC 5746, RFC 7301), for error messages only:
# imported by errors.alert_name() when a message needs one, never at a wake's start.
ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
    22: "record_overflow", 40: "handshake_failure", 42: "bad_certificate",
    47: "illegal_parameter", 50: "decode_error", 51: "decrypt_error",
    70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation",
    110: "unsupported_extension", 115: "unknown_psk_identity",
}
