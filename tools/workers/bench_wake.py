# Wake benchmark worker (tools/bench_wake.py): runs under MicroPython or CPython, driven over
# stdin/stdout, so the parent can read this process's CPU time (schedstat) around exactly the
# measured work: start-up and imports are not counted. One wake per process, as a node does.
#
#   workers/bench_wake.py wake HOST PORT IDENTITY PSK_HEX --state FILE ...  (tools/wake.py args)
#       "ready"; waits for a line; one wake exactly as tools/wake.py does it; its JSON line;
#       waits for a last line (the parent reads the CPU time meanwhile).
#   workers/bench_wake.py builtin HOST PORT IDENTITY PSK_HEX TEXT
#       the same with MicroPython's built-in `tls` client (C Mbed TLS): a full handshake, one
#       record out, one reply in, no close_notify (the node goes to sleep).
#   workers/bench_wake.py handshakes HOST PORT IDENTITY PSK_HEX
#       one full handshake to get a session, "ready", then per line "full"|"abbreviated": a
#       fresh DTLSClient (a new socket and port), "armed", waits for a line, the handshake of
#       that kind alone (connect(), no store), "done KIND WALL_US"; "end" ends.
#   workers/bench_wake.py hot DIR N
#       the same-address wake without the network, N times in this process, timed with
#       ticks_us: load the FileStore, check the blob, decide, restore, seal one record, open the
#       server's reply (sealed beforehand by a server-side record state), save. "ready", waits,
#       runs, one JSON line (per-phase medians), waits.
import json
import sys

sys.path.insert(1, sys.path[0] + "/..")  # tools/: runtime.py, wake.py
from runtime import builtin_dtls, say as _say, ticks_diff, ticks_us  # noqa: E402  (also puts the repo root on sys.path)


def _wait():
    return sys.stdin.readline().strip()


def run_wake(argv):
    import wake as tool  # tools/wake.py: the very wake the demo and the scenario tests run
    # imported lazily by the client with a store: imports, not the wake (from .py they compile)
    from dtls_lite import state  # noqa: F401
    try:
        from dtls_lite import keeper  # noqa: F401
    except ImportError:  # trees before dtls_lite/keeper.py (e.g. 876eb97, the old figures)
        pass
    o = tool.parse(argv)
    _say("ready")
    _wait()
    _say(json.dumps(tool.run(o)))
    _wait()


def run_builtin(argv):
    import socket  # noqa: F401  (builtin_dtls's imports, before the clock starts)
    import tls  # noqa: F401
    host, port, identity, psk, text = argv[0], int(argv[1]), argv[2], bytes.fromhex(argv[3]), argv[4]
    _say("ready")
    _wait()
    out = {"runtime": sys.implementation.name, "ok": False}
    t0 = ticks_us()
    try:
        ctx, s = builtin_dtls(host, port, identity, psk)
        s.settimeout(5)
        ss = ctx.wrap_socket(s)  # the whole handshake
        out["connect_us"] = ticks_diff(ticks_us(), t0)
        out["cipher"] = ss.cipher()[0]
        ss.send(text.encode())
        reply = ss.recv(2048)  # read(n) would wait for n bytes (stream semantics)
        out["received"] = [None if not reply else reply.decode()]
        out["ok"] = True
    except Exception as e:
        out["error"] = type(e).__name__
        out["message"] = str(e)
    out["wall_us"] = ticks_diff(ticks_us(), t0)
    _say(json.dumps(out))  # no close(): no close_notify, as a node going to sleep
    _wait()


def run_handshakes(argv):
    from dtls_lite.client import DTLSClient
    from dtls_lite.connection import Connection
    Connection.drop_handshake_code = False  # many handshakes in one process: import them once
    host, port, identity, psk = argv[0], int(argv[1]), argv[2].encode(), bytes.fromhex(argv[3])
    c = DTLSClient(host, port, identity, psk)
    session = c.conn.session  # resumable: the server keeps it after our close_notify
    c.close()
    _say("ready")
    for _ in range(1000):
        kind = _wait()
        if kind not in ("full", "abbreviated"):
            break
        # No store: the handshake alone (loading and saving state are measured elsewhere).
        # session= goes to Connection, which offers it (RFC 5246 7.3).
        c = DTLSClient(host, port, identity, psk, connect=False,
                       session=session if kind == "abbreviated" else None)
        _say("armed")
        _wait()
        t0 = ticks_us()
        c.connect()
        wall = ticks_diff(ticks_us(), t0)
        _say("done %s %d" % (c.stats.handshake_kind, wall))
        c.close()  # after "done": not measured; frees the server's association


