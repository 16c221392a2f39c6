"""The CLI's coaps:// form (issue 17), like libcoap's coap-client, against libcoap's
coap-server-openssl as a real process (`-d`: PUT and POST create resources; `-v 7`: it logs
every CoAP message it gets, with its message ID, token and payload):

- the URI (RFC 7252 6.4): default port, IPv6, path, query, percent-encoding, and the bad ones
  (exit 2 with the usage);
- GET /time and the index, PUT then GET returns the value, POST, DELETE, 4.04 (exit 9), NON,
  a query;
- with --state: runs that continue the connection (no handshake after the first) each get
  their own answer, because the message ID and token come from the counter saved with the
  state (a repeated message ID would be a duplicate: RFC 7252 4.5);
- no response (exit 5), nothing listening on the default port (exit 6);
- the same runs with --state against aiocoap over tinydtls (tests/peers.py aiocoap_server),
  which deduplicates by message ID (RFC 7252 4.5): each run's POST /echo and PUT then GET
  /store get their own answers, none is taken for a duplicate.
"""
import contextlib
import re

import pytest

import netem
import peers
from dtls_lite.desktop import coapcli
from test_cli import cli, trace_datagrams

pytestmark = pytest.mark.interop


@contextlib.contextmanager
def libcoap_server(host="127.0.0.1"):
    """libcoap 4.3's coap-server-openssl (as peers.coap_server starts it) with -d 16 (PUT and
    POST to an unknown path create a resource, at most 16) and -v 7 (each CoAP message logged:
    "v:1 t:CON c:PUT i:04b4 {01020304} [ Uri-Path:sensors ] :: 'payload'")."""
    try:
        with peers.coap_server(host=host, resources=16, verbose=7) as srv:
            yield srv
    except peers.PeerUnavailable as e:
        pytest.fail(str(e), pytrace=False)


def requests(srv, method=None):
    """[(method, message ID, token, payload)] of the CoAP requests the server logged."""
    out = []
    for m in re.finditer(r"v:1 t:(?:CON|NON) c:(GET|POST|PUT|DELETE|FETCH) i:([0-9a-f]{4}) "
                         r"\{([0-9a-f]*)\} \[[^\]]*\]( :: '([^']*)')?", srv.output()):
        if method is None or m.group(1) == method:
            out.append((m.group(1), int(m.group(2), 16), m.group(3), m.group(5)))
    return out


def handshakes(srv):
    return srv.output().count("DTLS: session connected")


def uri(srv, path=""):
    return "coaps://%s:%d%s" % (srv.host, srv.port, path)


def coap(srv, path, *args):
    return cli(uri(srv, path), "--psk", srv.psk_hex, "--identity", srv.identity, *args)


# ---- the URI ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,host,port,path,query", [
    ("coaps://example.net", "example.net", 5684, [], []),
    ("coaps://example.net/", "example.net", 5684, [], []),
    ("COAPS://10.0.0.1:5000/sensors/t", "10.0.0.1", 5000, ["sensors", "t"], []),
    ("coaps://[::1]/.well-known/core?rt=temp", "::1", 5684, [".well-known", "core"], ["rt=temp"]),
    ("coaps://[fe80::1]:61616//a/?x&y=2", "fe80::1", 61616, ["", "a", ""], ["x", "y=2"]),
    ("coaps://h:/p%20q/%C3%A9?a%26b=%3F", "h", 5684, ["p q", "\u00e9"], ["a&b=?"]),
])
def test_uri(text, host, port, path, query):
    u = coapcli.parse_uri(text)
    assert (u.host, u.port, u.path, u.query) == (host, port, path, query)
    assert coapcli.is_uri(text)


