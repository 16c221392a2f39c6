# Connection ID (RFC 9146) on the client: the offer, tls12_cid records both ways, the checks.
# Both runtimes; fixed RNG, fake time. The FakeServer seals and opens tls12_cid records with
# its own construction (fakeserver.CidCipher, written from the RFC text), so a record the
# client gets wrong fails there, not only here.
from dtls_lite import connection as cn
from dtls_lite import handshake as hs
from dtls_lite import record as rl
from dtls_lite.errors import ProtocolError, UsageError
from fakeserver import (CT_TLS12_CID, IDENTITY, PSK, CidCipher, FakeServer, Rng, cid_aad,
                        cid_records, messages, records)
from helpers import (drop_handshake_code_as_before, events, handshake, keep_handshake_code,
                     new_client, raises, sent_alerts)

SERVER_CID = b"\xbe\xef\x01\x02\x03\x04"  # 6 bytes, as in the overhead target
# One copy of dtls_lite.handshake (this module and fakeserver hold it): helpers says why.
setup_module, teardown_module = keep_handshake_code, drop_handshake_code_as_before


def hello_extensions(datagram):
    """{type: data} of the ClientHello in datagram (parsed here, not by dtls_lite)."""
    body = messages(records(datagram)[0][3])[0][4]
    off = 35 + body[34]  # version, random, session_id
    off += 1 + body[off]  # cookie
    off += 2 + (body[off] << 8 | body[off + 1])  # cipher_suites
    off += 1 + body[off]  # compression_methods
    end = off + 2 + (body[off] << 8 | body[off + 1])
    off += 2
    out = {}
    while off < end:
        t, n = body[off] << 8 | body[off + 1], body[off + 2] << 8 | body[off + 3]
        out[t] = body[off + 4:off + 4 + n]
        off += 4 + n
    assert off == end == len(body)
    return out


def cid_server(cid=SERVER_CID, **kw):
    kw.setdefault("cookie", b"")
    srv = FakeServer(**kw)
    srv.cid = cid
    return srv


def connected(client_cid=b"", server_cid=SERVER_CID, suites=None, **kw):
    c = new_client(cid=client_cid, suites=suites) if suites else new_client(cid=client_cid)
    srv = cid_server(server_cid, **kw)
    handshake(c, srv)
    # oom_drops: on a small heap (the emulated ESP32) a datagram may be dropped for lack of memory
    assert c.state == cn.ST_CONNECTED, (c.state, c.error, c.oom_drops)
    assert srv.client_finished_ok is True
    events(c)
    return c, srv


def test_offer_is_an_empty_cid_by_default_and_costs_five_bytes():
    with_cid, without = new_client(), new_client(cid=None)
    with_cid.connect(0)
    without.connect(0)
    a, b = with_cid.datagrams_to_send()[0], without.datagrams_to_send()[0]
    assert hello_extensions(a)[54] == b"\x00"  # connection_id, cid<0..255> of length 0
    assert 54 not in hello_extensions(b)
    assert len(a) - len(b) == 5
    c = new_client(cid=b"\x01\x02\x03")
    c.connect(0)
    assert hello_extensions(c.datagrams_to_send()[0])[54] == b"\x03\x01\x02\x03"


def test_cid_offer_survives_the_cookie_exchange():
    c = new_client()
    srv = cid_server(cookie=b"\x42" * 16)
    flights = handshake(c, srv)
    assert len(srv.client_hellos) == 2 and srv.client_cid == b""
    assert [hello_extensions(f[0])[54] for f in flights[:2]] == [b"\x00", b"\x00"]
    assert c.state == cn.ST_CONNECTED and c.write_cid == SERVER_CID