def run_hot(argv):
    import os
    from dtls_lite import connection as cn
    from dtls_lite import record as rl
    from dtls_lite import state
    from dtls_lite import wake
    try:
        from dtls_lite.keeper import RESERVE
    except ImportError:  # trees before dtls_lite/keeper.py
        from dtls_lite.client import _RESERVE as RESERVE
    from dtls_lite.store import FileStore
    folder, n = argv[0], int(argv[1])
    identity, psk = b"Client_identity", bytes.fromhex("73656372657450534b")
    suite = rl.SUITE_PSK_AES_128_CCM_8
    key = state.state_key(psk, identity)
    server = (state.ip_bytes("127.0.0.1"), 5684)
    local = (state.ip_bytes("127.0.0.2"), 40683)
    kb = os.urandom(rl.key_block_len(suite))
    st = state.SavedState(session_id=os.urandom(32), master_secret=os.urandom(48), suite=suite,
                          ems=True, server=server, has_connection=True, epoch=1, key_block=kb,
                          write_seq=64, read_max_seq=-1, read_window=0, local=local,
                          last_exchange_s=1000)
    store = FileStore(folder + "/hot-state.bin")
    store.save(state.dump(key, st))
    # The server's side of the same epoch: its replies, sealed before the clock starts.
    srv_write, srv_read = rl.epoch_states(1, suite, False, kb, os.urandom, client=False)
    reading = b"t=21.5C rh=40%"
    replies = [srv_write.protect(rl.CT_APPLICATION_DATA, reading) for _ in range(n)]
    sealed_len = 0
    phases = ("load", "restore", "seal", "open", "save")
    times = [[0] * n for _ in phases]
    totals = [0] * n
    _say("ready")
    _wait()
    for i in range(n):
        t0 = ticks_us()
        saved = state.load(key, store.load(), server)  # FileStore.load, length, tag, parse
        t1 = ticks_us()
        facts = wake.CONNECTION | wake.SESSION | (wake.SAME_LOCAL if saved.local == local else 0)
        if wake.decide(facts)[0] != wake.CONTINUE:
            raise SystemExit("the wake policy did not continue")
        conn = cn.Connection(identity, psk, suites=[suite])
        conn.restore(saved, 0)
        conn.next_event()  # EVENT_CONNECTED
        t2 = ticks_us()
        conn.send(reading)
        out = conn.datagrams_to_send()
        t3 = ticks_us()
        conn.receive(replies[i], 1)
        ev = conn.next_event()
        t4 = ticks_us()
        snap = conn.snapshot(RESERVE)  # as DTLSClient.suspend() saves it
        snap.server = server
        snap.local = local
        snap.last_exchange_s = 1000 + i
        store.save(state.dump(key, snap))
        t5 = ticks_us()
        if ev is None or ev[0] != cn.EVENT_DATA or ev[1] != reading or len(out) != 1:
            raise SystemExit("the reply was not delivered: %r" % (ev,))
        sealed_len = len(out[0])
        for j, (a, b) in enumerate(((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5))):
            times[j][i] = ticks_diff(b, a)
        totals[i] = ticks_diff(t5, t0)
    # What we sealed really is a record the server opens (the last one of the run).
    opened = srv_read.open(out[0])
    if opened is None or bytes(opened) != reading:
        raise SystemExit("the server could not open our record: %r" % (opened,))
    totals.sort()
    res = {"runtime": sys.implementation.name, "iterations": n, "record_bytes": sealed_len,
           "payload_bytes": len(reading), "median_us": totals[n // 2], "p90_us": totals[n * 9 // 10],
           "min_us": totals[0], "mean_us": sum(totals) / n, "blob_bytes": len(store.load())}
    for name, t in zip(phases, times):
        t.sort()
        res[name + "_median_us"] = t[n // 2]
    _say(json.dumps(res))
    _wait()
    store.clear()


def main(argv):
    {"wake": run_wake, "builtin": run_builtin, "handshakes": run_handshakes, "hot": run_hot}[argv[0]](argv[1:])


main(sys.argv[1:])
