# The coaps:// form of `dtls-lite`, like libcoap's coap-client: the URI (RFC 7252 6.1, 6.4),
# one CoAP request through dtls_lite.coap over the DTLSClient that Run opens (--state: the
# wake policy, and the message ID and token from the counter saved with the state), then the
# response on stdout: its code ("2.05 Content") on one line, then its payload.
# Never builds or parses a CoAP message itself: that is dtls_lite/coap.py's.
from dtls_lite.desktop.exits import EXIT_COAP_ERROR, EXIT_OK
from dtls_lite.desktop.run import Run

COAPS_PORT = 5684  # RFC 7252 12.7 (coaps)
_URI_PATH = 11  # RFC 7252 5.10.1
METHODS = ("get", "post", "put", "delete", "fetch")
# Content-Format names for --content-format (RFC 7252 12.3, RFC 8428, RFC 7049's 60);
# any number 0..65535 works too.
CONTENT_FORMATS = {"text": 0, "text/plain": 0, "link": 40, "application/link-format": 40,
                   "xml": 41, "application/xml": 41, "octet": 42,
                   "application/octet-stream": 42, "exi": 47, "json": 50,
                   "application/json": 50, "cbor": 60, "application/cbor": 60,
                   "senml+json": 110, "senml+cbor": 112}


class CoapUri:
    """A parsed coaps:// URI: host (brackets removed), port, path segments, query items."""

    def __init__(self, host, port, path, query):
        self.host, self.port, self.path, self.query = host, port, path, query


def is_uri(text):
    """True if text starts with a scheme ("coaps://...", "coap://", "http://")."""
    head, sep, _ = text.partition("://")
    return bool(sep) and head[:1].isalpha() and all(c.isalnum() or c in "+.-" for c in head)


def parse_uri(text):
    """CoapUri of coaps://HOST[:PORT][/PATH][?QUERY] (RFC 7252 6.4's steps); ValueError,
    saying what is wrong, for anything else."""
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme == "coap":
        raise ValueError("coap:// is CoAP without DTLS; dtls-lite speaks CoAP over DTLS only: "
                         "use coaps://")
    if scheme != "coaps":
        raise ValueError("scheme %r is not coaps" % scheme)
    if "#" in rest:  # 6.4 step 4
        raise ValueError("a fragment (#...) has no meaning in a CoAP URI")
    if any(c in rest for c in " \t\r\n"):
        raise ValueError("white space in the URI (percent-encode it: %20)")
    end = len(rest)
    for c in "/?":
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    authority, rest = rest[:end], rest[end:]
    if "@" in authority:
        raise ValueError("user information (user@host) has no meaning in a CoAP URI")
    host, port = _host_port(authority)
    path, _, query = rest.partition("?")
    segments = []
    if path not in ("", "/"):  # 6.4 step 8: else no Uri-Path option
        segments = [_unquote(s, "path") for s in path[1:].split("/")]
    items = [_unquote(q, "query") for q in query.split("&")] if query else []
    for s in segments + items:
        if len(s.encode()) > 255:  # RFC 7252 5.10: Uri-Path and Uri-Query are 0-255 bytes
            raise ValueError("a path segment or query item longer than 255 bytes")
    return CoapUri(host, port, segments, items)


def _host_port(authority):
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError("missing ']' after the IPv6 address")
        host, tail = authority[1:end], authority[end + 1:]
        if tail and not tail.startswith(":"):
            raise ValueError("unexpected %r after ']'" % tail)
    else:
        if authority.count(":") > 1:
            raise ValueError("an IPv6 address needs brackets: coaps://[::1]:5684/")
        host, _, port = authority.partition(":")
        tail = ":" + port if _ else ""
        host = _unquote(host, "host")
    if not host:
        raise ValueError("no host")
    port = tail[1:]
    if tail and not port:
        return host, COAPS_PORT  # "host:" (RFC 3986 allows an empty port)
    if not port:
        return host, COAPS_PORT
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("bad port %r (1..65535)" % port)
    return host, int(port)


def _unquote(text, what):
    """Percent-decoding (RFC 3986 2.1) to UTF-8 text."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            h = text[i + 1:i + 3]
            if len(h) != 2 or not all(x in "0123456789abcdefABCDEF" for x in h):
                raise ValueError("bad percent-encoding %r in the %s" % (text[i:i + 3], what))
            out.append(int(h, 16))
            i += 3
        else:
            out += c.encode()
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the %s is not UTF-8 once percent-decoded" % what)


def content_format(text):
    """Content-Format number of a name (json, cbor, text, ...) or a number."""
    v = CONTENT_FORMATS.get(text.strip().lower())
    if v is not None:
        return v
    if text.strip().isdigit() and int(text) <= 65535:
        return int(text)
    raise ValueError("unknown content format %r (a number, or one of %s)"
                     % (text, ", ".join(sorted(set(k for k in CONTENT_FORMATS if "/" not in k)))))


class CoapRun(Run):
    """One CoAP request: connect as the wake policy says, o.method to o.uri with o.payload,
    print the response, then suspend (--state) or close like any run."""

    def run(self):
        from dtls_lite import coap
        o = self.o
        c = self._open()
        self.tracer.trace("%s -> %s, identity %r" % (self._local_text(), o.uri_text,
                                                     o.identity.decode("utf-8", "replace")))
        try:
            self._connect(c)
            r = self._request(coap, c)
            self._print(r)
        except BaseException:
            self._finish(c, failed=True)
            raise
        self._finish(c, failed=False)
        return EXIT_OK if r.code < 0x80 else EXIT_COAP_ERROR  # 4.xx and 5.xx: 0x80 and up

    def _request(self, coap, c):
        o = self.o
        # The segments as Uri-Path options: coap.Client splits a path text at "/" and "?",
        # which a percent-decoded segment may hold ("a%2Fb" is one segment).
        kw = {"payload": o.payload, "confirmable": not o.non,
              "options": [(_URI_PATH, seg) for seg in o.uri.path]}
        if o.uri.query:
            kw["query"] = o.uri.query
        if o.content_format is not None:
            kw["content_format"] = o.content_format
        if o.accept is not None:
            kw["accept"] = o.accept
        if o.reply_ms is not None:
            kw["timeout_ms"] = o.reply_ms
        kind = c.conn.stats.handshake_kind
        cc = coap.Client(c)
        self.tracer.trace("coap: %s %s%s" % (o.method.upper(), o.uri_text,
                                            ", %d B payload" % len(o.payload) if o.payload else ""))
        r = cc.request(o.method.upper(), "/", **kw)
        if c.conn.stats.handshake_kind != kind:
            self._connected(c)  # the continued connection got no reply: a handshake followed
        self.tracer.trace("coap: %s, %d B payload; CoAP retransmissions %d"
                          % (r, len(r.payload), cc.retransmissions))
        return r

    def _print(self, r):
        out = ("%s\n" % r).encode()
        if r.payload:
            out += r.payload if r.payload.endswith(b"\n") else r.payload + b"\n"
        self.stdout.write(out)
        self.stdout.flush()