def test_negotiated_cid_records_are_tls12_cid_with_rfc_9146_aad():
    c, srv = connected()
    assert (c.write_cid, c.read_cid) == (SERVER_CID, b"")
    # The client's Finished already went out as a tls12_cid record that the fake server
    # opened with its own RFC 9146 additional data.
    assert srv.cid_seen == [(1, 0, SERVER_CID)] and srv.cid_violations == 0
    assert srv.received == [(rl.CT_HANDSHAKE, srv.received[0][1])]
    c.send(b"hello")
    d = c.datagrams_to_send()[0]
    (ctype, epoch, seq, cid, frag), = cid_records(d, len(SERVER_CID))
    assert (ctype, epoch, seq, cid) == (CT_TLS12_CID, 1, 1, SERVER_CID)
    assert d[11:17] == SERVER_CID and len(d) == 19 + len(frag)  # header: CID before length
    assert len(d) - len(b"hello") == 36  # 19 header + 8 explicit nonce + 8 tag + 1 inner type
    srv.handle(d)
    assert srv.received[-1] == (rl.CT_APPLICATION_DATA, b"hello") and srv.cid_violations == 0
    # the server sends no CID (ours is empty): plain records, accepted as before
    c.receive(srv.app(b"pong"), 1)
    assert events(c) == [(cn.EVENT_DATA, b"pong")]
    assert c.stats.records_dropped == 0


def test_alerts_travel_as_tls12_cid_too():
    c, srv = connected()
    c.close()
    d = c.datagrams_to_send()[0]
    assert [r[0] for r in cid_records(d, 6)] == [CT_TLS12_CID]
    srv.handle(d)
    assert srv.received[-1] == (rl.CT_ALERT, b"\x01\x00")


def test_tampered_cid_or_header_fails_the_independent_check():
    c, srv = connected()
    c.send(b"x" * 20)
    d = bytearray(c.datagrams_to_send()[0])
    for i in (5, 10, 11, 16):  # sequence_number (in the AAD), the CID (checked, and in the AAD)
        t = bytearray(d)
        t[i] ^= 1
        before = len(srv.received)
        srv.handle(bytes(t))
        assert len(srv.received) == before, i
    assert srv.cid_violations == 2  # the two CID flips; the sequence flips failed the tag
    srv.handle(bytes(d))
    assert srv.received[-1] == (rl.CT_APPLICATION_DATA, b"x" * 20)


def test_record_overhead_with_a_six_byte_cid():
    kb = bytes(range(40))
    ws, _ = rl.epoch_states(1, rl.SUITE_PSK_AES_128_CCM_8, False, kb, Rng(1), write_cid=SERVER_CID)
    assert ws.overhead() == 36  # the target: 19 + 8 + 8 + 1
    assert len(ws.protect(rl.CT_APPLICATION_DATA, b"a" * 100)) == 136
    ws, _ = rl.epoch_states(1, rl.SUITE_PSK_AES_128_CCM, False, kb, Rng(1), write_cid=SERVER_CID)
    assert ws.overhead() == 44 and len(ws.protect(rl.CT_APPLICATION_DATA, b"")) == 44
    plain, _ = rl.epoch_states(1, rl.SUITE_PSK_AES_128_CCM_8, False, kb, Rng(1))
    assert plain.overhead() == 29  # without a CID nothing changes
    c, _ = connected()
    assert c.max_data_size == 1200 - 36


def test_cid_records_match_the_independent_construction_both_ways():
    """dtls_lite.record against fakeserver.CidCipher, per suite and MAC order: each seals,
    the other opens (the server side pads to 16 bytes, which the client strips)."""
    cases = [(rl.SUITE_PSK_AES_128_CCM_8, False), (rl.SUITE_PSK_AES_128_CCM, False),
             (rl.SUITE_PSK_AES_128_CBC_SHA256, True), (rl.SUITE_PSK_AES_128_CBC_SHA256, False)]
    if rl.SUITE_PSK_AES_128_GCM_SHA256 in rl.supported_suites():
        cases.append((rl.SUITE_PSK_AES_128_GCM_SHA256, False))
    for suite, etm in cases:
        kb = bytes((i * 7 + 3) & 0xFF for i in range(rl.key_block_len(suite)))
        ws, rs = rl.epoch_states(1, suite, etm, kb, Rng(2), write_cid=SERVER_CID, read_cid=b"\x77\x66")
        srv_in = CidCipher(suite, etm, kb, True, SERVER_CID, Rng(3))
        srv_out = CidCipher(suite, etm, kb, False, b"\x77\x66", Rng(4))
        for n in (0, 1, 15, 16, 100):
            data = bytes(range(n))
            rec = ws.protect(rl.CT_APPLICATION_DATA, data)
            (ctype, epoch, seq, cid, frag), = cid_records(rec, 6)
            assert (ctype, cid) == (CT_TLS12_CID, SERVER_CID)
            assert srv_in.open(epoch, seq, frag) == (rl.CT_APPLICATION_DATA, data), (suite, etm, n)
            rec = srv_out.protect(rl.CT_HANDSHAKE, data)
            assert rl.record_end(rec, 0, 2) == len(rec)
            assert rs.open(rec) == data + bytes((rl.CT_HANDSHAKE,)), (suite, etm, n)
            assert rs.open(rec) is None  # replay


