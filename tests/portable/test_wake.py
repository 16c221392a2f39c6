# Portable tests of dtls_lite/wake.py, the wake policy (pytest on CPython, tests/mp_runner.py
# on both MicroPythons): every row of POLICY decides for the facts it names, the first row that
# matches wins, and all 64 combinations of the six facts get the action DESIGN.md section 1
# asks for, checked against that rule written out here as plain conditions (not the table).
from dtls_lite import wake

S, C, L, F, I, X = wake.SESSION, wake.CONNECTION, wake.SAME_LOCAL, wake.FORCED, wake.IDLE, wake.SERVER_CID
CONTINUE, ABBREVIATED, FULL = wake.CONTINUE, wake.ABBREVIATED, wake.FULL

# The table as it must read, top to bottom: (facts needed, action, reason).
ROWS = [
    (F | S, ABBREVIATED, "resumption forced"),
    (F, FULL, "resumption forced, but no resumable session"),
    (I | S, ABBREVIATED, "idle longer than auto_handshake_timeout"),
    (I, FULL, "idle longer than auto_handshake_timeout, no resumable session"),
    (C | L, CONTINUE, "same local address and port"),
    (C | X, CONTINUE, "address changed, but the server gave a connection ID"),
    (S | C, ABBREVIATED, "local address or port changed"),
    (S, ABBREVIATED, "only the session was saved"),
    (C, FULL, "local address or port changed, and the session cannot be resumed"),
    (0, FULL, "no valid saved state"),
]


def expected(facts):
    """The policy in words: a forced or idle wake never continues (it resumes if it can); a
    saved connection continues from the same address, or from anywhere when the server gave a
    connection ID; otherwise resume a saved session; otherwise a full handshake."""
    has = lambda bit: facts & bit == bit  # noqa: E731
    if has(F) or has(I):
        return ABBREVIATED if has(S) else FULL
    if has(C) and (has(L) or has(X)):
        return CONTINUE
    return ABBREVIATED if has(S) else FULL


def test_facts_are_distinct_bits_and_actions_named():
    bits = [S, C, L, F, I, X]
    assert sorted(bits) == [1, 2, 4, 8, 16, 32]
    assert wake.ACTION_NAMES[CONTINUE] == "continue" and wake.ACTION_NAMES[ABBREVIATED] == "abbreviated"
    assert wake.ACTION_NAMES[FULL] == "full"


def test_the_table_reads_as_designed():
    assert [tuple(r) for r in wake.POLICY] == ROWS


def test_every_row_decides_for_the_facts_it_names():
    for need, action, why in ROWS:
        assert wake.decide(need) == (action, why), (need, wake.decide(need))


def test_first_matching_row_wins():
    # facts that several rows match: the upper one decides
    cases = [
        (F | S | C | L, ABBREVIATED, "resumption forced"),  # rows 1, 5, 7, 8, 9 match
        (F | C | L | X, FULL, "resumption forced, but no resumable session"),  # before row 5
        (F | I | S, ABBREVIATED, "resumption forced"),  # forced before idle
        (I | C | L, FULL, "idle longer than auto_handshake_timeout, no resumable session"),
        (I | S | C | L | X, ABBREVIATED, "idle longer than auto_handshake_timeout"),
        (C | L | X | S, CONTINUE, "same local address and port"),  # row 5 before row 6
        (C | X | S, CONTINUE, "address changed, but the server gave a connection ID"),
        (S | C | X | L, CONTINUE, "same local address and port"),
        (S | C | I, ABBREVIATED, "idle longer than auto_handshake_timeout"),
        (S | C, ABBREVIATED, "local address or port changed"),
        # a connection alone, elsewhere, no session (tinydtls gives no session ID)
        (C, FULL, "local address or port changed, and the session cannot be resumed"),
        (L | X, FULL, "no valid saved state"),
    ]
    for facts, action, why in cases:
        assert wake.decide(facts) == (action, why), (facts, wake.decide(facts))


def test_all_64_combinations():
    decided_by = {}
    for facts in range(64):
        action, why = wake.decide(facts)
        assert action == expected(facts), (facts, action, why)
        first = [r for r in ROWS if facts & r[0] == r[0]][0]  # the first row that matches
        assert (action, why) == first[1:], (facts, action, why)
        decided_by[why] = decided_by.get(why, 0) + 1
        if action == CONTINUE:
            assert facts & C and not facts & (F | I)  # never continue a forced or idle wake
    assert sorted(decided_by) == sorted(r[2] for r in ROWS)  # every row decides somewhere
    assert "no rule" not in decided_by
