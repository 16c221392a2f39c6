# Abbreviated handshake (RFC 5246 7.3, RFC 6347 4.2.4), continuing a saved connection, and
# the wake policy table. Both runtimes; fixed RNG, fake time, the scripted FakeServer.
from dtls_lite import connection as cn
from dtls_lite import handshake as hs
from dtls_lite import record as rl
from dtls_lite import wake
from dtls_lite.errors import ProtocolError, UsageError
from fakeserver import IDENTITY, PSK, FakeServer, Rng, messages, records
from helpers import (deliver, drop_handshake_code_as_before, events, handshake,
                     keep_handshake_code, new_client, raises, sent_alerts)

# This module and fakeserver hold dtls_lite.handshake: with the drop, each handshake loaded a
# second copy and the ESP32's run failed two tests with a MemoryError at 42 KB free.
setup_module, teardown_module = keep_handshake_code, drop_handshake_code_as_before


def full_session(**kw):
    c = new_client(**kw)
    srv = FakeServer(cookie=b"")
    handshake(c, srv)
    assert c.state == cn.ST_CONNECTED
    return c.session, srv


def resumer(session, rng_seed=5, **kw):
    return cn.Connection(IDENTITY, PSK, rng=Rng(rng_seed), session=session, **kw)


def hello_session_id(datagram):
    body = messages(records(datagram)[0][3])[0][4]
    return body[35:35 + body[34]]


def test_abbreviated_handshake_one_round_trip():
    session, _ = full_session()
    srv = FakeServer(cookie=b"")
    srv.sessions = {session.session_id: session.master_secret}
    c = resumer(session)
    flights = handshake(c, srv)
    assert srv.resumed and srv.client_finished_ok is True
    # only the session's suite (and the RFC 5746 SCSV) is offered: a smaller hello
    assert srv.offered == [session.suite, 0x00FF]
    assert hs.EXT_ENCRYPT_THEN_MAC not in srv.client_extensions
    assert c.state == cn.ST_CONNECTED and c.stats.handshake_kind == "abbreviated"
    assert c.session is session
    assert len(flights) == 2  # ClientHello; then our CCS + Finished, the last flight
    assert [r[0] for r in records(flights[1][0])] == [rl.CT_CHANGE_CIPHER_SPEC, rl.CT_HANDSHAKE]
    assert c.timer() is None  # the last flight has no retransmission timer
    ev = events(c)
    assert ev == [(cn.EVENT_CONNECTED, None)]
    c.send(b"after resumption")
    srv.handle(c.datagrams_to_send()[0])
    assert srv.received[-1] == (rl.CT_APPLICATION_DATA, b"after resumption")
    c.receive(srv.app(b"reply"), 0)
    assert events(c) == [(cn.EVENT_DATA, b"reply")]


def test_resumption_offer_with_cookie_exchange():
    session, _ = full_session()
    srv = FakeServer()  # sends HelloVerifyRequest first
    srv.sessions = {session.session_id: session.master_secret}
    c = resumer(session)
    flights = handshake(c, srv)
    assert [hello_session_id(f[0]) for f in flights[:2]] == [session.session_id] * 2
    assert c.stats.hello_verify and c.stats.handshake_kind == "abbreviated"
    assert srv.client_finished_ok is True


def test_server_forgot_session_goes_on_as_full_handshake():
    session, _ = full_session()
    srv = FakeServer(cookie=b"", session_id=b"\x77" * 32)  # knows nothing: a new ID
    c = resumer(session)
    handshake(c, srv)
    assert not srv.resumed and srv.client_finished_ok is True
    assert c.stats.handshake_kind == "full"
    assert c.session.session_id == b"\x77" * 32 and c.session.master_secret != session.master_secret


def test_server_finished_again_resends_our_last_flight():
    session, _ = full_session()
    srv = FakeServer(cookie=b"")
    srv.sessions = {session.session_id: session.master_secret}
    c = resumer(session)
    c.connect(0)
    answer = srv.handle(c.datagrams_to_send()[0])
    ours = deliver(c, [b"".join(answer)], 0)  # our CCS + Finished: pretend they were lost
    assert c.state == cn.ST_CONNECTED and srv.client_finished_ok is None
    again = deliver(c, srv.records(), 5000)  # the server retransmits its flight
    assert again, "the server's Finished again must make us send our flight again"
    first = [r[2] for r in records(ours[0])]
    second = [r[2] for d in again for r in records(d)]
    assert [r[0] for d in again for r in records(d)] == [rl.CT_CHANGE_CIPHER_SPEC, rl.CT_HANDSHAKE]
    assert second[1] > first[1]  # re-protected under a fresh epoch-1 sequence number
    for d in again:
        srv.handle(d)
    assert srv.client_finished_ok is True


