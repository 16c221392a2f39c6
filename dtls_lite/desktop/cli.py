# `dtls-lite`: the desktop command line (console script, `python -m dtls_lite` and
# `python -m dtls_lite.desktop`): the arguments, their checks, and main() with its exit status.
#
# Like `openssl s_client -dtls1_2 -psk`, plus saved state (--state, dtls_lite.store.FileStore):
# the wake policy (dtls_lite/wake.py) continues the saved connection, resumes the session or
# does a full handshake. Given a coaps:// URI it is a CoAP client instead, like libcoap's
# coap-client (coapcli.py: one request, the response's code and payload on stdout).
# CPython only, like all of dtls_lite.desktop; argparse and traceback are imported lazily so
# that the module still imports under MicroPython (tests/test_mpy.py).
import os

from dtls_lite import __version__
from dtls_lite import record as rl
from dtls_lite.desktop.exits import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, error_code
from dtls_lite.desktop import coapcli
from dtls_lite.desktop.run import Run

DEFAULT_PORT = 5684  # coaps (RFC 7252 12.7): what a DTLS-PSK device usually talks to
DEFAULT_IDENTITY = "Client_identity"  # openssl s_client's default -psk_identity
DEFAULT_REPLY_MS = 3000

# Cipher suite names the user may give (upper case, '-' read as '_'); full IANA names and
# hex code points work too.
_CIPHER_ALIASES = {
    "CCM8": rl.SUITE_PSK_AES_128_CCM_8, "CCM_8": rl.SUITE_PSK_AES_128_CCM_8,
    "PSK_AES128_CCM8": rl.SUITE_PSK_AES_128_CCM_8,
    "CCM": rl.SUITE_PSK_AES_128_CCM, "PSK_AES128_CCM": rl.SUITE_PSK_AES_128_CCM,
    "GCM": rl.SUITE_PSK_AES_128_GCM_SHA256, "PSK_AES128_GCM_SHA256": rl.SUITE_PSK_AES_128_GCM_SHA256,
    "CBC": rl.SUITE_PSK_AES_128_CBC_SHA256, "PSK_AES128_CBC_SHA256": rl.SUITE_PSK_AES_128_CBC_SHA256,
}


# ---- arguments -------------------------------------------------------------------------------

