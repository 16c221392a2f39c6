# A hostile network against the sans-I/O client (issue 7, items 1-3), both runtimes: forged
# and replayed datagrams, memory exhaustion inside receive(), and what the client reports when
# a handshake fails. Fake time, fixed RNG, the scripted FakeServer.
import gc

from dtls_lite import connection as cn
from dtls_lite import handshake as hs
from dtls_lite import record as rl
from dtls_lite.errors import AlertReceived, DTLSError, HandshakeTimeout, HelloVerifyStorm, ProtocolError
from fakeserver import FakeServer, records
from helpers import (deliver, drop_handshake_code_as_before, events, handshake,
                     keep_handshake_code, new_client, sent_alerts)


# Some tests patch functions of dtls_lite.handshake: it must stay the module the next
# handshake uses (helpers.keep_handshake_code).
setup_module, teardown_module = keep_handshake_code, drop_handshake_code_as_before

_SH = hs.HT_SERVER_HELLO
_SKE = hs.HT_SERVER_KEY_EXCHANGE
_HVR = hs.HT_HELLO_VERIFY_REQUEST


def forged(msg_type, length, mseq, off=0, data=b""):
    """One epoch-0 handshake record, as anyone on the path can send it."""
    header = hs.push_header(msg_type, length, mseq, off, len(data))
    return rl.WriteState(0).protect(rl.CT_HANDSHAKE, header + data)


def started(**kw):
    """A client that sent its ClientHello and the server's answering flight (no cookie)."""
    c, srv = new_client(**kw), FakeServer(cookie=None)
    c.connect(0)
    flight = srv.handle(c.datagrams_to_send()[0])
    return c, srv, flight


def finish(c, srv, out, now=10):
    """Hands our last flight to the server and its answer back; True if connected."""
    answer = []
    for d in out:
        answer += srv.handle(d)
    deliver(c, [b"".join(answer)], now)
    return c.state == cn.ST_CONNECTED and srv.client_finished_ok is True


def timeline(c, feed, step, until):
    """Runs fake time from c's current state: feed(now) every step ms (it returns datagrams to
    hand to the client), handle_timer() at each deadline. Returns (now when closed or until,
    datagrams the client sent)."""
    now = 0
    sent = []
    for _ in range(100000):
        t = c.timer()
        nxt = now + step
        if c.state == cn.ST_CLOSED or now >= until:
            break
        if t is not None and t <= nxt:
            now = t
            c.handle_timer(now)
        else:
            now = nxt
            for d in feed(now):
                c.receive(d, now)
        sent += c.datagrams_to_send()
    return now, sent


# ---- item 1: forged message_seq values ---------------------------------------------------------

def test_forged_future_fragments_do_not_block_the_server_hello():
    c, srv, flight = started()
    # A forger fills every message_seq from 0 up with a fragment of a 4096-byte message: the
    # old client buffered 8 of them and then refused the real ServerHello.
    for mseq in range(40):
        c.receive(forged(_SKE if mseq % 2 else _SH, 4096, mseq, 7, b"\xee" * 9), 1)
    assert c.datagrams_to_send() == [] and c.state == cn.ST_WAIT_SERVER_HELLO
    assert c.stats.records_dropped >= 30  # beyond the window: not even buffered
    out = deliver(c, [b"".join(flight)], 2)
    assert c.state == cn.ST_WAIT_FINISHED and finish(c, srv, out)


def test_forged_fragments_do_not_block_a_fragmented_flight():
    c, srv, flight = started(initial_timeout_ms=100)
    for mseq in range(6):  # forged partial messages at every message_seq the flight will use
        c.receive(forged(_SKE, 4096, mseq, 100, b"\xee" * 50), 1)
    out = deliver(c, srv.records(frag=25), 2)  # the real flight, fragmented
    assert c.state == cn.ST_WAIT_FINISHED and finish(c, srv, out)


def test_forged_hello_verify_fragments_do_not_fix_the_numbering():
    c, srv, flight = started()
    c.receive(forged(_HVR, 40, 1000, 0, b"\x01" * 10), 1)  # far ahead: dropped
    c.receive(forged(_HVR, 40, 0, 0, b"\x01" * 10), 1)  # partial, never completes
    c.receive(forged(_SH, 90, 1, 0, b"\x01" * 10), 1)
    assert c.handshake.recv_seq is None  # only a whole ServerHello or HelloVerifyRequest may fix it
    out = deliver(c, [b"".join(flight)], 2)
    assert finish(c, srv, out)