def test_draft_aad_is_not_accepted():
    """The drafts' additional data (seq_num, tls12_cid, version, cid, cid_length, length,
    draft-ietf-tls-dtls-connection-id-05 5.3) must not authenticate: RFC 9146's differs."""
    kb = bytes(40)
    ws, _ = rl.epoch_states(1, rl.SUITE_PSK_AES_128_CCM_8, False, kb, Rng(1), write_cid=b"\xab")
    rec = ws.protect(rl.CT_APPLICATION_DATA, b"draft")
    ccm = CidCipher(rl.SUITE_PSK_AES_128_CCM_8, False, kb, True, b"\xab", Rng(1)).aead
    n = len(rec) - 14 - 8 - 8
    draft = rec[3:11] + b"\x19\xfe\xfd\xab\x01" + bytes((0, n))
    assert ccm.open(kb[32:36] + rec[14:22], draft, rec[22:]) is None
    assert ccm.open(kb[32:36] + rec[14:22], cid_aad(1, 0, b"\xab", n), rec[22:]) == b"draft\x17"


def test_client_cid_records_from_the_server_are_opened_and_checked():
    c, srv = connected(client_cid=b"\x01\x02\x03\x04", server_cid=b"\xaa")
    assert (c.write_cid, c.read_cid) == (b"\xaa", b"\x01\x02\x03\x04")
    # the server's Finished came as tls12_cid with our CID and zero padding: it verified
    rec = srv.app(b"to the client")
    assert rec[0] == CT_TLS12_CID and rec[11:15] == b"\x01\x02\x03\x04"
    c.receive(rec + srv.app(b"second, same datagram"), 1)
    assert events(c) == [(cn.EVENT_DATA, b"to the client"), (cn.EVENT_DATA, b"second, same datagram")]
    wrong = bytearray(srv.app(b"other cid"))
    wrong[14] ^= 0xFF
    c.receive(bytes(wrong), 2)
    # the right keys but the RFC 6347 form while a CID was negotiated: dropped too (RFC 9146 3)
    kb = hs.key_block(srv.master, srv.client_random, srv.server_random, rl.key_block_len(srv.suite))
    plain_form = rl.epoch_states(1, srv.suite, False, kb, Rng(1), client=False)[0]
    plain_form.seq = 100
    c.receive(plain_form.protect(rl.CT_APPLICATION_DATA, b"no cid"), 3)
    assert events(c) == [] and c.stats.records_dropped == 2
    c.receive(srv.app(b"still fine"), 4)
    assert events(c) == [(cn.EVENT_DATA, b"still fine")]


def test_all_zero_inner_plaintext_and_epoch_0_cid_records_are_dropped():
    c, srv = connected(client_cid=b"\x09", server_cid=b"")
    assert (c.write_cid, c.read_cid) == (b"", b"\x09")
    c.send(b"plain")  # the server wants no CID: our records stay in the RFC 6347 form
    assert records(c.datagrams_to_send()[0])[0][0] == rl.CT_APPLICATION_DATA
    zeros = srv.write1.protect(0, b"")  # inner plaintext: type 0 and padding, all zeros
    c.receive(zeros, 1)
    # epoch 0, sequence_number 5, CID 09, length 1, "inner" type 23: plaintext never uses it
    c.receive(bytes([CT_TLS12_CID, 0xFE, 0xFD]) + bytes(7) + b"\x05" + b"\x09\x00\x01\x17", 2)
    assert events(c) == [] and c.stats.records_dropped == 2 and c.state == cn.ST_CONNECTED


def test_server_ignoring_the_extension_changes_nothing():
    c = new_client()
    srv = FakeServer(cookie=b"")  # srv.cid is None: it does not answer connection_id
    flights = handshake(c, srv)
    assert hello_extensions(flights[0][0])[54] == b"\x00" and srv.client_cid == b""
    assert c.state == cn.ST_CONNECTED and (c.write_cid, c.read_cid) == (b"", b"")
    assert [r[0] for r in records(flights[-1][0])] == [rl.CT_HANDSHAKE, rl.CT_CHANGE_CIPHER_SPEC,
                                                       rl.CT_HANDSHAKE]
    c.send(b"hello")
    d = c.datagrams_to_send()[0]
    assert d[0] == rl.CT_APPLICATION_DATA and len(d) - 5 == 29
    srv.handle(d)
    assert srv.received[-1] == (rl.CT_APPLICATION_DATA, b"hello")