def build_parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="dtls-lite",
        description="DTLS 1.2 PSK client, like `openssl s_client -dtls1_2 -psk`, that can keep\n"
                    "its session and connection in a state file. Sends each line of stdin (or\n"
                    "each --send) as one record and prints each reply on stdout.",
        epilog=EXIT_CODES + """

state (--state FILE):
  The next run continues the saved connection (no handshake) when it uses the same local
  address and port: without --bind, the CLI binds the port saved in FILE again. Else it
  resumes the session (abbreviated handshake), else does a full one. At exit the state is
  saved and the socket closed WITHOUT close_notify so the server keeps the connection;
  --close sends close_notify instead (the file then keeps only the session).
  --force-resume resumes the session even when the connection could continue.

key log (--keylog FILE, default $SSLKEYLOGFILE): appends "CLIENT_RANDOM <hex> <hex>" lines
  (NSS key log format) after each handshake, so Wireshark/tshark decrypt a capture:
  tshark -r f.pcap -o tls.keylog_file:FILE -d udp.port==PORT,dtls -T fields -e data.data
  A continued connection (no handshake in the capture) cannot be decrypted that way.

CoAP (a coaps://HOST[:PORT]/PATH[?QUERY] URI instead of HOST[:PORT]; port default 5684):
  one CoAP request over DTLS, like libcoap's coap-client: --method (default get), --send
  DATA as the payload, --content-format, --accept, --non; prints the response code and
  reason ("2.05 Content") on one line, then the payload. With --state the message ID and
  token come from a counter saved with the state (DTLSClient.reserve_counter), so a run
  that continues the connection never repeats the last run's message ID: servers drop a
  repeated one as a duplicate for 247 s (RFC 7252 4.5) and answer from their cache.
  --reply-ms bounds the whole request (default: dtls_lite.coap's). Exit 9: the server
  answered 4.xx or 5.xx (still printed) or reset the request.
    dtls-lite coaps://127.0.0.1/time --psk 73656372657450534b
    dtls-lite coaps://[::1]:5684/sensors/t -m put --send 21.5 --state node.bin --psk HEX""",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", metavar="HOST[:PORT] | coaps://HOST[:PORT]/PATH[?QUERY]",
                   help="server; IPv6 in brackets: [::1]:5684 (default port %d); a coaps:// URI "
                        "makes one CoAP request instead (see CoAP below)" % DEFAULT_PORT)
    p.add_argument("--server", "-s", metavar="HOST[:PORT]", help="the server (instead of the positional)")
    p.add_argument("--identity", "--psk-identity", "-i", default=DEFAULT_IDENTITY, metavar="ID",
                   help="PSK identity (default %s)" % DEFAULT_IDENTITY)
    k = p.add_mutually_exclusive_group(required=True)
    k.add_argument("--psk", metavar="HEX", help="pre-shared key as hex")
    k.add_argument("--psk-file", metavar="FILE",
                   help="read the key from FILE: hex text (whitespace ignored) if that is all it "
                        "holds, else the raw bytes as they are; see --psk-format")
    p.add_argument("--psk-format", choices=("auto", "hex", "raw"), default="auto",
                   help="how to read --psk-file (default auto: hex if the file is only hex digits)")
    p.add_argument("--state", metavar="FILE", help="keep session and connection in FILE between runs")
    p.add_argument("--force-resume", action="store_true",
                   help="with --state: resume the session (abbreviated handshake), never continue")
    p.add_argument("--close", action="store_true",
                   help="with --state: end with close_notify (the file keeps only the session)")
    p.add_argument("--bind", "-b", metavar="ADDR[:PORT]",
                   help="local address and port; IPv6 in brackets: [::1]:5000; :PORT = any address")
    p.add_argument("--cipher", "-c", action="append", metavar="NAME",
                   help="cipher suite to offer, in order of preference; repeatable or comma "
                        "separated: CCM8, CCM, GCM, CBC, an IANA or OpenSSL name, or hex (C0A8). "
                        "Default: all this backend has, CCM8 first")
    p.add_argument("--mtu", type=_int_range(128, 16384), metavar="BYTES",
                   help="largest datagram (default 1200)")
    p.add_argument("--timeout-ms", type=_int_range(1, 60000), metavar="MS",
                   help="initial retransmission timeout, doubled on each retransmission (default 1000)")
    p.add_argument("--handshake-timeout-ms", type=_int_range(1, 3600000), metavar="MS",
                   help="give up a handshake after this long in all")
    p.add_argument("--retransmits", type=_int_range(0, 100), metavar="N",
                   help="retransmissions of a flight before giving up (default 6)")
    p.add_argument("--reply-ms", type=_int_range(0, 3600000), metavar="MS",
                   help="wait this long for the reply to each record (default %d; 0: send "
                        "without waiting); coaps:// URI: for the response, retransmissions "
                        "included (1 or more)" % DEFAULT_REPLY_MS)
    p.add_argument("--send", action="append", metavar="DATA",
                   help="send DATA as one record instead of reading stdin; repeatable. With "
                        "a coaps:// URI: the request's payload (once)")
    p.add_argument("--method", "-m", type=str.lower, choices=coapcli.METHODS, metavar="METHOD",
                   help="coaps:// URI: the request method, %s (default get)"
                        % "|".join(coapcli.METHODS))
    p.add_argument("--content-format", "-t", metavar="FORMAT",
                   help="coaps:// URI: the payload's Content-Format, a number or a name "
                        "(text, json, cbor, octet, link, xml, senml+json, senml+cbor)")
    p.add_argument("--accept", "-A", metavar="FORMAT",
                   help="coaps:// URI: the Content-Format wanted in the response (Accept)")
    p.add_argument("--non", "-N", action="store_true",
                   help="coaps:// URI: send the request non-confirmable (no CoAP retransmission)")
    p.add_argument("--keylog", metavar="FILE", default=os.environ.get("SSLKEYLOGFILE") or None,
                   help="append NSS key log lines to FILE (default $SSLKEYLOGFILE)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="trace datagrams (messages, sizes, retransmissions, drops) and the "
                        "state decisions to stderr")
    p.add_argument("--version", action="version", version="dtls-lite " + __version__)
    return p


def _int_range(lo, hi):
    def parse(text):
        import argparse
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not an integer" % text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError("%d is not in %d..%d" % (v, lo, hi))
        return v
    return parse


