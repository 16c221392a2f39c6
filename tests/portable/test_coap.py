# dtls_lite/coap.py on all three runtimes: the codec (RFC 7252 3), the exchange (4, 5) with
# fake time over coapfake.Link (a scripted server behind a fake DTLS client), retransmission
# timing (4.8), block-wise transfers (RFC 7959), MIDs and tokens from reserve_counter(). Each
# exchange scenario runs over coap.Client and coap.AsyncClient (coapfake.AsyncLink, driven
# without an event loop: it never suspends). The real DTLSClient and AsyncDTLSClient:
# test_coap_client.py (a module of its own, so that this one fits the emulated ESP32's heap).
from coapfake import ACK, CON, NON, RST, AsyncLink, Block1Server, Link, answer, block, block2_server, \
    block_of, run
from dtls_lite import coap
from dtls_lite.errors import ConnectionClosed, DTLSError, UsageError


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("no %s from %r %r" % (exc.__name__, args, kw))


def fixed_rng(r):
    return lambda n: bytes((r >> 8, r & 0xFF))[:n]


class Case:
    """One scenario's link and client, sync or async; call() runs a request either way."""

    def __init__(self, aio, server=None, rng=0, **kw):
        self.aio = aio
        self.link = (AsyncLink if aio else Link)(server, counter=kw.pop("counter", 0x1234ABCD),
                                                 mtu=kw.pop("mtu", None))
        cls = coap.AsyncClient if aio else coap.Client
        self.cc = cls(self.link, rng=fixed_rng(rng), clock=self.link.clock, **kw)

    def call(self, method, *args, **kw):
        r = getattr(self.cc, method)(*args, **kw)
        return run(r) if self.aio else r


def both(scenario):
    for aio in (False, True):
        scenario(aio)


def token_of(v):
    return bytes((v >> 24 & 255, v >> 16 & 255, v >> 8 & 255, v & 255))


# ---- the codec ---------------------------------------------------------------------------------

def test_encode_header_token_options_payload():
    m = coap.encode(CON, 1, 0x1234, b"\x01\x02", [(11, "a"), (11, b"bc"), (12, 0)], b"hi")
    # ver 1, CON, TKL 2; 0.01; MID; token; Uri-Path "a" (delta 11), "bc" (delta 0),
    # Content-Format 0 (delta 1, zero-length uint), marker, payload
    assert m == b"\x42\x01\x12\x34\x01\x02\xb1a\x02bc\x10\xffhi", m
    d = coap.decode(m)
    assert (d.type, d.code, d.mid, d.token) == (CON, 1, 0x1234, b"\x01\x02")
    assert d.options == [(11, b"a"), (11, b"bc"), (12, b"")] and d.payload == b"hi"
    assert d.content_format == 0
    assert coap.encode(ACK, 0, 0xBEEF) == b"\x60\x00\xbe\xef"  # an empty ACK
    assert coap.decode(b"\x60\x00\xbe\xef").options == []


def test_options_are_sorted_stably_and_uints_minimal():
    m = coap.decode(coap.encode(NON, 2, 1, b"", [(14, 0x10000), (11, "x"), (4, b"e"), (11, "y"), (14, 255)]))
    assert m.options == [(4, b"e"), (11, b"x"), (11, b"y"), (14, b"\x01\x00\x00"), (14, b"\xff")], m.options
    assert m.max_age == 0x10000 and m.etag == b"e"
    assert coap.decode(coap.encode(NON, 2, 1)).max_age == 60  # RFC 7252 5.10.5 default


