# One DTLS client run, on MicroPython or CPython, reporting one JSON line on stdout.
# Used by the interop tests, the demo and the benchmark, so all three drive the client alike.
#
#   micropython tools/run_client.py HOST PORT IDENTITY PSK_HEX [options]
#   options: --suite HEX (repeatable)  --send TEXT (repeatable; each waits for one reply)
#            --send-hex HEX (binary payload; its reply is reported as hex)
#            --bind HOST:PORT  --mtu N  --timeout-ms N  --retransmits N  --reply-ms N
#            --max-timeout-ms N (cap of the doubling retransmission timer)
#            --handshake-timeout-ms N (Connection option handshake_timeout_ms: overall deadline)
#            --resend N (echo servers on a lossy link: application data is not retransmitted
#                by DTLS, so re-send a message whose echo has not come back within --reply-ms,
#                up to N times; replies equal to an earlier message are late echoes, skipped)
#            --expect-close (after the exchanges, wait for the server's close_notify)
# The JSON line has "connect_us" (time spent in connect(), also when it failed), "resends".
import json
import sys

from runtime import ticks_diff, ticks_us  # noqa: E402  (also puts the repo root on sys.path)

from dtls_lite.client import DTLSClient  # noqa: E402
from dtls_lite.connection import ST_CLOSED  # noqa: E402
from dtls_lite.record import suite_name  # noqa: E402


def parse(argv):
    if len(argv) < 4:
        raise SystemExit("usage: run_client.py HOST PORT IDENTITY PSK_HEX [options]")
    o = {"host": argv[0], "port": int(argv[1]), "identity": argv[2].encode(), "psk": bytes.fromhex(argv[3]),
         "suites": [], "send": [], "bind": None, "options": {}, "reply_ms": 3000,
         "expect_close": False, "resend": 0}
    i = 4
    while i < len(argv):
        a = argv[i]
        v = argv[i + 1] if i + 1 < len(argv) else None
        i += 2
        if a == "--suite":
            o["suites"].append(int(v, 16))
        elif a == "--send":
            o["send"].append((v.encode(), False))
        elif a == "--send-hex":
            o["send"].append((bytes.fromhex(v), True))
        elif a == "--bind":
            h, p = v.rsplit(":", 1)
            o["bind"] = (h.strip("[]"), int(p))
        elif a == "--mtu":
            o["options"]["mtu"] = int(v)
        elif a == "--timeout-ms":
            o["options"]["initial_timeout_ms"] = int(v)
        elif a == "--retransmits":
            o["options"]["max_retransmits"] = int(v)
        elif a == "--max-timeout-ms":
            o["options"]["max_timeout_ms"] = int(v)
        elif a == "--handshake-timeout-ms":
            o["options"]["handshake_timeout_ms"] = int(v)
        elif a == "--resend":
            o["resend"] = int(v)
        elif a == "--reply-ms":
            o["reply_ms"] = int(v)
        elif a == "--expect-close":
            o["expect_close"] = True
            i -= 1
        else:
            raise SystemExit("unknown option " + a)
    if o["suites"]:
        o["options"]["suites"] = o["suites"]
    return o


def send_once(c, msg, o):
    c.send(msg)
    return c.recv(o["reply_ms"])


def exchange(c, msg, o, sent, result):
    # At most 1 + resend sends, each followed by at most reply_ms of waiting (bounded: every
    # recv() returns within reply_ms, and at most 16 late echoes are skipped per send).
    for attempt in range(1 + o["resend"]):
        if attempt:
            result["resends"] += 1
        c.send(msg)
        for _ in range(16):
            reply = c.recv(o["reply_ms"])
            if reply is None or reply == b"":
                break
            if msg and reply == msg * (len(reply) // len(msg)):
                # an echo; after a re-send, an echoing relay (s_server) may write both echoes
                # as one record: the message arrived, twice (counted in the report)
                if reply != msg:
                    result["joined_echoes"] = result.get("joined_echoes", 0) + 1
                sent.append(msg)
                return msg
            if reply not in sent:
                return reply  # not an echo at all: report it as it is
        if reply == b"":
            return reply
    return None


def run(o):
    result = {"runtime": sys.implementation.name, "received": [], "resends": 0}
    c = None
    t0 = None
    try:
        c = DTLSClient(o["host"], o["port"], o["identity"], o["psk"], bind=o["bind"], connect=False,
                       **o["options"])
        t0 = ticks_us()
        c.connect()
        result["handshake_us"] = ticks_diff(ticks_us(), t0)
        result["connect_us"] = result["handshake_us"]
        t0 = None
        result["suite"] = suite_name(c.conn.suite)
        sent = []
        for msg, as_hex in o["send"]:
            reply = exchange(c, msg, o, sent, result) if o["resend"] else send_once(c, msg, o)
            if reply is not None:
                reply = reply.hex() if as_hex else reply.decode()
            result["received"].append(reply)
        if o["expect_close"]:
            result["peer_closed"] = c.recv(o["reply_ms"]) == b""
        c.close()
        result["ok"] = True
    except Exception as e:  # reported, not raised: the caller checks the error type and text
        result["ok"] = False
        result["error"] = type(e).__name__
        result["message"] = str(e)
        alert = getattr(e, "description", None)
        if alert is not None:
            result["alert"] = alert
    if t0 is not None:
        result["connect_us"] = ticks_diff(ticks_us(), t0)
    if c is not None:
        result["stats"] = c.stats.as_dict()
        result["closed_cleanly"] = c.conn.state == ST_CLOSED and c.conn.error is None
    return result


if __name__ == "__main__":
    print(json.dumps(run(parse(sys.argv[1:]))))