def test_forged_fragments_between_messages_of_the_flight():
    c, srv, flight = started()
    assert len(flight) == 2  # ServerHello, ServerHelloDone
    deliver(c, [flight[0]], 1)
    assert c.state == cn.ST_WAIT_SERVER_KEY_EXCHANGE
    nxt = c.handshake.recv_seq
    c.receive(forged(hs.HT_SERVER_HELLO_DONE, 300, nxt, 0, b"\x00" * 20), 2)  # conflicting
    c.receive(forged(_SKE, 300, nxt + 1, 0, b"\x00" * 20), 2)
    out = deliver(c, [flight[1]], 3)  # the whole ServerHelloDone that is due goes through
    assert c.state == cn.ST_WAIT_FINISHED and finish(c, srv, out)


def _heap_used():
    gc.collect()
    try:
        return gc.mem_alloc()
    except AttributeError:  # CPython
        import tracemalloc
        return tracemalloc.get_traced_memory()[0]


def _trace(on):
    try:
        import tracemalloc
    except ImportError:
        return  # MicroPython: gc.mem_alloc() needs no switch
    if on:
        tracemalloc.start()
    else:
        tracemalloc.stop()


def test_empty_fragments_announcing_4096_bytes_cost_nothing():
    c, srv, flight = started()
    spoofed = [forged(t, 4096, mseq, off) for mseq in range(4) for t in (_SH, _SKE)
               for off in (0, 4000)]
    assert len(spoofed[0]) == 25  # 13-byte record header, 12-byte handshake header
    _trace(True)
    try:
        before = _heap_used()
        for d in spoofed:
            c.receive(d, 1)
        grew = _heap_used() - before
    finally:
        _trace(False)
    # The old client reserved bytearray(4096) per message: 4 messages, 16 KB.
    assert c.handshake.frags.reserved == 0
    assert grew < 1024, grew
    out = deliver(c, [b"".join(flight)], 2)
    assert finish(c, srv, out)


def test_buffered_bytes_are_capped():
    c, srv, flight = started(max_handshake_size=2048)
    d = None
    for i in range(64):  # 64 KB of forged fragment bodies spread over the window
        d = forged(_SKE, 2048, i % 4, (i * 997) % 1024, b"\xaa" * 1000)
        c.receive(d, 1)
        assert c.handshake.frags.reserved <= 2048
    _trace(True)
    try:
        before = _heap_used()
        for i in range(16):
            c.receive(forged(_SKE, 2048, i % 4, (i * 331) % 1024, b"\xbb" * 1000), 1)
        grew = _heap_used() - before
    finally:
        _trace(False)
    assert grew < 8192, grew  # bounded however much is sent
    out = deliver(c, [b"".join(flight)], 2)
    assert finish(c, srv, out)


def test_one_byte_fragments_in_any_order():
    for order in ("in", "reverse", "interleaved"):
        # the last order's 100-odd records go first: the emulated ESP32's heap was too
        # fragmented for the next list of them (MemoryError in the fake server, not the client)
        c = srv = flight = pieces = sh = out = None
        gc.collect()
        c, srv, flight = started()
        pieces = srv.records(frag=1)  # the ServerHello and the empty ServerHelloDone
        sh = pieces[:-1]
        if order == "reverse":
            sh = sh[::-1]
        elif order == "interleaved":
            sh = sh[::2] + sh[1::2]
        for i, p in enumerate(sh):
            c.receive(p, 1)
            assert c.handshake is None or c.handshake.frags.reserved <= 2 * (i + 1)
        out = deliver(c, [pieces[-1]], 2)
        if order == "interleaved":
            # 40-odd holes: beyond the run limit the pieces were dropped; the server's next
            # retransmission, in order, completes the message
            assert c.state == cn.ST_WAIT_SERVER_HELLO and c.stats.records_dropped > 0
            out = deliver(c, srv.records(frag=30), 3)
        assert c.state == cn.ST_WAIT_FINISHED, order
        assert finish(c, srv, out), order


# ---- item 1: replayed messages, the re-send budget and handshake_timeout_ms ------------------

def _waiting_for_finished(**kw):
    """A client that sent its Finished flight (at now=0) to a server that will never answer;
    also returns that flight and the server's last record (its ServerHelloDone)."""
    c, srv, flight = started(**kw)
    out = deliver(c, [b"".join(flight)], 0)
    assert c.state == cn.ST_WAIT_FINISHED
    return c, out, flight[-1]