def test_extended_delta_and_length_boundaries():
    # deltas and lengths 12 | 13 | 268 | 269 and the largest: nibble, then 0, 1 or 2 bytes
    for v, head in ((12, b""), (13, b"\x00"), (268, b"\xff"), (269, b"\x00\x00"), (1000, b"\x02\xdb")):
        nib = 12 if v < 13 else 13 if v < 269 else 14
        m = coap.encode(NON, 1, 0, b"", [(v, b"")])
        assert m[4:] == bytes((nib << 4,)) + head, (v, m)
        m = coap.encode(NON, 1, 0, b"", [(1, b"z" * v)])
        assert m[4:5 + len(head)] == bytes((0x10 | nib,)) + head, (v, m[:8])
        assert coap.decode(m).options == [(1, b"z" * v)]
    opts = [(12, b"a"), (25, b"b" * 13), (293, b"c" * 268), (562, b"d" * 269), (65535, b"e")]
    m = coap.decode(coap.encode(CON, 3, 7, b"tok", opts, b"\xff\x00"))
    assert m.options == opts and m.payload == b"\xff\x00" and m.token == b"tok"


def test_empty_payload_has_no_marker():
    m = coap.encode(CON, 1, 9, b"", [(11, "a")], b"")
    assert m == b"\x40\x01\x00\x09\xb1a"
    assert coap.decode(m).payload == b""


def test_malformed_messages_are_refused():
    good = coap.encode(CON, 0x45, 1, b"tk", [(12, 50)], b"x")
    assert coap.decode(good).payload == b"x"
    for bad in (b"", b"\x40\x01\x00",  # shorter than the header
                b"\x80\x01\x00\x01",  # version 2
                b"\x49\x01\x00\x01" + b"t" * 9,  # TKL 9
                b"\x44\x01\x00\x01tk",  # truncated token
                b"\x40\x01\x00\x01\x15ab",  # option length 5, 2 bytes left
                b"\x40\x01\x00\x01\xd0",  # delta 13 without its byte
                b"\x40\x01\x00\x01\xe0\x01",  # delta 14 with one byte of two
                b"\x40\x01\x00\x01\x1e\x00",  # length 14 truncated
                b"\x40\x01\x00\x01\xf1a",  # delta nibble 15 that is not the marker
                b"\x40\x01\x00\x01\x1fa",  # length nibble 15
                b"\x40\x01\x00\x01\xff",  # marker, no payload
                b"\x41\x00\x00\x01t",  # an Empty message with a token
                b"\x60\x00\x00\x01\xff!",  # an Empty message with a payload
                b"\x40\x01\x00\x01\xe0\xff\xff\xe0\xff\xff"):  # option number beyond 65535
        raises(coap.CoAPError, coap.decode, bad)
    assert issubclass(coap.CoAPError, DTLSError)
    assert issubclass(coap.CoAPTimeout, coap.CoAPError) and issubclass(coap.CoAPReset, coap.CoAPError)


def test_code_text_reason_and_str():
    for code, text, reason in ((0x45, "2.05", "Content"), (0x41, "2.01", "Created"), (0x5F, "2.31", "Continue"),
                               (0x84, "4.04", "Not Found"), (0x8D, "4.13", "Request Entity Too Large"),
                               (0xA5, "5.05", "Proxying Not Supported"), (0x4A, "2.10", "")):
        m = coap.decode(coap.encode(ACK, code, 1))
        assert (m.code_text, m.reason) == (text, reason), (m.code_text, m.reason)
        assert str(m) == (text + " " + reason if reason else text)


def test_encode_refuses_bad_input():
    raises(UsageError, coap.encode, CON, 1, 1, b"123456789")
    for bad in ((0, b""), (65536, b""), ("11", b""), (11, 1.5), (11, None), (11, -1)):
        raises(UsageError, coap.encode, CON, 1, 1, b"", [bad])


# ---- requests and responses --------------------------------------------------------------------

def _piggybacked(aio):
    def server(link, m):
        answer(link, m, 0x45, [(12, 50), (14, 30), (4, b"v1")], b'{"t":21.5}', delay_ms=40)

    c = Case(aio, server)
    r = c.call("get", "/sensors/t", query="unit=C&x", accept=50)
    assert (r.code, r.code_text, r.reason, str(r)) == (0x45, "2.05", "Content", "2.05 Content")
    assert r.payload == b'{"t":21.5}' and r.content_format == 50 and r.max_age == 30 and r.etag == b"v1"
    assert [s[2] for s in c.link.sent] == ["request"]  # the first transmission: dtls.request()
    m = c.link.messages()[0]
    assert (m.type, m.code, m.mid, m.token) == (CON, 1, 0xABCD, b"\x12\x34\xab\xcd")
    assert m.options == [(11, b"sensors"), (11, b"t"), (15, b"unit=C"), (15, b"x"), (17, b"\x32")], m.options
    assert (r.mid, r.token) == (0xABCD, b"\x12\x34\xab\xcd")
    assert c.link.reserved == [0x1234ABCD] and c.cc.sent == 1 and c.cc.retransmissions == 0
    assert c.link.now == 40


