# dtls_lite/flight.py: the RFC 6347 4.2.4 timer of one flight (doubling up to the maximum,
# the retransmission budget, the handshake's deadline, re-sends when the server repeats).
from dtls_lite.flight import Flight


def test_doubling_up_to_the_maximum_and_the_deadline():
    f = Flight(1000, 4000, 5, 20000)
    f.start(["hello"])
    f.sent(0, True)
    deadlines = [f.deadline]
    now = 0
    while not f.exhausted():
        now = f.deadline
        f.again()
        f.sent(now, True)
        deadlines.append(f.deadline)
    # 1 s, then 2, 4, 4, 4, 4 s (RFC 6347 4.2.4.1: double, up to the maximum)
    assert deadlines == [1000, 3000, 7000, 11000, 15000, 19000]
    f.again()
    f.sent(19000, True)
    assert f.deadline == 20000  # never past the handshake's deadline


def test_no_timer_once_connected_and_stop():
    f = Flight(1000, 60000, 6, 90000)
    f.start(["finished"])
    f.sent(5, False)
    assert f.deadline is None and f.sent_ms == 5
    f.start(["again"])
    f.sent(10, True)
    f.stop()
    assert f.deadline is None and f.messages is None and f.timeout == 1000


def test_repeats_spend_the_budget_and_wait_half_a_period():
    f = Flight(1000, 60000, 2, 90000)
    assert not f.may_repeat(0)  # no flight
    f.start(["flight"])
    f.sent(0, True)
    assert f.may_repeat(0)  # the first re-send goes at once
    f.again()
    f.sent(0, True)
    assert not f.may_repeat(999)  # then at least half of the doubled period (2 s) apart
    assert f.may_repeat(1000)
    f.again()
    assert f.exhausted() and not f.may_repeat(10 ** 6)