def test_resumed_server_hello_changing_suite_is_fatal():
    session, _ = full_session()
    srv = FakeServer(cookie=b"", suite=rl.SUITE_PSK_AES_128_CCM)
    srv.sessions = {session.session_id: session.master_secret}
    c = resumer(session)
    c.connect(0)
    out = deliver(c, srv.handle(c.datagrams_to_send()[0]), 0)
    assert c.state == cn.ST_CLOSED and isinstance(c.error, ProtocolError)
    assert c.error.alert == hs.ALERT_ILLEGAL_PARAMETER and "suite" in str(c.error)
    assert sent_alerts(out) == [bytes((2, hs.ALERT_ILLEGAL_PARAMETER))]


def test_resumed_server_hello_without_ems_is_fatal():
    session, _ = full_session()
    srv = FakeServer(cookie=b"", ems=False)
    srv.sessions = {session.session_id: session.master_secret}
    c = resumer(session)
    c.connect(0)
    out = deliver(c, srv.handle(c.datagrams_to_send()[0]), 0)
    assert c.state == cn.ST_CLOSED and c.error.alert == hs.ALERT_HANDSHAKE_FAILURE
    assert "extended master secret" in str(c.error)
    assert sent_alerts(out) == [bytes((2, hs.ALERT_HANDSHAKE_FAILURE))]


def test_session_without_ems_is_never_offered():
    session, _ = full_session()
    bad = cn.Session(session.session_id, session.master_secret, session.suite, False, False)
    c = resumer(bad)
    c.connect(0)
    assert hello_session_id(c.datagrams_to_send()[0]) == b""


def test_snapshot_restore_continues_with_reserved_sequence_numbers():
    c = new_client()
    srv = FakeServer(cookie=b"")
    handshake(c, srv)
    c.send(b"one")
    srv.handle(c.datagrams_to_send()[0])
    epoch, seq = c.next_write_seq
    st = c.snapshot(100)
    assert st.has_connection and st.epoch == epoch == 1 and st.write_seq == seq + 100
    c2 = new_client()
    c2.restore(st, 0)
    assert c2.state == cn.ST_CONNECTED and c2.stats.handshake_kind == "continued"
    assert events(c2) == [(cn.EVENT_CONNECTED, None)]
    c2.send(b"after deep sleep")
    d = c2.datagrams_to_send()[0]
    assert records(d)[0][2] == seq + 100
    srv.handle(d)
    assert srv.received[-1] == (rl.CT_APPLICATION_DATA, b"after deep sleep")
    c2.receive(srv.app(b"welcome back"), 0)
    assert events(c2) == [(cn.EVENT_DATA, b"welcome back")]
    # the replay window came along: a record the first connection saw is refused
    old = srv.app(b"x")
    c.receive(old, 0)
    st2 = c.snapshot(1)
    c3 = new_client()
    c3.restore(st2, 0)
    c3.receive(old, 0)
    assert events(c3) == [(cn.EVENT_CONNECTED, None)] and c3.stats.records_dropped == 1


def test_snapshot_refused_during_handshake_and_restore_misuse():
    c = new_client()
    c.connect(0)
    assert c.handshake_in_flight
    raises(UsageError, c.snapshot, 10)
    d = new_client()
    srv = FakeServer(cookie=b"")
    handshake(d, srv)
    raises(UsageError, d.snapshot, 0)
    st = d.snapshot(10)
    raises(UsageError, d.restore, st, 0)  # already in use
    only_ccm = new_client(suites=[rl.SUITE_PSK_AES_128_CCM])
    raises(UsageError, only_ccm.restore, st, 0)
    st.has_connection = False
    raises(UsageError, new_client().restore, st, 0)


def test_wake_policy_table():
    d = wake.decide
    S, C, L, F, I, X = wake.SESSION, wake.CONNECTION, wake.SAME_LOCAL, wake.FORCED, wake.IDLE, wake.SERVER_CID
    assert d(0)[0] == wake.FULL
    assert d(S | C | L)[0] == wake.CONTINUE
    assert d(S | C)[0] == wake.ABBREVIATED  # address or port changed
    assert d(S | C | L | F)[0] == wake.ABBREVIATED
    assert d(S | C | L | I)[0] == wake.ABBREVIATED
    assert d(C | L | F)[0] == wake.FULL  # forced but nothing to resume
    assert d(C | L)[0] == wake.CONTINUE  # a connection without a resumable session
    assert d(C)[0] == wake.FULL
    assert d(S)[0] == wake.ABBREVIATED
    assert d(S | C | X)[0] == wake.CONTINUE  # new address, but the server gave a CID
    for facts in range(64):
        action, why = d(facts)
        assert action in (wake.CONTINUE, wake.ABBREVIATED, wake.FULL) and why
        if action == wake.CONTINUE:
            assert facts & C and not facts & (F | I)


def test_session_and_cid_options_are_checked():
    def make(**kw):
        return lambda: cn.Connection(IDENTITY, PSK, **kw)
    raises(UsageError, make(session="not a session"))
    raises(UsageError, make(cid="ab"))
    raises(UsageError, make(cid=b"x" * 256))
    cn.Connection(IDENTITY, PSK, cid=bytearray(b"ok"), session=None)