def test_server_answering_with_an_empty_cid_changes_nothing_on_the_wire():
    c, srv = connected(server_cid=b"")
    assert (c.write_cid, c.read_cid) == (b"", b"")
    c.send(b"hello")
    d = c.datagrams_to_send()[0]
    assert d[0] == rl.CT_APPLICATION_DATA and len(d) - 5 == 29


def test_unrequested_connection_id_is_unsupported_extension():
    c = new_client(cid=None)
    srv = FakeServer(cookie=b"", extensions=b"\xff\x01\x00\x01\x00\x00\x17\x00\x00\x00\x36\x00\x02\x01\xaa")
    c.connect(0)
    out = []
    for d in c.datagrams_to_send():
        c.receive(b"".join(srv.handle(d)), 0)
        out += c.datagrams_to_send()
    assert c.state == cn.ST_CLOSED and isinstance(c.error, ProtocolError)
    assert c.error.alert == hs.ALERT_UNSUPPORTED_EXTENSION
    assert sent_alerts(out) == [bytes((2, hs.ALERT_UNSUPPORTED_EXTENSION))]


def test_malformed_connection_id_extension_is_decode_error():
    for data in (b"", b"\x03\xaa", b"\x01\xaa\xbb"):
        c = new_client()
        ext = b"\x00\x17\x00\x00\x00\x36" + bytes((0, len(data))) + data
        srv = FakeServer(cookie=b"", extensions=ext)
        c.connect(0)
        c.receive(b"".join(srv.handle(c.datagrams_to_send()[0])), 0)
        assert isinstance(c.error, ProtocolError) and c.error.alert == hs.ALERT_DECODE_ERROR, data


def test_cid_longer_than_255_bytes_is_refused():
    e = raises(UsageError, lambda: new_client(cid=bytes(256)).connect(0))
    assert "255" in str(e)


def test_record_end_uses_the_cid_length_only_for_tls12_cid_records():
    plain = bytes([23, 0xFE, 0xFD]) + bytes(8) + b"\x00\x02ab"
    cid = bytes([25, 0xFE, 0xFD]) + bytes(8) + b"\xc1\xc2" + b"\x00\x01z"
    assert rl.record_end(plain + cid, 0, 2) == 15
    assert rl.record_end(plain + cid, 15, 2) == 31
    assert rl.record_end(cid, 0, 3) == -1  # with a wrong CID length the length field is off


def test_abbreviated_handshake_negotiates_the_cid_afresh():
    """RFC 9146 3: on resumption connection_id is negotiated again. The server's ServerHello,
    ChangeCipherSpec and Finished share one datagram, the Finished already in the tls12_cid
    form with our CID: the record framing must pick up the CID length midway."""
    first, _ = connected()
    session = first.session
    srv = cid_server(b"\x51\x52\x53")
    srv.sessions = {session.session_id: session.master_secret}
    c = cn.Connection(IDENTITY, PSK, rng=Rng(5), session=session, cid=b"\xc1\xc2")
    flights = handshake(c, srv)
    assert srv.resumed and c.stats.handshake_kind == "abbreviated", c.error
    assert (c.write_cid, c.read_cid) == (b"\x51\x52\x53", b"\xc1\xc2")
    assert srv.client_finished_ok is True and srv.cid_seen == [(1, 0, b"\x51\x52\x53")]
    assert [r[0] for r in cid_records(flights[1][0], 3)] == [rl.CT_CHANGE_CIPHER_SPEC, CT_TLS12_CID]
    c.receive(srv.app(b"resumed with cid"), 1)
    assert events(c)[-1] == (cn.EVENT_DATA, b"resumed with cid")