def test_replayed_final_message_cannot_outlast_handshake_timeout():
    c, out, shd = _waiting_for_finished(handshake_timeout_ms=5000)
    flight_bytes = sum(len(d) for d in out)
    closed, sent = timeline(c, lambda now: [shd], 10, 10 ** 6)  # replayed every 10 ms
    assert c.state == cn.ST_CLOSED and isinstance(c.error, HandshakeTimeout)
    assert closed <= 5000 and "handshake_timeout_ms" in str(c.error)
    # re-sends spend the same budget as the timer: never more than plain loss would cost
    assert c.stats.retransmissions <= 6
    assert sum(len(d) for d in sent) <= 6 * flight_bytes
    assert "re-sent its previous flight" in str(c.error)


def test_replays_do_not_stretch_the_timer_schedule():
    plain, _, _ = _waiting_for_finished()
    quiet_end, quiet_sent = timeline(plain, lambda now: [], 10, 10 ** 7)
    replayed, out, shd = _waiting_for_finished()
    loud_end, loud_sent = timeline(replayed, lambda now: [shd, shd], 10, 10 ** 7)
    assert isinstance(plain.error, HandshakeTimeout) and isinstance(replayed.error, HandshakeTimeout)
    assert quiet_end == 123000  # 1+2+4+8+16+32+60 s: the default deadline does not cut it short
    assert loud_end <= quiet_end, (loud_end, quiet_end)
    assert len(loud_sent) <= len(quiet_sent)


def test_re_sends_are_rate_limited():
    c, out, shd = _waiting_for_finished()
    first = deliver(c, [shd], 5)  # the server's retransmission: our flight was lost
    assert len(first) == len(out) and c.stats.retransmissions == 1
    for now in range(6, 1000, 7):  # a burst of replays within the next (doubled) period
        assert deliver(c, [shd], now) == []
    assert c.stats.retransmissions == 1
    assert len(deliver(c, [shd], 1005)) == len(out)  # half a period later: again
    assert c.stats.retransmissions == 2 and c.timer() == 1005 + 4000


def test_handshake_timeout_caps_the_timer():
    c = new_client(handshake_timeout_ms=2500)
    c.connect(100)
    deadlines = []
    for _ in range(10):
        t = c.timer()
        if t is None:
            break
        deadlines.append(t)
        c.handle_timer(t)
    assert deadlines == [1100, 2600]  # 1 s, then 2 s capped at connect + 2.5 s
    assert isinstance(c.error, HandshakeTimeout) and "handshake_timeout_ms (2500)" in str(c.error)
    late = new_client(handshake_timeout_ms=1000)
    late.connect(0)
    late.receive(b"\x16\xfe\xfd", 1000)  # anything past the deadline ends it
    assert isinstance(late.error, HandshakeTimeout)


# ---- item 2: an exception inside receive() ----------------------------------------------------

def _patched(module, name, fail):
    """Replaces module.name with a function that raises fail() on its first call only."""
    real = getattr(module, name)
    calls = [0]

    def patched(*args):
        calls[0] += 1
        if calls[0] == 1:
            raise fail()
        return real(*args)

    setattr(module, name, patched)
    return real


def test_memory_error_mid_flight_leaves_the_connection_as_it_was():
    for name in ("ServerHello", "parse_server_key_exchange", "master_secret", "key_block",
                 "verify_data", "client_key_exchange_body"):
        c, srv = new_client(), FakeServer(cookie=None, hint=b"hint")
        c.connect(0)
        flight = srv.handle(c.datagrams_to_send()[0])
        before = (c.state, c.handshake.recv_seq, len(c.handshake.transcript), c.handshake.send_seq, c.write_state)
        real = _patched(hs, name, MemoryError)
        try:
            out = deliver(c, [b"".join(flight)], 1)
        finally:
            setattr(hs, name, real)
        assert out == [] and events(c) == [], name
        assert (c.state, c.handshake.recv_seq, len(c.handshake.transcript), c.handshake.send_seq, c.write_state) == before, name
        assert c.stats.records_dropped == 1, name
        out = deliver(c, srv.records(), 2)  # the server's retransmission
        assert finish(c, srv, out), name


