# One wake of the sensor node with asyncio (dtls_lite.aio): a sensor task takes SAMPLES
# readings SAMPLE_MS apart while the exchange task brings the network up and lets the wake
# policy continue / resume / handshake, so the radio's round trips overlap the sampling; then
# the readings go to the server in one request, the state is saved and the node deep-sleeps.
# Same settings, stores, board hooks, report and failure policy as ports/node.py (read its
# header), with two settings more (SAMPLES, SAMPLE_MS) and one rule less: a handshake that
# times out is not tried again from a new port (node.py's rule 3); the next wake tries again.
# PROTOCOL = "coap" sends the readings as a CoAP request (dtls_lite.coap.AsyncClient), as
# node.py does.
# Needs MicroPython 1.17 or newer (dtls_lite/aio.py); the blocking node.py runs on 1.16.
import gc

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

try:  # deployed: every module sits beside main.py
    import node
except ImportError:  # from a checkout, as ports.anode
    from ports import node

_DEFAULTS = {"SAMPLES": 3, "SAMPLE_MS": 100}

def _since(t0):
    return node.ticks_diff(node.ticks_ms(), t0)


def _setting(cfg, name):
    return getattr(cfg, name, _DEFAULTS[name]) if name in _DEFAULTS else node.setting(cfg, name)


async def _sample(cfg, board, out, t0):
    """SAMPLES readings, SAMPLE_MS apart: [(ms since the wake began, value)]."""
    n = _setting(cfg, "SAMPLES")
    for i in range(n):
        v = None
        try:
            v = board.read_sensor()
        except Exception as e:  # a broken sensor must not stop the report
            board.log("sensor: %s: %s" % (type(e).__name__, e))
        out.append((_since(t0), v))
        if i + 1 < n:
            ms = _setting(cfg, "SAMPLE_MS")
            await (asyncio.sleep_ms(ms) if hasattr(asyncio, "sleep_ms") else asyncio.sleep(ms / 1000))


def _payload(cfg, samples):
    return '{"node":"%s","samples":[%s]}' % (node.setting(cfg, "NODE_NAME"), ",".join(
        "[%d,%s]" % (t, "null" if v is None else v) for t, v in samples))


async def wake(cfg, board):
    """One wake; returns the report (node.wake()'s, plus "samples" and "sampled_while_connecting").
    Never raises Exception."""
    from dtls_lite.aio import AsyncDTLSClient
    t0 = node.ticks_ms()
    report = {"node": None, "board": board.name, "ok": False, "aio": True}
    client = None
    samples = []
    sensor = asyncio.create_task(_sample(cfg, board, samples, t0))
    stage = "config"
    try:
        report["node"] = node.setting(cfg, "NODE_NAME")
        identity = node.setting(cfg, "IDENTITY")
        from binascii import unhexlify
        psk = unhexlify(node.setting(cfg, "PSK_HEX"))
        if isinstance(identity, str):
            identity = identity.encode()
        protocol = node.check_protocol(cfg)

        stage = "stores"
        cause = report["reset"] = board.reset_cause()
        rtc = board.rtc_store()
        if rtc is not None:
            if cause != node.DEEPSLEEP:
                rtc.clear()  # only a deep-sleep wake trusts RTC memory (node.py)
            rtc = node.PortTaggedStore(rtc)
            rtc.load()
        session = None
        if node.setting(cfg, "SESSION_FILE"):
            from dtls_lite.store import FileStore
            session = FileStore(node.setting(cfg, "SESSION_FILE"))

        stage = "network"
        ip = board.network_up(cfg)  # a board whose WiFi join blocks holds the loop here
        report["ip"] = ip

        stage = "connect"
        port = (rtc.saved_port if rtc is not None else None) or node.setting(cfg, "BIND_PORT") \
            or node.random_port()
        report["port"] = port
        if rtc is not None:
            rtc.port = port
        gc.collect()
        client = AsyncDTLSClient(
            node.setting(cfg, "SERVER_HOST"), node.setting(cfg, "SERVER_PORT"), identity, psk,
            bind=(node.setting(cfg, "BIND_HOST"), port), local=None if ip is None else (ip, port),
            store=rtc, session_store=session, wall_clock=board.wall_clock,
            auto_handshake_timeout_s=node.setting(cfg, "AUTO_HANDSHAKE_TIMEOUT_S"),
            initial_timeout_ms=node.setting(cfg, "INITIAL_TIMEOUT_MS"),
            max_retransmits=node.setting(cfg, "MAX_RETRANSMITS"),
            handshake_timeout_ms=node.setting(cfg, "HANDSHAKE_TIMEOUT_MS"))
        if node.setting(cfg, "FORCE_RESUME"):
            client.force_resume()
        try:
            await client.connect()
        finally:
            node._policy(report, client)
        report["connect_ms"] = _since(t0)
        report["sampled_while_connecting"] = len(samples)  # the sensor task's own progress

        stage = "request"
        await sensor  # the readings, however many the connect overlapped
        sent = _payload(cfg, samples)
        report["sent"] = sent
        if protocol == "coap":
            await _coap_request(cfg, client, sent, report)
        else:
            reply = await client.request(sent.encode(), node.setting(cfg, "REPLY_TIMEOUT_MS"))
            node._policy(report, client)  # request() may have resumed a silently dead connection
            if reply is None:
                report["reply"] = None
                raise OSError("no reply within %d ms" % node.setting(cfg, "REPLY_TIMEOUT_MS"))
            report["reply"] = reply.decode("utf-8", "replace") if reply else ""
            report["echoed"] = reply == sent.encode()

        stage = "save"
        client.suspend()  # save, no close_notify: the server keeps the connection
        report["ok"] = True
    except Exception as e:
        node._error(report, stage, e, board)
        if client is not None:
            try:
                client.suspend()  # saves only what is safe (never mid-handshake)
            except Exception as e2:
                board.log("suspend after failure: %s: %s" % (type(e2).__name__, e2))
    sensor.cancel()  # (done already, unless the wake failed first)
    report["samples"] = len(samples)
    if client is not None:
        try:
            report["kind"] = client.stats.handshake_kind
            report["wire"] = client.wire
        except Exception:
            pass
    report["ms"] = _since(t0)
    report["mem_free"] = board.mem_free()
    return report


async def _coap_request(cfg, client, sent, report):
    """node.py's CoAP request stage, awaited (dtls_lite.coap.AsyncClient)."""
    from dtls_lite import coap
    method, path, kw = node.coap_request_args(cfg, sent, report)
    cc = coap.AsyncClient(client)
    try:
        r = await cc.request(method, path, **kw)
    finally:
        node._policy(report, client)
        report["coap_retransmissions"] = cc.retransmissions
    node.coap_response(report, r)


def run(cfg, board):
    """wake() in asyncio, print the report as one JSON line, deep sleep (node.run())."""
    import json
    report = asyncio.run(wake(cfg, board))
    ms = node.sleep_ms(cfg, report)
    report["sleep_ms"] = ms
    try:
        print(json.dumps(report))
    except Exception as e:
        board.log("report: %s" % e)
    board.deepsleep(ms)
    return report
