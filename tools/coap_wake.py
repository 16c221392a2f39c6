# One wake of a sleepy CoAP node, as one process on MicroPython or CPython, reporting one JSON
# line (issue 17). As tools/wake.py: load the saved state (FileStore), let the wake policy decide
# (continue, resume or handshake), make the requests, save, exit WITHOUT close_notify. The
# requests are CoAP (RFC 7252) over the DTLS connection, made in one of two ways:
#
#   --post PATH TEXT / --get PATH / --put PATH TEXT (repeatable, in order): dtls_lite.coap's
#       Client, CON; its message ID and token come from DTLSClient.reserve_counter (persisted
#       with the keys, so never repeated across wakes, crashes and new handshakes)
#   --raw-post PATH TEXT with --raw-mid N [--raw-token HEX]: a hand-made CON POST (4-byte
#       header, token, one Uri-Path option per segment, 0xFF, payload) with THAT message ID,
#       sent with DTLSClient.request: what a node that restarts its MID at every wake sends
#       (RFC 7252 4.5's deduplication then answers a repeated MID from its cache)
#
#   micropython tools/coap_wake.py HOST PORT IDENTITY PSK_HEX --state FILE [options]
#   options: --bind HOST:PORT  --local HOST:PORT  --force-resume  --close (close_notify)
#            --timeout-ms N  --retransmits N (DTLS handshake timers)  --reply-ms N (how long
#            DTLSClient.request waits, raw mode, and the first wait of coap mode)
#            --ack-timeout-ms N  --max-retransmit N  --coap-timeout-ms N (coap.Client's)
#            --pause-at reserved|replied: print "PAUSE <point> mid=N token=HEX" and sleep (at
#            most 60 s) there, for a test that kills the process by PID at that point:
#              reserved = reserve_counter returned (the reservation is persisted), the request
#                         not sent yet;
#              replied  = the request went out and its response came back, nothing saved yet
#              (suspend() not called).
#
# The JSON line: runtime, ok, error/message, policy/action/reason (the wake policy), stats and
# wire (as wake.py), requests: [{"method", "path", "mid", "token" (hex) of its first message,
# "messages" (how many new messages it took: Block2 follow-ups are new messages), "code"
# ("2.05"), "text" ("2.05 Content"), "payload" (text), "reply_mid", "reply_token", "reply_type",
# "raw"}] in order; messages: [{"mid", "token"}] of every new message sent (first
# transmissions; CoAP retransmissions repeat them, ACKs are not listed); counters: the values
# reserve_counter handed out; state_error.
import json
import sys
import time

from runtime import say, ticks_diff, ticks_us  # noqa: E402  (also puts the repo root on sys.path)

from dtls_lite.client import DTLSClient  # noqa: E402
from dtls_lite.store import FileStore  # noqa: E402
from wake import FLAGS, base_options, common_option, failed, report  # noqa: E402  (the options and report every wake tool shares)

PAUSE_MAX_S = 60


def parse(argv):
    o = base_options(argv, "coap_wake.py", reqs=[], raw_mid=None, raw_token=b"\x77", coap={}, pause=None)
    i = 4
    while i < len(argv):
        a = argv[i]
        v = argv[i + 1] if i + 1 < len(argv) else None
        w = argv[i + 2] if i + 2 < len(argv) else None
        i += 2
        if common_option(o, a, v):
            pass
        elif a in ("--post", "--put", "--raw-post"):
            o["reqs"].append((a[2:].upper(), v, w.encode()))
            i += 1
        elif a == "--get":
            o["reqs"].append(("GET", v, b""))
        elif a == "--raw-mid":
            o["raw_mid"] = int(v)
        elif a == "--raw-token":
            o["raw_token"] = bytes.fromhex(v)
        elif a == "--ack-timeout-ms":
            o["coap"]["ack_timeout_ms"] = int(v)
        elif a == "--max-retransmit":
            o["coap"]["max_retransmit"] = int(v)
        elif a == "--coap-timeout-ms":
            o["coap_timeout_ms"] = int(v)
        elif a == "--pause-at":
            if v not in ("reserved", "replied"):
                raise SystemExit("--pause-at reserved|replied")
            o["pause"] = v
        elif a in FLAGS:
            o[FLAGS[a]] = True
            i -= 1
        else:
            raise SystemExit("unknown option " + a)
    if o["state"] is None:
        raise SystemExit("--state FILE is required")
    if o["raw_mid"] is None and [r for r in o["reqs"] if r[0] == "RAW-POST"]:
        raise SystemExit("--raw-post needs --raw-mid N")
    return o


def pause(point, mid, token):
    """Stop here until the test kills this process (bounded: PAUSE_MAX_S)."""
    say("PAUSE %s mid=%d token=%s" % (point, mid, token.hex()))
    for _ in range(PAUSE_MAX_S * 10):
        time.sleep(0.1)
    raise SystemExit("coap_wake: paused at %s for %d s and nobody killed it" % (point, PAUSE_MAX_S))


