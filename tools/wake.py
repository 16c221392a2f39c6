# One wake of a sleepy node, as one process on MicroPython or CPython, reporting one JSON line.
# Used by the deep-sleep scenario tests, the demo and the benchmark, so all three wake alike:
# load the saved state, let the wake policy decide, send readings, save, exit WITHOUT
# close_notify (a node going back to deep sleep).
#
#   micropython tools/wake.py HOST PORT IDENTITY PSK_HEX --state FILE [options]
#   options: --bind HOST:PORT  --local HOST:PORT (local address the policy compares; default
#            the bind address)  --force-resume  --send TEXT (repeatable; each a request())
#            --reply-ms N  --timeout-ms N  --retransmits N  --idle-s N (auto_handshake_timeout)
#            --suite HEX  --keylog FILE (append the NSS key log line)  --close (close_notify)
#            --tries N (request() up to N times until a reply: an application's own retry, as
#            CoAP's confirmable messages; DTLS does not retransmit application data)
#            --aio (dtls_lite.aio's AsyncDTLSClient under asyncio, the same steps awaited)
#            --tick-ms N (with --aio: a task ticking every N ms beside the wake; the report
#            gives its ticks and the longest gap between two, max_tick_gap_ms)
import json
import sys

from runtime import need_asyncio, ticks_diff, ticks_us  # noqa: E402  (also puts the repo root on sys.path)

from dtls_lite.client import DTLSClient  # noqa: E402
from dtls_lite.record import suite_name  # noqa: E402
from dtls_lite.store import FileStore  # noqa: E402


def _hostport(v):
    h, p = v.rsplit(":", 1)
    return h.strip("[]"), int(p)


FLAGS = {"--force-resume": "force", "--close": "close"}  # options without a value


def base_options(argv, tool, **more):
    """The options every wake tool (this one, coap_wake.py) takes, at their defaults, and `more`."""
    if len(argv) < 4:
        raise SystemExit("usage: %s HOST PORT IDENTITY PSK_HEX --state FILE [options]" % tool)
    o = {"host": argv[0], "port": int(argv[1]), "identity": argv[2].encode(), "psk": bytes.fromhex(argv[3]),
         "state": None, "bind": None, "local": None, "force": False, "close": False, "reply_ms": 2000,
         "options": {}}
    o.update(more)
    return o


def common_option(o, a, v):
    """Take option `a` with value `v` if every wake tool has it; False if it is not one of those."""
    if a == "--state":
        o["state"] = v
    elif a == "--bind":
        o["bind"] = _hostport(v)
    elif a == "--local":
        o["local"] = _hostport(v)
    elif a == "--reply-ms":
        o["reply_ms"] = int(v)
    elif a == "--timeout-ms":
        o["options"]["initial_timeout_ms"] = int(v)
    elif a == "--retransmits":
        o["options"]["max_retransmits"] = int(v)
    else:
        return False
    return True


def parse(argv):
    o = base_options(argv, "wake.py", send=[], keylog=None, suites=[], tries=1, aio=False, tick_ms=None)
    i = 4
    while i < len(argv):
        a = argv[i]
        v = argv[i + 1] if i + 1 < len(argv) else None
        i += 2
        if common_option(o, a, v):
            pass
        elif a == "--send":
            o["send"].append(v.encode())
        elif a == "--idle-s":
            o["options"]["auto_handshake_timeout_s"] = int(v)
        elif a == "--suite":
            o["suites"].append(int(v, 16))
        elif a == "--tries":
            o["tries"] = int(v)
        elif a == "--keylog":
            o["keylog"] = v
        elif a == "--tick-ms":
            o["tick_ms"] = int(v)
        elif a in FLAGS or a == "--aio":
            o[FLAGS.get(a, "aio")] = True
            i -= 1
        else:
            raise SystemExit("unknown option " + a)
    if o["state"] is None:
        raise SystemExit("--state FILE is required")
    if o["suites"]:
        o["options"]["suites"] = o["suites"]
    return o


def _keylog(path):
    if path is None:
        return None

    def log(line):
        with open(path, "a") as f:
            f.write(line + "\n")
    return log