def test_saved_connection_keeps_both_cids():
    c, srv = connected(client_cid=b"\x0c", server_cid=SERVER_CID)
    c.send(b"one")
    srv.handle(c.datagrams_to_send()[0])
    saved = c.snapshot(10)
    assert (saved.write_cid, saved.read_cid) == (SERVER_CID, b"\x0c")
    again = new_client(cid=b"\x0c")
    again.restore(saved, 100)
    again.send(b"after wake")
    d = again.datagrams_to_send()[0]
    assert cid_records(d, 6)[0][:4] == (CT_TLS12_CID, 1, 12, SERVER_CID)
    srv.handle(d)
    assert srv.received[-1] == (rl.CT_APPLICATION_DATA, b"after wake")
    again.receive(srv.app(b"welcome back"), 101)
    assert events(again)[-1] == (cn.EVENT_DATA, b"welcome back")


# Known answers from Mbed TLS 3.6.6 (ssl_client2 cid=1 cid_val=c1c2 against ssl_server2 cid=1
# cid_val=beef01 nss_keylog=1, records captured by tests/cid_front.py; see /work/notes/F.md):
# (suite, encrypt_then_mac, master_secret, client_random + server_random, the client's first
# application record (CID be:ef:01), the server's answer (CID c1:c2)). Mbed TLS pads the inner
# plaintext to 16 bytes, so these also check that the padding is stripped.
MBEDTLS_RECORDS = [
    (rl.SUITE_PSK_AES_128_CCM_8, False,  # ccm8
     bytes.fromhex(
         "86a5dcfd56c9f353513a03e46c65b9e912219c16535a3197473ba126a91d5b5201605926e94b75a6becd"
         "36d26ea2d0eb"),
     bytes.fromhex(
         "6b0bb9615e880095daec9b65fec0ad4e275861890b28b21e4dda4ac265a1817f6b0bb96147f9bc631bf3"
         "a7e16ecb522f998a11aa90207876b91dd5add0a8fce2"),
     bytes.fromhex(
         "19fefd0001000000000001beef0100500001000000000001382eaa223b31282cf1aa7e1c6fc7060cc161"
         "46d747aaf20051b1b67dd683725285a7a95b7ae8294f1b4548d482630440677135babd0c1ea326b38340"
         "c94cb828903993963c6f632d"),
     bytes.fromhex(
         "19fefd0001000000000001c1c200a00001000000000001c6da0bf7b5bf274b9716583b2c77ba7445807b"
         "8543a6a1ef6f5c903e63b0a543b743432f89d752fa6b5996f1145eb97358d857bbdce1b3d89886f32cf3"
         "8bb08a4546b0ba396d46e3b3237ef2f66ee859d3acbc23994911dbea52dbe1cb9b927cda8e1cfe8875b3"
         "408f874f9892a8c771b69fbba8bf793c686af35aac0ef6a696a9d2f0222b5ec9e776f96f1ac6df0ae727"
         "8d98f5b8cceb9d")),
    (rl.SUITE_PSK_AES_128_CBC_SHA256, True,  # cbc_etm
     bytes.fromhex(
         "ada9eb2e7acd23106bd7c259165d8907045bb38bf1c61b6675c228a37a6c84db5cb0b7e51469b46e38ed"
         "a1e107bebce2"),
     bytes.fromhex(
         "6b0bb962b0e2cf8a7b6fe4acd611c6fafbd9e1b7b0b4f25912648de5a23135b76b0bb96268ace7d8b60e"
         "165b0c9c91e648f7953c8a9b5a08a7eaeea1087519f4"),
     bytes.fromhex(
         "19fefd0001000000000001beef010080703ff336bb1ac706e07b4b00c29e4531721247d9ae2b1f91925d"
         "8ad0f89b0a25790ee87a9d96c8bcaa627b981d99006a7629749e79a900e5d2fdc4f9deb1feb40fd13503"
         "1868642d211bca4cedbdd7b01ba0ec2e139e29669c9104849886160d56189d556a114f8db8c208a7fc06"
         "abcdd6ac2d7775f9a7cfe66a86b260f3caae"),
     bytes.fromhex(
         "19fefd0001000000000001c1c200e035863c7a8dc1f30b4fc572945e941b5dd8b374b0b2841703b66c0e"
         "2cb3bc62234d7fdd6eabc497dfdd74b646d4460c8ef7750f2668aff6f41addaaabb5fa79a620abfb358b"
         "09e6f8e0fbf882b3c45b7072f0593da53a4ba7f3dcce16348b8ed932f5c4185e8a419bdc47b40b448989"
         "600f3ee4e497a4d61bdb14183de631b5cd3507134d6fd6cf597cf6cb86a9e1345e3035d8cd4a48e90362"
         "fb513812c838c098ed57f628685d507a71951646b9af645294b87b924725227ea0dd6553a3a3d00f2eea"
         "c6d98aa6e70eb97bac7095bb2c4af21429d893d054604e03011bf78545")),
    (rl.SUITE_PSK_AES_128_CBC_SHA256, False,  # cbc_mte
     bytes.fromhex(
         "62681f10d4018cb9bb9907d8cfcccfc17ca4ff9df7e3b87f515f4a4da72fbf80aefb2828ac4dd4b6b02e"
         "804427906e4b"),
     bytes.fromhex(
         "6b0bb962a99fb0098e098e690e34147ae23a2feba649dd51d3a2c009a96c44d36b0bb962b1cda36ba925"
         "7b91c6d9d0403615046c0f2498fa36d85c4c01f11204"),
     bytes.fromhex(
         "19fefd0001000000000001beef010080f8655f2825691aba943e424d7f3140ed5e51f809a4d14de97fac"
         "d936a9a945748b7e5dd899d09c972fd31752e3379170df44d3287b01a7123569eaaec76ae4d42b75ee6c"
         "731e28027433ff31f38a6ebc515ce8fd35e1b581526aca11ab24e648427c223dd045ae7573b55c7491ff"
         "685086bafccbeabba5be369589a00ad0fe24"),
     bytes.fromhex(
         "19fefd0001000000000001c1c200e084475ce2a49cd637560ac61ad511849fefd7785033db8ca1f19e25"
         "11534323d20c4c8c2a74435fdee9b1c09f327b3677b4721d66fc42ad08f6b31940edc30a9bb276c1088e"
         "c98fd4815c82d8a1642c0c433db9b2ee564237cc0efdd1c7e09977fa60231252043a2538faddcc30a29d"
         "9945cad30c34e08aea755dccd9645ac812670a333722b5b6148a6c95fc4d3d32024cf69166b35e248445"
         "80d4cdb4e48a629aba5cc5e759e0efc8c0cea142fb504b5b98a60a9141ca7105b2c1585ff5c530f2533d"
         "5e35374fbb00c802732c2e65013d7270504ff6cea47e32c1520f554297")),
]
MBEDTLS_REQUEST = b"GET / HTTP/1.0\r\nHost: localhost\r\nExtra-header: \r\n\r\n"
MBEDTLS_ANSWER = (b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<h2>Mbed TLS Test Server</h2>\r\n"
                  b"<p>Successful connection using: %s</p>\r\n")