def test_memory_error_in_the_server_finished():
    c, srv, flight = started()
    out = deliver(c, [b"".join(flight)], 1)
    fin = []
    for d in out:
        fin += srv.handle(d)
    real = _patched(hs, "finished_verify_data", MemoryError)
    try:
        deliver(c, [b"".join(fin)], 2)  # CCS and Finished in one datagram
    finally:
        hs.finished_verify_data = real
    assert c.state == cn.ST_WAIT_FINISHED and c.read_state.epoch == 0  # the CCS is undone too
    deliver(c, [b"".join(srv.records())], 3)
    assert c.state == cn.ST_CONNECTED


def test_other_exception_closes_with_internal_error():
    c, srv, flight = started()
    real = _patched(hs, "ServerHello", lambda: IndexError("boom"))
    try:
        out = deliver(c, [b"".join(flight)], 1)
    finally:
        hs.ServerHello = real
    assert c.state == cn.ST_CLOSED and isinstance(c.error, DTLSError)
    assert "internal error" in str(c.error) and "IndexError" in str(c.error)
    assert sent_alerts(out) == [b"\x02\x50"]  # internal_error (RFC 5246 7.2.2)
    assert events(c)[-1] == (cn.EVENT_CLOSED, c.error)


# ---- item 3: honest failure reports ------------------------------------------------------------

def test_close_notify_then_fatal_alert_reports_the_fatal_alert():
    c, srv, flight = started()
    out = deliver(c, [b"".join(flight)], 1)
    c.receive(srv.alert(1, 0), 2)  # tinydtls: close_notify first...
    assert c.state == cn.ST_WAIT_FINISHED
    c.receive(srv.alert(2, 40), 3)  # ...then the reason, in the next datagram
    c.handle_timer(c.timer())
    assert isinstance(c.error, AlertReceived) and c.error.description == 40
    assert "wrong PSK or identity" in str(c.error)


def test_close_notify_while_waiting_for_finished_suggests_wrong_psk():
    c, srv, flight = started()
    deliver(c, [b"".join(flight)], 1)
    c.receive(srv.alert(1, 0), 2)
    assert c.state == cn.ST_WAIT_FINISHED and c.timer() <= 2 + 1000
    c.handle_timer(c.timer())
    assert isinstance(c.error, AlertReceived) and c.error.description == 0
    assert "wrong PSK or identity" in str(c.error)
    assert c.stats.retransmissions == 0  # it closed instead of retransmitting


def test_forged_close_notify_does_not_stop_the_handshake():
    c, srv, flight = started()
    c.receive(srv.alert(1, 0), 1)
    assert c.state == cn.ST_WAIT_SERVER_HELLO
    out = deliver(c, [b"".join(flight)], 2)  # the real answer comes before the timer
    assert finish(c, srv, out)


def test_close_notify_early_in_the_handshake_is_not_blamed_on_the_psk():
    c, srv, flight = started()
    c.receive(srv.alert(1, 0), 1)
    c.handle_timer(c.timer())
    assert isinstance(c.error, AlertReceived) and "PSK" not in str(c.error)


def test_server_resending_its_flight_is_reported():
    c, out, shd = _waiting_for_finished(initial_timeout_ms=100, max_retransmits=3)
    # every flight of ours is lost (or not accepted); the server keeps retransmitting its flight
    timeline(c, lambda now: [shd] if now % 700 == 0 else [], 10, 10 ** 6)
    assert isinstance(c.error, HandshakeTimeout)
    msg = str(c.error)
    assert "re-sent its previous flight" in msg and "wrong PSK or identity" in msg, msg
    assert "get lost" in msg, msg  # plain loss looks the same from here: both are named


def test_loss_before_our_finished_is_not_blamed_on_the_psk():
    # the server answered our first ClientHello (HelloVerifyRequest), then everything is lost
    c, srv = new_client(initial_timeout_ms=100, max_retransmits=2), FakeServer()
    c.connect(0)
    deliver(c, srv.handle(c.datagrams_to_send()[0]), 1)
    timeline(c, lambda now: [], 10, 10 ** 6)
    assert isinstance(c.error, HandshakeTimeout) and "PSK" not in str(c.error)
    # and with the server's flight only half there
    c, srv, flight = started(initial_timeout_ms=100, max_retransmits=2)
    deliver(c, [flight[0]], 1)
    timeline(c, lambda now: [], 10, 10 ** 6)
    msg = str(c.error)
    assert "only part of the server's flight" in msg and "PSK" not in msg, msg