def run(o):
    result = {"runtime": sys.implementation.name, "received": []}
    c = None
    t0 = ticks_us()
    try:
        c = DTLSClient(o["host"], o["port"], o["identity"], o["psk"], bind=o["bind"], local=o["local"],
                       store=FileStore(o["state"]), connect=False, keylog=_keylog(o["keylog"]), **o["options"])
        if o["force"]:
            c.force_resume()
        c.connect()
        result["connect_us"] = ticks_diff(ticks_us(), t0)
        result["policy"] = c.wake_action
        result["policy_reason"] = c.wake_reason
        result["tries"] = 0
        result["request_us"] = []
        for msg in o["send"]:
            reply = None
            t1 = ticks_us()
            for _ in range(o["tries"]):
                result["tries"] += 1
                reply = c.request(msg, o["reply_ms"])
                if reply is not None:
                    break
            result["request_us"].append(ticks_diff(ticks_us(), t1))
            result["received"].append(None if reply is None else reply.decode())
        result["suite"] = suite_name(c.conn.suite)
        if o["close"]:
            c.close()
        else:
            c.suspend()
        result["ok"] = True
    except Exception as e:  # reported, not raised: the caller checks the error type and text
        failed(result, e, c)
    result["wall_us"] = ticks_diff(ticks_us(), t0)
    return report(c, result)


def failed(result, e, c):
    """A wake's exception, reported (not raised: the caller checks the error type and text)."""
    result["ok"] = False
    result["error"] = type(e).__name__
    result["message"] = str(e)
    if c is not None:
        c.suspend()  # saves only what is safe (a failed handshake leaves the store alone)


def report(c, result):
    """`result` with what the client `c` says of the wake (after a fallback: what was done)."""
    if c is not None:
        result["action"] = c.wake_action  # after a fallback this is what was finally done
        result["reason"] = c.wake_reason
        result["state_error"] = None if c.state_error is None else str(c.state_error)
        result["stats"] = c.stats.as_dict()
        result["rto_ms"] = c.rto_ms  # what a continued wake's first request waited (adaptive)
        result["retries"] = c.retries
        result["wire"] = c.wire
    # what this wake loaded: a continued wake loads no handshake code (issue 13)
    result["modules"] = sorted(m for m in sys.modules if m.startswith("dtls_lite"))
    return result


async def _run_aio(o, asyncio):
    """run() with AsyncDTLSClient: the same steps, awaited; with tick_ms a ticking task beside."""
    from dtls_lite.aio import AsyncDTLSClient
    result = {"runtime": sys.implementation.name, "received": []}
    ticks = [0, 0, None]  # ticks, longest gap (us), last tick
    ticker = None
    if o["tick_ms"]:
        async def tick():
            while True:
                await asyncio.sleep_ms(o["tick_ms"]) if hasattr(asyncio, "sleep_ms") \
                    else await asyncio.sleep(o["tick_ms"] / 1000)
                t = ticks_us()
                if ticks[2] is not None and ticks_diff(t, ticks[2]) > ticks[1]:
                    ticks[1] = ticks_diff(t, ticks[2])
                ticks[0] += 1
                ticks[2] = t
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
    c = None
    t0 = ticks_us()
    try:
        c = AsyncDTLSClient(o["host"], o["port"], o["identity"], o["psk"], bind=o["bind"], local=o["local"],
                            store=FileStore(o["state"]), keylog=_keylog(o["keylog"]), **o["options"])
        if o["force"]:
            c.force_resume()
        await c.connect()
        result["connect_us"] = ticks_diff(ticks_us(), t0)
        result["policy"] = c.wake_action
        result["policy_reason"] = c.wake_reason
        result["tries"] = 0
        result["request_us"] = []
        for msg in o["send"]:
            reply = None
            t1 = ticks_us()
            for _ in range(o["tries"]):
                result["tries"] += 1
                reply = await c.request(msg, o["reply_ms"])
                if reply is not None:
                    break
            result["request_us"].append(ticks_diff(ticks_us(), t1))
            result["received"].append(None if reply is None else reply.decode())
        result["suite"] = suite_name(c.conn.suite)
        if o["close"]:
            await c.close()
        else:
            c.suspend()
        result["ok"] = True
    except Exception as e:
        failed(result, e, c)
    result["wall_us"] = ticks_diff(ticks_us(), t0)
    if ticker is not None:
        ticker.cancel()
        result["ticks"] = ticks[0]
        result["max_tick_gap_ms"] = ticks[1] // 1000
    result["aio"] = True
    return report(c, result)


def run_aio(o):
    need_asyncio()
    import asyncio
    return asyncio.run(_run_aio(o, asyncio))


if __name__ == "__main__":
    opts = parse(sys.argv[1:])
    print(json.dumps(run_aio(opts) if opts["aio"] else run(opts)))