def test_piggybacked_response():
    both(_piggybacked)


def _methods_and_payloads(aio):
    def server(link, m):
        answer(link, m, 0x44 if m.code != 4 else 0x42, [], bytes(m.payload))

    c = Case(aio, server)
    for method, args, code, echo in (("post", ("/a", b"x"), 2, b"x"), ("put", ("a/b/", "y"), 3, b"y"),
                                     ("delete", ("/",), 4, b""), ("fetch", ("/q?k=v", b"{}"), 5, b"{}")):
        r = c.call(method, *args, content_format=60)
        m = c.link.messages()[-1]
        assert m.code == code and r.payload == echo, (method, m.code, r.payload)
    ms = c.link.messages()
    assert ms[1].options[:3] == [(11, b"a"), (11, b"b"), (11, b"")]  # "a/b/": a trailing empty segment
    assert [o for o in ms[2].options if o[0] == 11] == []  # "/": no Uri-Path at all
    assert ms[3].options == [(11, b"q"), (12, b"\x3c"), (15, b"k=v")]
    c.call("get", ["a/b", "c?d", ""], query=["x=1"])  # segments as they are
    assert c.link.messages()[-1].options == [(11, b"a/b"), (11, b"c?d"), (11, b""), (15, b"x=1")]
    r = c.call("request", "iPatch", "/p", b"d", confirmable=False)  # names in any case
    m = c.link.messages()[-1]
    assert (m.code, m.type, r.type) == (7, NON, NON)
    assert c.link.reserved == [0x1234ABCD + i for i in range(6)]  # one value per message


def test_methods_paths_and_payloads():
    both(_methods_and_payloads)


def _separate(aio, rtype):
    def server(link, m):
        if m.type == CON:
            link.reply(coap.encode(ACK, 0, m.mid), 10)  # the empty ACK: a response will follow
            link.reply(coap.encode(rtype, 0x45, 0x7001, m.token, [], b"later"), 4500)

    c = Case(aio, server)
    r = c.call("get", "/slow", timeout_ms=10000)
    assert r.payload == b"later" and r.type == rtype and c.link.now == 4500
    sent = c.link.messages()
    if rtype == CON:  # our empty ACK with the server's MID, nothing else
        assert len(sent) == 2 and (sent[1].type, sent[1].code, sent[1].mid, sent[1].token) == (ACK, 0, 0x7001, b"")
        assert c.link.sent[1][1] == b"\x60\x00\x70\x01" and c.link.sent[1][2] == "send"
    else:
        assert len(sent) == 1
    assert c.cc.retransmissions == 0  # the empty ACK stopped them (the first was due at 2 s)


def test_separate_response_con_is_acked_non_is_not():
    for rtype in (CON, NON):
        _separate(False, rtype)
        _separate(True, rtype)


def _separate_before_ack(aio):
    def server(link, m):  # the empty ACK was lost: the response implies it (RFC 7252 5.2.2)
        if m.type == CON and not link.sent[1:]:
            link.reply(coap.encode(CON, 0x44, 0x0101, m.token), 500)

    c = Case(aio, server)
    r = c.call("put", "/x", b"1")
    assert r.code == 0x44 and [(m.type, m.mid) for m in c.link.messages()] == [(CON, 0xABCD), (ACK, 0x0101)]


def test_separate_response_before_the_empty_ack():
    both(_separate_before_ack)


def _reset(aio):
    def server(link, m):
        link.reply(coap.encode(RST, 0, m.mid), 30)

    c = Case(aio, server)
    e = raises(coap.CoAPReset, c.call, "get", "/nope")
    assert "RST" in str(e) and c.link.now == 30
    c = Case(aio, server)
    raises(coap.CoAPReset, c.call, "get", "/nope", confirmable=False)  # a NON can be reset too