def split_host_port(text, default_port):
    """("host", port) of "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 literal;
    port is default_port when absent. ValueError on nonsense."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("missing ']' in %r" % text)
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError("unexpected %r after ']'" % rest)
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a name, an IPv4 address, or an IPv6 literal without a port
        host, port = text, ""
    if port == "":
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("bad port %r" % port)
    return host, int(port)


def parse_ciphers(values):
    """Suite code points from --cipher values, in order, without duplicates."""
    out = []
    for v in values:
        for name in v.split(","):
            name = name.strip()
            if not name:
                continue
            key = name.upper().replace("-", "_")
            suite = _CIPHER_ALIASES.get(key)
            if suite is None:
                for code, info in rl.SUITES.items():
                    if info[0] == key:
                        suite = code
            if suite is None:
                h = key[2:] if key.startswith("0X") else key
                if len(h) == 4 and all(c in "0123456789ABCDEF" for c in h):
                    suite = int(h, 16)
            if suite is None:
                raise ValueError("unknown cipher %r (try CCM8, CCM, GCM, CBC or hex like C0A8)" % name)
            if suite not in rl.supported_suites():
                raise ValueError("cipher %s is not supported by this crypto backend"
                                 % rl.suite_name(suite))
            if suite not in out:
                out.append(suite)
    return out


def read_psk_file(path, fmt):
    with open(path, "rb") as f:
        data = f.read()
    text = b"".join(data.split())
    if text[:2] in (b"0x", b"0X"):
        text = text[2:]
    is_hex = len(text) > 0 and len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text)
    if fmt == "hex" or (fmt == "auto" and is_hex):
        if not is_hex:
            raise ValueError("%s does not hold a hex key" % path)
        return bytes.fromhex(text.decode())
    return data


class Options:
    """Checked settings (argparse gives strings; this is what the run uses)."""


def check_args(parser, a):
    """Options from argparse's namespace; parser.error() (exit 2) on a bad value."""
    o = Options()
    if a.target and a.server:
        parser.error("give the server once: positional HOST[:PORT] or --server")
    target = a.target or a.server
    if not target:
        parser.error("the server is required (HOST[:PORT] or --server)")
    o.uri = None
    if coapcli.is_uri(target):
        try:
            o.uri = coapcli.parse_uri(target)
        except ValueError as e:
            parser.error("URI %r: %s" % (target, e))
        o.host, o.port, o.uri_text = o.uri.host, o.uri.port, target
    else:
        try:
            o.host, o.port = split_host_port(target, DEFAULT_PORT)
            if not o.host or o.port == 0:
                raise ValueError("need a host and a port other than 0")
        except ValueError as e:
            parser.error("server %r: %s" % (target, e))
    _check_coap_args(parser, a, o)
    o.bind = None
    o.bind_port_given = False
    if a.bind:
        try:
            bhost, bport = split_host_port(a.bind, 0)
        except ValueError as e:
            parser.error("--bind %r: %s" % (a.bind, e))
        o.bind = (bhost, bport)
        o.bind_port_given = bport != 0
    o.identity = a.identity.encode()
    if not 1 <= len(o.identity) <= 128:
        parser.error("--identity must be 1..128 bytes")
    if a.psk is not None:
        try:
            o.psk = bytes.fromhex(a.psk[2:] if a.psk[:2] in ("0x", "0X") else a.psk)
        except ValueError:
            parser.error("--psk must be hex, e.g. 73656372657450534b")
    else:
        try:
            o.psk = read_psk_file(a.psk_file, a.psk_format)
        except (OSError, ValueError) as e:
            parser.error("--psk-file: %s" % (getattr(e, "strerror", None) and
                                            "%s: %s" % (a.psk_file, e.strerror) or e))
    if not 1 <= len(o.psk) <= 64:
        parser.error("the PSK must be 1..64 bytes (got %d)" % len(o.psk))
    if (a.force_resume or a.close) and not a.state:
        parser.error("--force-resume and --close need --state FILE")
    o.options = {}
    if a.cipher:
        try:
            o.options["suites"] = parse_ciphers(a.cipher)
        except ValueError as e:
            parser.error("--cipher: %s" % e)
        if not o.options["suites"]:
            parser.error("--cipher: no cipher named")
    if a.mtu is not None:
        o.options["mtu"] = a.mtu
    if a.timeout_ms is not None:
        o.options["initial_timeout_ms"] = a.timeout_ms
    if a.retransmits is not None:
        o.options["max_retransmits"] = a.retransmits
    if a.handshake_timeout_ms is not None:
        o.options["handshake_timeout_ms"] = a.handshake_timeout_ms
    o.send = [s.encode() for s in a.send] if a.send is not None else None
    for name in ("state", "force_resume", "close", "reply_ms", "keylog", "verbose"):
        setattr(o, name, getattr(a, name))
    if o.uri is None and o.reply_ms is None:
        o.reply_ms = DEFAULT_REPLY_MS
    return o


def _check_coap_args(parser, a, o):
    """The CoAP options: only with a coaps:// URI, each checked."""
    given = [n for n, v in (("--method", a.method), ("--content-format", a.content_format),
                            ("--accept", a.accept), ("--non", a.non)) if v]
    if o.uri is None:
        if given:
            parser.error("%s need(s) a coaps:// URI as the target" % ", ".join(given))
        return
    if a.send is not None and len(a.send) > 1:
        parser.error("a coaps:// request takes one payload: give --send once")
    if a.reply_ms == 0:
        parser.error("--reply-ms 0: a CoAP request waits for its response (1 or more)")
    o.method = a.method or "get"
    o.payload = a.send[0].encode() if a.send else None
    o.non = a.non
    o.content_format = o.accept = None
    try:
        if a.content_format is not None:
            o.content_format = coapcli.content_format(a.content_format)
        if a.accept is not None:
            o.accept = coapcli.content_format(a.accept)
    except ValueError as e:
        parser.error(str(e))


# ---- main ------------------------------------------------------------------------------------

def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with argparse's usage message on a bad argument
    o = check_args(parser, args)
    r = coapcli.CoapRun(o) if o.uri is not None else Run(o)
    try:
        return r.run()
    except KeyboardInterrupt:
        r.tracer.note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_INTERNAL  # stdout went away (e.g. `| head -1`): nothing left to say
    except Exception as e:
        code, msg = error_code(e)
        if o.verbose and code == EXIT_INTERNAL:
            import traceback
            traceback.print_exc()
        r.tracer.note(msg)
        return code
