# The retransmission timer of a handshake flight (RFC 6347 4.2.4): when to send the flight
# again, doubling the period up to a maximum, how many times, and the overall deadline.
# It never builds or sends a message (dtls_lite/client_handshake.py does) and never reads a
# clock: now_ms is passed in.


# Flight's class defaults, for the handshake's rollback of a datagram (a test checks the list).
DEFAULTS = ("messages", "deadline", "retransmits", "sent_ms", "repeats")


class Flight:
    """The flight being sent ([(write_state, content_type, payload)]) and its timer."""

    messages = None
    deadline = None  # absolute ms of the next retransmission, None when nothing is armed
    retransmits = 0
    sent_ms = 0  # now_ms of the flight's last transmission
    repeats = 0  # times the server re-sent its previous flight: ours did not get through

    def __init__(self, initial_ms, max_ms, max_retransmits, end_ms):
        self.initial = initial_ms
        self.max = max_ms
        self.max_retransmits = max_retransmits
        self.end = end_ms  # the handshake's deadline: no timer goes past it
        self.timeout = initial_ms

    def start(self, messages):
        self.messages = messages
        self.timeout = self.initial
        self.retransmits = 0
        self.repeats = 0

    def stop(self):
        self.messages = None
        self.deadline = None
        self.timeout = self.initial

    def sent(self, now_ms, armed):
        """The flight just went out; armed: whether a timer runs for it (not once connected)."""
        self.sent_ms = now_ms
        self.arm(now_ms, armed)

    def arm(self, now_ms, armed=True):
        d = now_ms + self.timeout
        self.deadline = (d if d < self.end else self.end) if armed else None

    def exhausted(self):
        return self.retransmits >= self.max_retransmits

    def again(self):
        """Count one retransmission and double the period (RFC 6347 4.2.4.1)."""
        self.retransmits += 1
        self.timeout = min(self.timeout * 2, self.max)

    def may_repeat(self, now_ms):
        """Whether a re-send because the server repeated its flight may go now: the first at
        once, later ones at least half a period apart, within the retransmission budget."""
        if not self.messages or self.exhausted():
            return False
        return not self.retransmits or now_ms - self.sent_ms >= self.timeout // 2