def test_reset_raises_coapreset():
    both(_reset)


def _wrong_token(aio):
    def server(link, m):
        if m.type != CON:
            return
        other = bytes(b ^ 0xFF for b in m.token)
        link.reply(coap.encode(ACK, 0x45, m.mid, other, [], b"not yours"), 10)  # our MID, another token
        link.reply(coap.encode(NON, 0x45, 0x0200, other, [], b"not yours"), 20)
        link.reply(coap.encode(CON, 0x45, 0x0201, other, [], b"not yours"), 30)  # gets a RST
        link.reply(coap.encode(ACK, 0x45, (m.mid + 1) & 0xFFFF, m.token, [], b"other MID"), 40)
        link.reply(coap.encode(NON, 0x45, 0x0202, m.token, [], b"mine"), 2500)

    c = Case(aio, server, rng=0xFFFF)  # initial timeout 3 s: no retransmission before 2.5 s
    r = c.call("get", "/t")
    assert r.payload == b"mine" and c.cc.ignored == 4 and c.cc.retransmissions == 0
    sent = c.link.messages()
    assert [(m.type, m.mid, m.code) for m in sent[1:]] == [(RST, 0x0201, 0)], sent
    assert c.link.sent[1][1] == b"\x70\x00\x02\x01"


def test_other_tokens_and_mids_are_never_taken():
    both(_wrong_token)


def _duplicate_separate(aio):
    state = {"n": 0}

    def server(link, m):
        if m.type != CON:
            return
        state["n"] += 1
        if state["n"] == 1:  # a separate CON response, retransmitted: our ACK was "lost"
            link.reply(coap.encode(ACK, 0, m.mid), 5)
            link.reply(coap.encode(CON, 0x45, 0x0300, m.token, [], b"one"), 100)
            link.reply(coap.encode(CON, 0x45, 0x0300, m.token, [], b"one"), 2100)
        else:
            answer(link, m, 0x45, [], b"two", 2500)

    c = Case(aio, server, rng=0xFFFF)  # 3 s: the second request is not retransmitted
    assert c.call("get", "/1").payload == b"one"
    assert c.call("get", "/2").payload == b"two"  # the duplicate arrived while it waited
    sent = c.link.messages()
    assert [(m.type, m.code, m.mid) for m in sent] == [(CON, 1, 0xABCD), (ACK, 0, 0x0300), (CON, 1, 0xABCE),
                                                       (ACK, 0, 0x0300)], sent
    assert c.cc.ignored == 1  # the duplicate (ACKed again)


def test_duplicate_separate_response_is_acked_again():
    both(_duplicate_separate)


def _malformed(aio):
    def server(link, m):
        if m.type == CON:
            for junk in (b"\x17\x03", b"\x49\x45\x00\x01", b"\x60\x45" + bytes((m.mid >> 8, m.mid & 255)) + b"\xf1"):
                link.reply(junk, 5)
            answer(link, m, 0x45, [], b"ok", 10)

    c = Case(aio, server)
    assert c.call("get", "/").payload == b"ok" and c.cc.malformed == 3


def test_malformed_replies_are_dropped_and_counted():
    both(_malformed)


def _closed(aio):
    c = Case(aio, lambda link, m: link.reply(b"", 5))
    raises(ConnectionClosed, c.call, "get", "/")


def test_server_closing_the_dtls_connection():
    both(_closed)


def _non_request_con_response(aio):
    def server(link, m):  # a NON request answered by a separate CON response: we ACK it
        link.reply(coap.encode(CON, 0x45, 0x0400, m.token, [], b"con"), 300)

    c = Case(aio, server)
    r = c.call("get", "/n", confirmable=False)
    assert r.payload == b"con" and [(m.type, m.mid) for m in c.link.messages()] == [(NON, 0xABCD), (ACK, 0x0400)]


def test_non_request_gets_con_response_and_acks_it():
    both(_non_request_con_response)