def test_silence_after_our_finished_suggests_wrong_psk():
    c, srv = new_client(initial_timeout_ms=100, max_retransmits=2), FakeServer(cookie=None, psk=b"other")
    c.connect(0)
    out = deliver(c, [b"".join(srv.handle(c.datagrams_to_send()[0]))], 1)
    for _ in range(3):
        for d in out:
            assert srv.handle(d) == []  # it cannot decrypt our Finished and stays silent
        c.handle_timer(c.timer())
        out = c.datagrams_to_send()
    assert isinstance(c.error, HandshakeTimeout)
    assert "wrong PSK or identity" in str(c.error) and "answered our earlier flights" in str(c.error)


def test_silence_from_the_start_is_no_answer():
    c = new_client(initial_timeout_ms=100, max_retransmits=2)
    c.connect(0)
    timeline(c, lambda now: [], 10, 10 ** 6)
    assert isinstance(c.error, HandshakeTimeout)
    assert "no answer" in str(c.error) and "PSK" not in str(c.error)


def test_endless_hello_verify_requests_are_reported_as_such():
    c, srv = new_client(initial_timeout_ms=100, max_retransmits=3), FakeServer()
    c.connect(0)
    hvr = srv.handle(c.datagrams_to_send()[0])
    out = deliver(c, hvr, 1)
    for now in range(2, 10000, 50):  # a full server: every ClientHello gets the same answer
        if c.state == cn.ST_CLOSED:
            break
        if out:
            out = deliver(c, hvr, now)
        if c.state != cn.ST_CLOSED and c.timer() <= now:
            c.handle_timer(now)
            out = c.datagrams_to_send()
    assert c.stats.datagrams_received > 3
    assert isinstance(c.error, HelloVerifyStorm), c.error  # more in test_storm.py
    msg = str(c.error)
    assert "HelloVerifyRequest" in msg and "no answer" not in msg, msg


def test_changing_cookies_are_reported_as_hello_verify_requests():
    c, srv = new_client(), FakeServer()
    c.connect(0)
    out = c.datagrams_to_send()
    for i in range(10):
        if c.state == cn.ST_CLOSED:
            break
        srv.cookie = bytes((i + 1,)) * 8  # a new cookie for every ClientHello
        out = deliver(c, srv.handle(out[0]), i)
    assert isinstance(c.error, HelloVerifyStorm) and "HelloVerifyRequest" in str(c.error)
    assert c.error.new_cookies == 5 and not sent_alerts(c.datagrams_to_send())


def test_handshake_datagram_records_are_unchanged_by_the_window():
    # the client's own flights are untouched by all of the above: a normal handshake
    c, srv = new_client(), FakeServer()
    flights = handshake(c, srv)
    assert c.state == cn.ST_CONNECTED and len(flights) == 3
    assert [len(records(d)) for d in flights[2]] == [3]


def test_lost_server_finished_after_its_ccs_does_not_blame_the_psk():
    # The server's ChangeCipherSpec proves it accepted our Finished; only its Finished is lost.
    c, srv = new_client(handshake_timeout_ms=20000), FakeServer(cookie=None)
    c.connect(0)
    out = deliver(c, [b"".join(srv.handle(c.datagrams_to_send()[0]))], 1)
    answer = srv.handle(out[0])
    assert answer[0][0] == rl.CT_CHANGE_CIPHER_SPEC
    c.receive(answer[0], 2)  # the CCS only: every Finished from the server gets lost
    for _ in range(20):  # bounded: the retransmission limit ends it well before
        if c.state == cn.ST_CLOSED:
            break
        c.handle_timer(c.timer())
        c.datagrams_to_send()
    assert isinstance(c.error, HandshakeTimeout)
    assert "ChangeCipherSpec arrived" in str(c.error) and "PSK" not in str(c.error)


def test_rollback_knows_every_class_default():
    # receive()'s rollback restores Connection's, ClientHandshake's and Flight's class defaults by name (no
    # dir() per datagram: too slow on MicroPython); a new default must be added to the list.
    plain = (int, bool, bytes, str, type(None), tuple)
    from dtls_lite import client_handshake as ch
    from dtls_lite import flight as fl
    for cls, listed in ((cn.Connection, cn._DEFAULTS), (ch.ClientHandshake, ch._DEFAULTS), (fl.Flight, fl.DEFAULTS)):
        names = sorted(k for k in dir(cls) if not k.startswith("__")
                       and isinstance(getattr(cls, k), plain))
        assert names == sorted(listed), (cls, names, listed)