def test_mbedtls_tls12_cid_records_open_both_ways():
    names = {rl.SUITE_PSK_AES_128_CCM_8: b"TLS-PSK-WITH-AES-128-CCM-8",
             rl.SUITE_PSK_AES_128_CBC_SHA256: b"TLS-PSK-WITH-AES-128-CBC-SHA256"}
    for suite, etm, master, randoms, request, answer in MBEDTLS_RECORDS:
        kb = hs.key_block(master, randoms[:32], randoms[32:], rl.key_block_len(suite))
        _, client_in = rl.epoch_states(1, suite, etm, kb, Rng(1), True, b"\xbe\xef\x01", b"\xc1\xc2")
        _, server_in = rl.epoch_states(1, suite, etm, kb, Rng(1), False, b"\xc1\xc2", b"\xbe\xef\x01")
        assert rl.record_end(request, 0, 3) == len(request) and rl.record_end(answer, 0, 2) == len(answer)
        assert server_in.open(request) == MBEDTLS_REQUEST + b"\x17", (suite, etm)
        assert client_in.open(answer) == MBEDTLS_ANSWER % names[suite] + b"\x17", (suite, etm)
        # and independently of dtls_lite.record, with the fake server's construction
        (_, epoch, seq, cid, frag), = cid_records(request, 3)
        assert CidCipher(suite, etm, kb, True, cid, Rng(1)).open(epoch, seq, frag) == (23, MBEDTLS_REQUEST)
        (_, epoch, seq, cid, frag), = cid_records(answer, 2)
        opened = CidCipher(suite, etm, kb, False, cid, Rng(1)).open(epoch, seq, frag)
        assert opened == (23, MBEDTLS_ANSWER % names[suite])