def _ping(aio):
    def server(link, m):  # the server pings us (an Empty CON) before answering
        if m.type == CON:
            link.reply(coap.encode(CON, 0, 0x0500), 10)
            answer(link, m, 0x45, [], b"pong", 20)

    c = Case(aio, server)
    assert c.call("get", "/").payload == b"pong"
    assert [(m.type, m.mid) for m in c.link.messages()[1:]] == [(RST, 0x0500)]  # RFC 7252 4.3


def test_empty_con_from_the_server_gets_a_reset():
    both(_ping)


# ---- retransmission (RFC 7252 4.8) -------------------------------------------------------------

def _retransmission(aio):
    for r, t in ((0, 2000), (0xFFFF, 3000), (0x8000, 2500)):  # initial timeout in [2, 3] s
        c = Case(aio, None, rng=r)
        e = raises(coap.CoAPTimeout, c.call, "get", "/", timeout_ms=10 ** 6)
        times = [s[0] for s in c.link.sent]
        assert times == [0, t, 3 * t, 7 * t, 15 * t], (r, times)  # doubling, MAX_RETRANSMIT 4
        assert [s[2] for s in c.link.sent] == ["request", "send", "send", "send", "send"]
        assert len(set(s[1] for s in c.link.sent)) == 1  # the same bytes: same MID and token
        assert c.link.now == 31 * t and "4 retransmissions" in str(e)
        assert c.cc.retransmissions == 4 and c.cc.sent == 5 and len(c.link.reserved) == 1
    c = Case(aio, None)  # timeout_ms bounds it all
    raises(coap.CoAPTimeout, c.call, "get", "/", timeout_ms=10000)
    assert [s[0] for s in c.link.sent] == [0, 2000, 6000] and c.link.now == 10000
    c = Case(aio, None, ack_timeout_ms=100, ack_random_factor=1, max_retransmit=2)  # overridable
    raises(coap.CoAPTimeout, c.call, "get", "/", timeout_ms=10000)
    assert [s[0] for s in c.link.sent] == [0, 100, 300] and c.link.now == 700
    c = Case(aio, None)  # NON: one transmission, wait until timeout_ms
    raises(coap.CoAPTimeout, c.call, "get", "/", confirmable=False, timeout_ms=7000)
    assert [s[0] for s in c.link.sent] == [0] and c.link.now == 7000


def test_con_retransmission_timing():
    both(_retransmission)


def _lost_request(aio):
    def server(link, m):  # the first two copies are lost
        if len(link.sent) == 3:
            answer(link, m, 0x45, [], b"third", 50)

    c = Case(aio, server)
    r = c.call("get", "/")
    assert r.payload == b"third" and c.link.now == 6050 and c.cc.retransmissions == 2


def test_lost_request_is_retransmitted():
    both(_lost_request)


def _empty_ack_then_silence(aio):
    def server(link, m):
        link.reply(coap.encode(ACK, 0, m.mid), 100)

    c = Case(aio, server)
    raises(coap.CoAPTimeout, c.call, "get", "/", timeout_ms=20000)
    assert len(c.link.sent) == 1 and c.link.now == 20000  # ACKed: no retransmission


def test_empty_ack_stops_retransmission_timeout_still_bounds():
    both(_empty_ack_then_silence)


# ---- block-wise (RFC 7959) ---------------------------------------------------------------------

BODY = bytes(range(256)) * 2