class Tap:
    """What coap.Client sees as its DTLS client: the real one, with reserve_counter (every new
    message, for the report) and request() (a request's first message, for the pause) watched."""

    def __init__(self, c, o, result):
        self._c = c
        self._o = o
        self._result = result
        self.conn = c.conn

    def reserve_counter(self, n=1):
        # one value per new message (coap.py): MID = its low 16 bits, token = its 4 bytes;
        # block-wise follow-ups go out through send(), so they are counted here, not in request()
        v = self._c.reserve_counter(n)
        self._result["counters"].append(v)
        for i in range(n):
            x = (v + i) & 0xFFFFFFFF
            self._result["messages"].append({"mid": x & 0xFFFF, "token": x.to_bytes(4, "big").hex()})
        return v

    def request(self, data, timeout_ms):
        mid = data[2] << 8 | data[3]
        token = bytes(data[4:4 + (data[0] & 0x0F)])
        if self._o["pause"] == "reserved":
            pause("reserved", mid, token)
        return self._c.request(data, timeout_ms)

    def send(self, data):
        return self._c.send(data)

    def recv(self, timeout_ms=None):
        return self._c.recv(timeout_ms)


def raw_post(path, payload, mid, token):
    """A CON POST (RFC 7252 3): version 1, token length, code 0.02, the MID; Uri-Path options."""
    out = bytearray((0x40 | len(token), 0x02, mid >> 8 & 0xFF, mid & 0xFF))
    out += token
    delta = 11
    for seg in path.strip("/").split("/"):
        s = seg.encode()
        assert len(s) < 13 and delta < 13  # short options only (test paths)
        out.append(delta << 4 | len(s))
        out += s
        delta = 0
    if payload:
        out.append(0xFF)
        out += payload
    return bytes(out)


def parse_reply(data):
    """(type, code text, mid, token, payload) of a CoAP message (options skipped)."""
    tkl = data[0] & 0x0F
    code = data[1]
    p = 4 + tkl
    n = len(data)
    while p < n and data[p] != 0xFF:
        d, ln = data[p] >> 4, data[p] & 0x0F
        p += 1
        p += (1 if d == 13 else 2 if d == 14 else 0)
        if ln == 13:
            ln = data[p] + 13
            p += 1
        elif ln == 14:
            ln = (data[p] << 8 | data[p + 1]) + 269
            p += 2
        p += ln
    payload = bytes(data[p + 1:]) if p < n else b""
    return (data[0] >> 4 & 3, "%d.%02d" % (code >> 5, code & 31), data[2] << 8 | data[3],
            bytes(data[4:4 + tkl]), payload)


def _text(b):
    try:
        return b.decode()
    except UnicodeError:
        return "hex:" + b.hex()


def run(o):
    result = {"runtime": sys.implementation.name, "requests": [], "messages": [], "counters": []}
    c = None
    t0 = ticks_us()
    try:
        c = DTLSClient(o["host"], o["port"], o["identity"], o["psk"], bind=o["bind"], local=o["local"],
                       store=FileStore(o["state"]), connect=False, **o["options"])
        if o["force"]:
            c.force_resume()
        c.connect()
        result["connect_us"] = ticks_diff(ticks_us(), t0)
        result["policy"] = c.wake_action
        result["policy_reason"] = c.wake_reason
        cc = None
        for method, path, payload in o["reqs"]:
            if method == "RAW-POST":
                token = o["raw_token"]
                msg = raw_post(path, payload, o["raw_mid"], token)
                req = {"method": "POST", "path": path, "mid": o["raw_mid"], "token": token.hex(), "raw": True}
                result["requests"].append(req)
                result["messages"].append({"mid": o["raw_mid"], "token": token.hex()})
                reply = c.request(msg, o["reply_ms"])
                if reply is None:
                    req["code"] = None
                    continue
                mtype, code, mid, rtoken, rpayload = parse_reply(reply)
                req.update(code=code, payload=_text(rpayload), reply_mid=mid, reply_token=rtoken.hex(),
                           reply_type=mtype)
            else:
                if cc is None:
                    from dtls_lite import coap
                    cc = coap.Client(Tap(c, o, result), **o["coap"])
                kw = {}
                if "coap_timeout_ms" in o:
                    kw["timeout_ms"] = o["coap_timeout_ms"]
                first = len(result["messages"])
                req = {"method": method, "path": path, "raw": False}
                result["requests"].append(req)
                r = cc.request(method, path, payload=payload or None, **kw)
                sent = result["messages"][first:]
                req.update(mid=sent[0]["mid"], token=sent[0]["token"], messages=len(sent), code=r.code_text,
                           text=str(r), payload=_text(r.payload), reply_mid=r.mid, reply_token=r.token.hex(),
                           reply_type=r.type)
            if o["pause"] == "replied":
                pause("replied", req["mid"], bytes.fromhex(req["token"]))
        if o["close"]:
            c.close()
        else:
            c.suspend()
        result["ok"] = True
    except Exception as e:
        failed(result, e, c)
    result["wall_us"] = ticks_diff(ticks_us(), t0)
    return report(c, result)


if __name__ == "__main__":
    print(json.dumps(run(parse(sys.argv[1:]))))