@pytest.mark.parametrize("text,message", [
    ("coap://h/x", "coap:// is CoAP without DTLS"),
    ("http://h/x", "scheme 'http' is not coaps"),
    ("coaps:///x", "no host"),
    ("coaps://h:0/x", "bad port '0'"),
    ("coaps://h:65536/", "bad port"),
    ("coaps://h:http/", "bad port 'http'"),
    ("coaps://::1/x", "an IPv6 address needs brackets"),
    ("coaps://[::1/x", "missing ']'"),
    ("coaps://h/x#frag", "a fragment"),
    ("coaps://h/%zz", "bad percent-encoding '%zz' in the path"),
    ("coaps://h/%ff", "not UTF-8"),
    ("coaps://user@h/", "user information"),
    ("coaps://h/a b", "white space"),
    ("coaps://h/" + "x" * 256, "longer than 255 bytes"),
])
def test_bad_uri(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        coapcli.parse_uri(text)


def test_content_formats():
    assert coapcli.content_format("json") == 50 and coapcli.content_format("CBOR") == 60
    assert coapcli.content_format("112") == 112
    with pytest.raises(ValueError, match="unknown content format"):
        coapcli.content_format("yaml")


@pytest.mark.parametrize("args,message", [
    (["coap://127.0.0.1/x"], "URI 'coap://127.0.0.1/x': coap:// is CoAP without DTLS"),
    (["coaps://127.0.0.1:99999/x"], "bad port '99999'"),
    (["coaps://127.0.0.1/x#top"], "a fragment"),
    (["coaps://127.0.0.1/x", "--method", "patch"], "argument --method/-m: invalid choice: 'patch'"),
    (["coaps://127.0.0.1/x", "-m", "put", "--send", "a", "--send", "b"], "give --send once"),
    (["coaps://127.0.0.1/x", "-t", "yaml"], "unknown content format 'yaml'"),
    (["coaps://127.0.0.1/x", "--reply-ms", "0"], "--reply-ms 0"),
    (["127.0.0.1:5684", "--method", "put"], "--method need(s) a coaps:// URI"),
    (["127.0.0.1:5684", "--non", "-t", "json"], "--content-format, --non need(s) a coaps:// URI"),
])
def test_bad_coap_arguments_exit_2_with_usage(args, message):
    p = cli(args[0], "--psk", "00", *args[1:])
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("usage: dtls-lite") and message in p.stderr, p.stderr
    assert p.stdout == b""


def test_help_documents_coap_and_exit_9():
    p = cli("--help")
    assert p.returncode == 0
    assert b"coaps://HOST[:PORT]/PATH[?QUERY]" in p.stdout
    assert b"9    coaps:// URI: the server answered with a CoAP error" in p.stdout


# ---- against libcoap -------------------------------------------------------------------------

def test_get_time_and_the_index():
    with libcoap_server() as srv:
        p = coap(srv, "/time")
        assert p.returncode == 0, p.stderr
        code, payload = p.stdout.split(b"\n", 1)
        assert code == b"2.05 Content" and re.match(rb"\w{3} \d\d \d\d:\d\d:\d\d\n$", payload), p.stdout
        p = coap(srv, "")  # no path: the server's index ("/")
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith(b"2.05 Content\nThis is a test server made with libcoap")
        p = coap(srv, "/.well-known/core?rt=ticks")  # a query goes out as Uri-Query
        assert p.returncode == 0 and p.stdout.startswith(b"2.05 Content\n</time>"), p.stdout
        assert "Uri-Query:rt=ticks" in srv.output()
        p = coap(srv, "/time", "--non")
        assert p.returncode == 0 and p.stdout.startswith(b"2.05 Content\n"), p.stderr
        assert "t:NON c:GET" in srv.output()


def test_ipv6_uri():
    with libcoap_server(host="::1") as srv:
        p = cli("coaps://[::1]:%d/time" % srv.port, "--psk", srv.psk_hex, "-v")
        assert p.returncode == 0 and p.stdout.startswith(b"2.05 Content\n"), (p.stdout, p.stderr)
        assert "-> coaps://[::1]:%d/time" % srv.port in p.stderr


def test_put_then_get_returns_the_value_post_delete_and_4_04():
    with libcoap_server() as srv:
        p = coap(srv, "/sensors/t", "-m", "put", "--send", "21.5", "-t", "text")
        assert p.returncode == 0 and p.stdout == b"2.01 Created\n", (p.stdout, p.stderr)
        p = coap(srv, "/sensors/t")
        assert p.returncode == 0 and p.stdout == b"2.05 Content\n21.5\n", (p.stdout, p.stderr)
        p = coap(srv, "/sensors/t", "--method", "PUT", "--send", "22.0")
        assert p.returncode == 0 and p.stdout == b"2.04 Changed\n", (p.stdout, p.stderr)
        assert coap(srv, "/sensors/t").stdout == b"2.05 Content\n22.0\n"
        p = coap(srv, "/sensors/h", "-m", "post", "--send", "40%")  # POST creates it (-d)
        assert p.returncode == 0 and p.stdout == b"2.01 Created\n", (p.stdout, p.stderr)
        assert coap(srv, "/sensors/h").stdout == b"2.05 Content\n40%\n"
        p = coap(srv, "/sensors/t", "-m", "delete")
        assert p.returncode == 0 and p.stdout == b"2.02 Deleted\n", (p.stdout, p.stderr)
        p = coap(srv, "/sensors/t")  # gone: an error code is printed and exits 9
        assert p.returncode == 9 and p.stdout.startswith(b"4.04 Not Found\n"), (p.stdout, p.stderr)
        assert p.stderr == ""
        # a percent-encoded "/" stays inside its segment, "&" inside its query item
        p = coap(srv, "/sensors/a%2Fb?x%26y=1", "-m", "put", "--send", "slash")
        assert p.returncode == 0 and p.stdout == b"2.01 Created\n", (p.stdout, p.stderr)
        assert "[ Uri-Path:sensors, Uri-Path:a/b, Uri-Query:x&y=1 ] :: 'slash'" in srv.output()
        assert coap(srv, "/sensors/a%2Fb").stdout == b"2.05 Content\nslash\n"
        assert [r[0] for r in requests(srv)] == ["PUT", "GET", "PUT", "GET", "POST", "GET",
                                                 "DELETE", "GET", "PUT", "GET"]


def test_state_runs_continue_and_each_gets_its_own_answer(tmp_path):
    state = str(tmp_path / "node.bin")
    with libcoap_server() as srv:
        def run(*args):
            p = coap(srv, "/sensors/node", "--state", state, "-v", *args)
            assert p.returncode == 0, p.stderr + srv.output()[-2000:]
            return p

        p = run("-m", "put", "--send", "wake 1")
        assert p.stdout == b"2.01 Created\n" and "connected: full handshake" in p.stderr
        assert "Alert" not in trace_datagrams(p.stderr, ">")[-1]  # suspended, no close_notify
        for n in (2, 3, 4):
            p = run("-m", "put", "--send", "wake %d" % n)
            assert p.stdout == b"2.04 Changed\n", p.stdout
            assert "connected: continued the saved connection, no handshake" in p.stderr, p.stderr
            sent = trace_datagrams(p.stderr, ">")
            assert len(sent) == 1 and "ApplicationData" in sent[0], p.stderr  # 0 handshakes
            p = run()  # GET: the value of this run, not an answer cached for an earlier one
            assert p.stdout == b"2.05 Content\nwake %d\n" % n, p.stdout
            assert "connected: continued" in p.stderr
        assert handshakes(srv) == 1, srv.output()[-3000:]
        # the server restarted: the continued request goes unanswered, the client resumes (the
        # server forgot the session too: a full handshake) and the request goes again
        srv.restart()
        p = run("-m", "put", "--send", "after restart")
        assert p.stdout == b"2.01 Created\n", p.stdout
        assert "state: continue" in p.stderr and "connected: full handshake" in p.stderr, p.stderr
        p = run()
        assert p.stdout == b"2.05 Content\nafter restart\n" and "connected: continued" in p.stderr
    reqs = requests(srv)
    # (the restarted server could not read the copy sent on the forgotten connection)
    assert [r[3] for r in reqs if r[0] == "PUT"] == ["wake 1", "wake 2", "wake 3", "wake 4",
                                                     "after restart"], reqs
    mids = [r[1] for r in reqs]
    tokens = [r[2] for r in reqs]
    assert len(reqs) == 9 and len(set(mids)) == 9 and len(set(tokens)) == 9, reqs
    # one counter: each run takes the next value(s) of the one saved with the state
    assert mids == sorted(mids) or max(mids) - min(mids) > 0x8000, mids


def test_no_response_exit_5():
    """A relay that lets the handshake through and drops every application record."""
    def fate(way, n, data):
        return 0 if data[0] == 23 else 1

    with libcoap_server() as srv, netem.Relay(srv.address, fate=fate) as relay:
        p = cli("coaps://127.0.0.1:%d/time" % relay.port, "--psk", srv.psk_hex,
                "--reply-ms", "1500")
    assert p.returncode == 5, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtls-lite: no CoAP response"), p.stderr
    assert p.stdout == b""


def test_default_port_5684_unreachable_exit_6():
    # nothing listens on 127.0.0.1:5684 here (test servers take ports from 20000 up)
    p = cli("coaps://127.0.0.1/time", "--psk", peers.PSK_HEX, "--timeout-ms", "200")
    assert p.returncode == 6, p.stderr
    assert "127.0.0.1 port 5684 is unreachable" in p.stderr, p.stderr


# ---- against a deduplicating server (aiocoap over tinydtls) ----------------------------------

def test_state_runs_against_a_deduplicating_server(tmp_path):
    """aiocoap answers a repeated message ID from the same address with its cached response
    for 247 s (RFC 7252 4.5), even across a new handshake: runs that continue one saved
    connection each get their own answer only because their message IDs come from the counter
    saved with the state."""
    state = str(tmp_path / "node.bin")
    try:
        cm = peers.aiocoap_server()
        srv = cm.__enter__()
    except peers.PeerUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        for n in range(1, 5):
            p = coap(srv, "/echo", "--state", state, "-v", "-m", "post", "--send", "wake %d" % n)
            assert p.returncode == 0, p.stderr + srv.output()[-2000:]
            assert p.stdout == b"2.05 Content\nwake %d\n" % n, p.stdout
            assert ("connected: full handshake" if n == 1 else
                    "connected: continued the saved connection, no handshake") in p.stderr, p.stderr
            p = coap(srv, "/store", "--state", state, "-m", "put", "--send", "value %d" % n)
            assert p.returncode == 0 and p.stdout == b"2.04 Changed\n", (p.stdout, p.stderr)
            p = coap(srv, "/store", "--state", state)
            assert p.stdout == b"2.05 Content\nvalue %d\n" % n, p.stdout
        mids = [int(m) for m in re.findall(r"request \w+ /\w+ mid=(\d+) ", srv.output())]
        assert len(mids) == 12 and len(set(mids)) == 12, srv.output()
        p = coap(srv, "/count", "--state", state)
        assert p.stdout == b"2.05 Content\n12\n", p.stdout  # the 12 before it handled: none deduplicated
    finally:
        cm.__exit__(None, None, None)