def _block2(aio):
    body = BODY[:150]  # blocks of 64: 64, 64, 22
    c = Case(aio, block2_server(body, 2, etag=b"e1"))
    r = c.call("get", "/big", query="q=1")
    assert r.payload == body and r.code == 0x45 and r.etag == b"e1"
    assert [s[2] for s in c.link.sent] == ["request", "send", "send"]  # dtls.request() for the first
    sent = c.link.messages()
    assert len(sent) == 3 and c.link.reserved == [0x1234ABCD, 0x1234ABCE, 0x1234ABCF]
    for i, m in enumerate(sent):  # each follow-up a new message: new MID and token, same options
        assert (m.mid, m.token) == (0xABCD + i, token_of(0x1234ABCD + i))
        assert [o for o in m.options if o[0] != 23] == [(11, b"big"), (15, b"q=1")]
        b2 = m.option(23)
        assert (i == 0 and b2 is None) or block_of(b2) == (i, 0, 2), (i, b2)
    assert block_of(r.option(23)) == (2, 0, 2) and (r.mid, r.token) == (0xABCF, token_of(0x1234ABCF))
    # early negotiation: block_size asks for 32-byte blocks from the first request on
    c = Case(aio, block2_server(body, 2))
    r = c.call("get", "/big", block_size=32)
    assert r.payload == body
    assert [block_of(m.option(23)) for m in c.link.messages()] == [(i, 0, 1) for i in range(5)]


def test_block2_reply_in_three_blocks():
    both(_block2)


def _block2_errors(aio):
    c = Case(aio, block2_server(BODY * 4, 2), max_size=1024)  # 2 KB in 64-byte blocks
    e = raises(coap.CoAPError, c.call, "get", "/huge")
    assert "max_size" in str(e) and len(c.link.sent) == 17  # 16 x 64 = 1024: the 17th is too much

    def size2(link, m):  # Size2 announces too much: refused at once
        answer(link, m, 0x45, [(23, block(0, 1, 2)), (28, 1 << 20)], BODY[:64])

    c = Case(aio, size2)
    raises(coap.CoAPError, c.call, "get", "/huge")
    assert len(c.link.sent) == 1

    def wrong_num(link, m):  # answers block 0 whatever is asked
        answer(link, m, 0x45, [(23, block(0, 1, 2))], BODY[:64])

    raises(coap.CoAPError, Case(aio, wrong_num).call, "get", "/x")

    def short(link, m):  # a block with M set must be whole
        answer(link, m, 0x45, [(23, block(0, 1, 2))], BODY[:10])

    raises(coap.CoAPError, Case(aio, short).call, "get", "/x")
    etags = [b"a", b"b"]

    def changing(link, m):
        num = 0 if m.option(23) is None else block_of(m.option(23))[0]
        answer(link, m, 0x45, [(4, etags[num]), (23, block(num, 1, 2))], BODY[:64])

    e = raises(coap.CoAPError, Case(aio, changing).call, "get", "/x")
    assert "ETag" in str(e)

    def bert(link, m):
        answer(link, m, 0x45, [(23, block(0, 1, 7))], BODY[:64])

    raises(coap.CoAPError, Case(aio, bert).call, "get", "/x")


def _block2_server_shrinks(aio):
    body = BODY[:200]

    def server(link, m):  # 64-byte blocks first, then 32-byte ones (RFC 7959 2.4: its choice)
        num = 0 if m.option(23) is None else block_of(m.option(23))[0]
        szx = 2 if num == 0 else 1
        if num:
            num = num * 2  # the client asked for NUM in 64s: the same offset in 32s
        s = 16 << szx
        more = (num + 1) * s < len(body)
        answer(link, m, 0x45, [(23, block(num, more, szx))], body[num * s:(num + 1) * s])
        if num:
            link.server = block2_server(body, 1)  # then it goes on in 32s as asked

    c = Case(aio, server)
    r = c.call("get", "/shrink")
    assert r.payload == body
    assert [block_of(m.option(23)) for m in c.link.messages()[1:]] == [(1, 0, 2), (3, 0, 1), (4, 0, 1),
                                                                       (5, 0, 1), (6, 0, 1)]


def test_block2_server_changes_to_smaller_blocks():
    both(_block2_server_shrinks)


def _block2_interrupted(aio):
    def silent_after_first(link, m):
        if m.option(23) is None:
            answer(link, m, 0x45, [(23, block(0, 1, 2))], BODY[:64])
        elif block_of(m.option(23))[0] == 1:
            link.reply(coap.encode(RST, 0, m.mid), 5)

    c = Case(aio, silent_after_first)
    raises(coap.CoAPReset, c.call, "get", "/x")
    c = Case(aio, lambda link, m: None if m.option(23) else answer(link, m, 0x45, [(23, block(0, 1, 2))], BODY[:64]))
    raises(coap.CoAPTimeout, c.call, "get", "/x", timeout_ms=5000)
    assert c.link.now == 5000  # the whole transfer is bounded by timeout_ms


def test_block2_reset_or_silence_midway():
    both(_block2_interrupted)


def test_block2_bounds_and_mismatches():
    both(_block2_errors)


def _block1(aio):
    data = BODY[:160]  # 2.5 blocks of 64
    srv = Block1Server()
    c = Case(aio, srv)
    r = c.call("post", "/up", data, block_size=64, content_format=42)
    assert r.code == 0x44 and r.payload == b"stored" and bytes(srv.body) == data
    assert srv.blocks == [(0, 1, 2, 64), (1, 1, 2, 64), (2, 0, 2, 32)]
    sent = c.link.messages()
    assert [m.mid for m in sent] == [0xABCD, 0xABCE, 0xABCF] and len(c.link.reserved) == 3
    assert all(m.option(12) == b"\x2a" and m.option(11) == b"up" for m in sent)
    # the server asks for 32-byte blocks in its first 2.31: the rest goes in 32s
    srv = Block1Server(ask_szx=1)
    c = Case(aio, srv)
    r = c.call("put", "/up", data, block_size=64)
    assert bytes(srv.body) == data and r.code == 0x44
    assert srv.blocks == [(0, 1, 2, 64), (2, 1, 1, 32), (3, 1, 1, 32), (4, 0, 1, 32)], srv.blocks
    srv = Block1Server(bare=True)  # a 2.31 Continue without Block1 acks the block just sent
    r = Case(aio, srv).call("post", "/up", data, block_size=64)
    assert bytes(srv.body) == data and r.code == 0x44 and len(srv.blocks) == 3


def test_block1_upload():
    both(_block1)


def _block1_from_mtu(aio):
    data = bytes(1000)
    srv = Block1Server()
    c = Case(aio, srv, mtu=300)  # the largest CoAP message one record carries
    r = c.call("post", "/a/long/path/name", data)
    assert bytes(srv.body) == data and r.code == 0x44
    assert [b[2] for b in srv.blocks] == [4] * 4 and max(len(s[1]) for s in c.link.sent) <= 300
    srv = Block1Server()
    c = Case(aio, srv, mtu=300)  # block_size larger than a record carries: smaller blocks
    c.call("put", "/a", data, block_size=1024)
    assert bytes(srv.body) == data and [b[2] for b in srv.blocks] == [4] * 4
    c = Case(aio, Block1Server(), mtu=300)  # options that leave no room for a block
    raises(UsageError, c.call, "put", "/a", data, options=[(2049, bytes(280))])
    c = Case(aio, Block1Server(), mtu=300)  # fits one message: no block-wise
    c.call("post", "/a", bytes(250))
    assert c.link.messages()[0].option(27) is None and len(c.link.sent) == 1
    c = Case(aio, Block1Server())  # no connection to ask: RFC 7252 4.6's 1152-byte message, 1 KB blocks
    c.call("post", "/a", bytes(3000))
    assert [len(m.payload) for m in c.link.messages()] == [1024, 1024, 952]


def test_block1_size_fits_the_mtu():
    both(_block1_from_mtu)


def _block1_errors(aio):
    def refuse(link, m):
        answer(link, m, 0x8D, [(60, 64)])  # 4.13 to the first block: that is the response

    c = Case(aio, refuse)
    r = c.call("post", "/up", bytes(200), block_size=64)
    assert r.code == 0x8D and len(c.link.sent) == 1

    def unaware(link, m):  # a 2.04 without Block1 to a block that is not the last
        answer(link, m, 0x44)

    raises(coap.CoAPError, Case(aio, unaware).call, "post", "/up", bytes(200), block_size=64)


def test_block1_error_and_unaware_server():
    both(_block1_errors)


def _block1_then_block2(aio):
    def server(link, m):
        b1 = m.option(27)
        if b1 is not None:
            num, more, szx = block_of(b1)
            if more:
                return answer(link, m, 0x5F, [(27, block(num, 1, szx))])
            return answer(link, m, 0x44, [(27, block(num, 0, szx)), (23, block(0, 1, 2))], BODY[:64])
        num = block_of(m.option(23))[0]
        assert m.payload == b"", m.payload  # follow-ups carry no payload
        answer(link, m, 0x44, [(23, block(num, 0, 2))], BODY[64:100])

    c = Case(aio, server)
    r = c.call("post", "/rpc", bytes(100), block_size=64)
    assert r.payload == BODY[:100] and len(c.link.sent) == 3


def test_block1_upload_with_block2_reply():
    both(_block1_then_block2)


# ---- the counter, the API ----------------------------------------------------------------------

def _counter_wraps(aio):
    c = Case(aio, block2_server(BODY[:40], 0), counter=0xFFFFFFFE)  # 16-byte blocks: 3 messages
    r = c.call("get", "/w")
    assert r.payload == BODY[:40]
    assert [(m.mid, m.token) for m in c.link.messages()] == [
        (0xFFFE, b"\xff\xff\xff\xfe"), (0xFFFF, b"\xff\xff\xff\xff"), (0, b"\x00\x00\x00\x00")]


def test_mid_and_token_come_from_the_counter():
    both(_counter_wraps)


def test_usage_errors():
    c = Case(False, None)
    for args, kw in ((("BREW", "/"), {}), ((1, "/"), {}), (("GET", b"/x"), {}), (("POST", "/", 5), {}), (("POST", "/", 0), {}),
                     (("GET", "/"), {"options": [(0, b"")]}), (("GET", "/"), {"options": [(70000, b"")]}),
                     (("GET", "/"), {"options": [11]}), (("GET", "/"), {"block_size": 100}),
                     (("GET", "/"), {"timeout_ms": 0}), (("GET", "/"), {"accept": -1}),
                     (("GET", "/"), {"etag": 5}), (("GET", "/"), {"content_format": "json"})):
        raises(UsageError, c.cc.request, *args, **kw)
    assert c.link.sent == [] and c.link.reserved == []  # refused before a counter value went
    for kw in ({"ack_timeout_ms": 0}, {"max_retransmit": -1}, {"max_size": 1.5}, {"ack_random_factor": 0.5}):
        raises(UsageError, coap.Client, c.link, **kw)
    assert (coap.ACK_TIMEOUT_MS, coap.ACK_RANDOM_FACTOR, coap.MAX_RETRANSMIT, coap.MAX_SIZE) == (2000, 1.5, 4, 16384)


def test_options_kwarg_and_etag_list():
    c = Case(False, lambda link, m: answer(link, m, 0x43))
    r = c.call("get", "/v", etag=[b"a", b"b"], options=[(6, 0), (3, "host"), (2049, b"\x01")])
    assert r.code == 0x43 and r.reason == "Valid"
    assert c.link.messages()[0].options == [(3, b"host"), (4, b"a"), (4, b"b"), (6, b""), (11, b"v"),
                                            (2049, b"\x01")]


def test_exchange_is_sans_io():
    # the state machine alone, with time as an argument
    link = Link()
    cc = coap.Client(link, rng=fixed_rng(0), clock=link.clock)
    ex = coap.Exchange(cc, 1, [(11, "x")], b"", CON, 9000, None, 1000)
    out, new = ex.take()
    assert out == [] and coap.decode(new).mid == 0xABCD and ex.timer() == 3000 and not ex.done
    ex.handle_timer(2999)
    assert ex.take() == ([], None)
    ex.handle_timer(3000)
    assert ex.take() == ([new], None) and ex.timer() == 7000
    ex.receive(coap.encode(ACK, 0, 0xABCD), 3500)
    assert ex.timer() == 10000  # ACKed: only the deadline is left
    ex.receive(coap.encode(CON, 0x45, 0x55, token_of(0x1234ABCD), [], b"!"), 4000)
    out, new = ex.take()
    assert out == [b"\x60\x00\x00\x55"] and new is None and ex.done and ex.result().payload == b"!"
