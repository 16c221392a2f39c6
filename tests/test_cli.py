"""The desktop CLI (dtls_lite/desktop/) as a user runs it: `python -m dtls_lite`,
`python -m dtls_lite.desktop` and the `dtls-lite` console script as subprocesses against real
servers (tests/peers.py).

Covers echo from --send and stdin, cipher names, the state file (continue, --force-resume,
--close then resume) against pion, the -v trace (retransmission and drops through a small
relay that loses and duplicates datagrams), the documented exit codes (usage 2, alert 4,
no reply 5, unreachable 6, state file 7, HelloVerifyRequest storm 8) without tracebacks, and --keylog decrypting a
tcpdump capture with tshark. A missing server, tcpdump or tshark fails the test.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

import dtls_lite
import netem
import peers
from dtls_lite.desktop import trace

pytestmark = pytest.mark.interop

ROOT = peers.ROOT
TIMEOUT = 90


def cli(*args, input=b"", script=False, module="dtls_lite"):
    """Run the CLI (`python -m module`, or the console script); returns CompletedProcess with
    bytes stdout and text stderr."""
    if script:
        exe = os.path.join(os.path.dirname(sys.executable), "dtls-lite")
        if not os.access(exe, os.X_OK):
            pytest.fail("console script %s missing: run `make venv` (pip install -e .)" % exe,
                        pytrace=False)
        argv = [exe]
    else:
        argv = [sys.executable, "-m", module]
    env = dict(os.environ)
    env.pop("SSLKEYLOGFILE", None)
    p = subprocess.run(argv + [str(a) for a in args], cwd=ROOT, input=input, capture_output=True,
                       timeout=TIMEOUT, env=env)
    p.stderr = p.stderr.decode("utf-8", "replace")
    assert "Traceback" not in p.stderr, p.stderr
    return p


def target(srv):
    return "[%s]:%d" % (srv.host, srv.port) if ":" in srv.host else "%s:%d" % (srv.host, srv.port)


def trace_datagrams(stderr, arrow):
    """The trace lines of datagrams going one way ('>' sent, '<' received)."""
    return [l for l in stderr.splitlines() if re.match(r"\s*[\d.]+ ms  %s " % re.escape(arrow), l)]


# ---- echo ------------------------------------------------------------------------------------

def test_openssl_echo_from_send_then_stdin():
    with peers.openssl_server() as srv:
        p = cli(target(srv), "--psk", srv.psk_hex, "--identity", srv.identity,
                "--send", "hello from the cli", "--send", "second record")
        assert p.returncode == 0, p.stderr
        assert p.stdout == b"hello from the cli\nsecond record\n"
        # close_notify ended the association: s_server serves the next client (the console
        # script this time), which sends its stdin lines; the empty line sends nothing
        p = cli(target(srv), "--psk", srv.psk_hex, input=b"line one\n\nline two\r\n", script=True)
        assert p.returncode == 0, p.stderr + srv.output()
        assert p.stdout == b"line one\nline two\n"
        assert "[echo 8 bytes] b'line one'" in srv.output()
        p = cli(target(srv), "--psk", srv.psk_hex, "--send", "third", module="dtls_lite.desktop")
        assert p.returncode == 0 and p.stdout == b"third\n", p.stderr + srv.output()


def test_version_and_help_from_each_entry_point():
    for kw in ({}, {"module": "dtls_lite.desktop"}, {"script": True}):
        p = cli("--version", **kw)
        assert p.returncode == 0 and p.stdout.strip() == b"dtls-lite " + \
            dtls_lite.__version__.encode(), (kw, p.stderr)
        p = cli("--help", **kw)
        assert p.returncode == 0 and p.stdout.startswith(b"usage: dtls-lite"), kw
        assert b"130  interrupted (Ctrl-C)" in p.stdout


def test_trace_describes_records_from_bytes_and_memoryview():
    # recv_into() hands the tracer a memoryview of the client's buffer, send() bytes
    hello = bytes([22, 0xFE, 0xFD, 0, 0]) + bytes(6) + bytes([0, 14]) + \
        bytes([1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0xFE, 0xFD])
    alert = bytes([21, 0xFE, 0xFD, 0, 0]) + bytes(6) + bytes([0, 2, 2, 40])
    app = bytes([23, 0xFE, 0xFD, 0, 1]) + bytes(6) + bytes([0, 3]) + b"abc"
    d = hello + alert + app
    want = ["ClientHello #0 (2 B)", "Alert fatal handshake_failure",
            "ApplicationData (epoch 1, protected 3 B)"]
    assert trace.describe_datagram(d) == want
    buf = bytearray(2048)
    buf[:len(d)] = d
    assert trace.describe_datagram(memoryview(buf)[:len(d)]) == want
    assert trace.describe_datagram(d[:5]) == ["truncated record header (5 B)"]
    assert trace.describe_datagram(b"\x17\x03\x03" + bytes(10)) == ["not a DTLS record (13 B)"]


@pytest.mark.parametrize("name,suite", [("CCM8", "TLS_PSK_WITH_AES_128_CCM_8"),
                                        ("ccm", "TLS_PSK_WITH_AES_128_CCM"),
                                        ("PSK-AES128-GCM-SHA256", "TLS_PSK_WITH_AES_128_GCM_SHA256"),
                                        ("00AE", "TLS_PSK_WITH_AES_128_CBC_SHA256")])
def test_pion_echo_each_cipher_with_trace(name, suite):
    with peers.pion_server() as srv:
        p = cli(target(srv), "--psk", srv.psk_hex, "--cipher", name, "-v", input=b"ping\n")
        assert p.returncode == 0, p.stderr
        assert p.stdout == b"ping\n"
        assert "connected: full handshake" in p.stderr and suite in p.stderr, p.stderr
        sent, received = trace_datagrams(p.stderr, ">"), trace_datagrams(p.stderr, "<")
        assert "ClientHello #0" in sent[0] and "HelloVerifyRequest #0" in received[0], p.stderr
        assert any("ClientKeyExchange #2" in l and "ChangeCipherSpec" in l for l in sent), p.stderr
        assert "ApplicationData" in sent[-2] and "Alert" in sent[-1]  # the line, close_notify


def test_ipv6_server_and_bind_in_brackets():
    with peers.pion_server(host="::1") as srv:
        port = peers.free_udp_port("::1")
        p = cli(target(srv), "--psk", srv.psk_hex, "--bind", "[::1]:%d" % port, "-v",
                "--send", "over ipv6")
        assert p.returncode == 0, p.stderr
        assert p.stdout == b"over ipv6\n"
        assert "[::1]:%d -> [::1]:%d" % (port, srv.port) in p.stderr


def test_psk_file_hex_and_raw(tmp_path):
    hexfile = tmp_path / "psk.hex"
    hexfile.write_text(peers.PSK_HEX + "\n")
    rawfile = tmp_path / "psk.bin"
    rawfile.write_bytes(bytes.fromhex(peers.PSK_HEX))  # b"secretPSK": not all hex digits
    with peers.pion_server() as srv:
        for f in (hexfile, rawfile):
            p = cli(target(srv), "--psk-file", f, "--send", "keyed from a file")
            assert p.returncode == 0, (f, p.stderr)
            assert p.stdout == b"keyed from a file\n"
        # the same hex text read as raw bytes is another key: pion rejects it
        p = cli(target(srv), "--psk-file", hexfile, "--psk-format", "raw", "--send", "x",
                "--timeout-ms", "200", "--retransmits", "2")
        assert p.returncode in (3, 4), p.stderr


# ---- state -----------------------------------------------------------------------------------

def test_state_continue_then_force_resume_against_pion(tmp_path):
    state = str(tmp_path / "state.bin")
    with peers.pion_server() as srv:
        def run(text, *extra):
            p = cli(target(srv), "--psk", srv.psk_hex, "--state", state, "-v", "--send", text, *extra)
            assert p.returncode == 0, p.stderr + srv.output()
            assert p.stdout == text.encode() + b"\n"
            return p.stderr, trace_datagrams(p.stderr, ">")

        err, sent = run("first wake")
        assert "state: full (no valid saved state)" in err
        assert "ClientHello #0" in sent[0] and "Alert" not in sent[-1]  # suspended: no close_notify
        assert os.path.getsize(state) > 0

        err, sent = run("second wake")  # binds the saved port again: continues, no handshake
        assert "state: continue" in err and "connected: continued" in err, err
        assert len(sent) == 1 and "ApplicationData" in sent[0], err
        assert "ClientHello" not in err
        assert srv.output().count("handshake done") == 1

        # same port again (pion replaces the association on a new ClientHello, RFC 6347 4.2.8)
        err, sent = run("forced", "--force-resume")
        assert "state: abbreviated (resumption forced)" in err, err
        assert "connected: abbreviated handshake" in err
        assert "ClientHello #0" in sent[0] and not any("ClientKeyExchange" in l for l in sent)
        assert "session resumed" in srv.output(), srv.output()

        err, sent = run("after resume")  # the resumed connection continues in turn
        assert "connected: continued" in err and len(sent) == 1, err
        assert srv.output().count("handshake done") == 2


def test_state_close_keeps_only_the_session(tmp_path):
    state = str(tmp_path / "state.bin")
    with peers.pion_server() as srv:
        p = cli(target(srv), "--psk", srv.psk_hex, "--state", state, "--close", "-v", "--send", "a")
        assert p.returncode == 0 and p.stdout == b"a\n", p.stderr
        assert "Alert" in trace_datagrams(p.stderr, ">")[-1]  # close_notify went out
        p = cli(target(srv), "--psk", srv.psk_hex, "--state", state, "-v", "--send", "b")
        assert p.returncode == 0 and p.stdout == b"b\n", p.stderr
        assert "state: abbreviated (only the session was saved)" in p.stderr, p.stderr


def test_state_refused_for_another_psk_is_reported_and_ignored(tmp_path):
    state = str(tmp_path / "state.bin")
    with open(state, "wb") as f:
        f.write(b"not a state blob")
    with peers.pion_server() as srv:
        p = cli(target(srv), "--psk", srv.psk_hex, "--state", state, "--send", "x")
        assert p.returncode == 0 and p.stdout == b"x\n", p.stderr
        assert re.search(r"state file .* not used: ", p.stderr), p.stderr


def test_state_file_error_exit_7(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # nothing listens: the state file is read before any datagram is sent
    p = cli("127.0.0.1:%d" % peers.free_udp_port(), "--psk", "00", "--state", blocker / "state.bin",
            "--send", "x")
    assert p.returncode == 7, p.stderr
    assert "state file" in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["missing-dir/state.bin", "a-dir"])
def test_state_file_not_writable_exit_7_before_any_datagram(tmp_path, where):
    # issue 15: found only at the save after the handshake, the data went unsent
    (tmp_path / "a-dir").mkdir()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        p = cli("127.0.0.1:%d" % listener.getsockname()[1], "--psk", "00", "--state",
                tmp_path / where, "--send", "x")
        assert p.returncode == 7, p.stderr
        assert "cannot write state file" in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        with pytest.raises(BlockingIOError):
            listener.recv(2048)  # not one datagram left the client
    finally:
        listener.close()
    assert os.listdir(tmp_path / "a-dir") == []  # the probe left nothing behind


# ---- exit codes ------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    ([], "one of the arguments --psk --psk-file is required"),
    (["--psk", "xyz"], "--psk must be hex"),
    (["--psk", "00", "--cipher", "RC4"], "unknown cipher 'RC4'"),
    (["--psk", "00", "--mtu", "50"], "argument --mtu: 50 is not in 128..16384"),
    (["--psk", "00", "--timeout-ms", "soon"], "'soon' is not an integer"),
    (["--psk", "00", "--force-resume"], "--force-resume and --close need --state"),
    (["--psk", "00", "--psk-file", "/dev/null"], "not allowed with argument"),
    (["--psk", "00", "--bind", "[::1:5"], "--bind '[::1:5'"),
    (["--psk", "00", "--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_bad_arguments_exit_2_with_usage(args, message):
    p = cli("127.0.0.1:5684", *args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("usage: dtls-lite") and message in p.stderr, p.stderr


@pytest.mark.parametrize("server", ["127.0.0.1:99999", "[::1", "host:port"])
def test_bad_server_exit_2(server):
    p = cli(server, "--psk", "00")
    assert p.returncode == 2 and "usage:" in p.stderr and "server" in p.stderr, p.stderr


def test_unreachable_server_one_clear_line_exit_6():
    port = peers.free_udp_port()  # nothing listens: the kernel answers ICMP port unreachable
    p = cli("127.0.0.1:%d" % port, "--psk", peers.PSK_HEX, "--send", "x", "--timeout-ms", "200")
    assert p.returncode == 6, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1 port %d is unreachable" % port in lines[0], p.stderr
    assert p.stdout == b""


def test_unresolvable_host_exit_6():
    p = cli("no-such-host.invalid:5684", "--psk", "00")
    assert p.returncode == 6 and "cannot resolve no-such-host.invalid" in p.stderr, p.stderr


def test_wrong_identity_alert_exit_4_and_line_too_long_exit_2():
    with peers.pion_server() as srv:
        p = cli(target(srv), "--psk", srv.psk_hex, "--identity", "intruder", "--send", "x")
        assert p.returncode == 4, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "internal_error (80): wrong PSK or identity?" in p.stderr  # pion's alert, named
        p = cli(target(srv), "--psk", srv.psk_hex, "--mtu", "200", "--send", "y" * 300)
        assert p.returncode == 2 and "record 1 is 300 bytes; at most" in p.stderr, p.stderr


def test_no_reply_exit_5_and_reply_ms_0():
    """An s_server that prints what it gets and never answers (its stdin stays silent)."""
    port = peers.free_udp_port()
    proc = subprocess.Popen([peers.find_binary("openssl"), "s_server", "-dtls1_2", "-accept",
                             "127.0.0.1:%d" % port, "-nocert", "-psk", peers.PSK_HEX,
                             "-psk_identity", peers.IDENTITY, "-cipher", peers.OPENSSL_CIPHERS,
                             "-no_ticket", "-quiet"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + peers.READY_TIMEOUT
        while not peers._udp_port_bound_by(proc.pid, port) and time.monotonic() < deadline:
            time.sleep(0.02)
        p = cli("127.0.0.1:%d" % port, "--psk", peers.PSK_HEX, "--reply-ms", "0", "--send", "fire")
        assert p.returncode == 0 and p.stdout == b"", p.stderr
        p = cli("127.0.0.1:%d" % port, "--psk", peers.PSK_HEX, "--reply-ms", "300",
                "--send", "anyone there", "--send", "never sent")
        assert p.returncode == 5, p.stderr
        assert p.stderr.strip() == "dtls-lite: no reply to record 1 within 300 ms"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert b"fire" in out and b"anyone there" in out and b"never sent" not in out, out


# ---- -v trace under loss ---------------------------------------------------------------------

def test_trace_shows_retransmission_and_dropped_records():
    def fate(way, n, data):
        if way == netem.UP and n == 0:
            return 0  # lose the first ClientHello: the client retransmits it
        if way == netem.DOWN and data[0] == 20:
            return 2  # the server's CCS + Finished twice: the copy is a replay, dropped
        return 1

    with peers.pion_server(cookie=False) as srv, netem.Relay(srv.address, fate=fate) as relay:
        p = cli("127.0.0.1:%d" % relay.port, "--psk", srv.psk_hex, "--timeout-ms", "100", "-v",
                "--send", "through the relay")
    assert p.returncode == 0 and p.stdout == b"through the relay\n", p.stderr
    sent = trace_datagrams(p.stderr, ">")
    assert "ClientHello #0" in sent[0] and "retransmission 1: ClientHello #0" in sent[1], p.stderr
    assert re.search(r"dropped 2 record\(s\)", p.stderr), p.stderr
    assert re.search(r"retransmissions 1, records dropped 2", p.stderr), p.stderr


def test_silent_server_handshake_timeout_exit_3():
    """A relay that forwards nothing: no answer and no ICMP, so the retransmissions run out."""
    with netem.Relay(("127.0.0.1", peers.free_udp_port()), fate=lambda way, n, data: 0) as relay:
        p = cli("127.0.0.1:%d" % relay.port, "--psk", "00", "--timeout-ms", "50",
                "--retransmits", "2", "-v", "--send", "x")
        assert p.returncode == 3, p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith(
            "dtls-lite: handshake failed: no answer from server after 2 retransmissions"), p.stderr
        assert len(trace_datagrams(p.stderr, ">")) == 3  # the ClientHello and 2 retransmissions
        p = cli("127.0.0.1:%d" % relay.port, "--psk", "00", "--timeout-ms", "50",
                "--handshake-timeout-ms", "120", "--send", "x")
        assert p.returncode == 3, p.stderr
        assert "handshake_timeout_ms (120) reached" in p.stderr, p.stderr


class FullServer:
    """A UDP server whose connection table is full (Californium): every ClientHello gets a
    HelloVerifyRequest, its cookie from a key that changes every `rotate` hellos; never a
    ServerHello. Records and messages built here from RFC 6347 4.1 and 4.2.2 directly."""

    def __init__(self, rotate):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.rotate = rotate
        self.hellos = 0
        self.stop = False
        import threading
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        import struct
        seq = 0
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                continue
            if len(data) < 25 or data[0] != 22 or data[13] != 1:  # handshake record, ClientHello
                continue
            self.hellos += 1
            cookie = bytes([(self.hellos - 1) // self.rotate]) * 16
            body = struct.pack(">HB", 0xFEFD, len(cookie)) + cookie
            mseq = data[17:19]  # the ClientHello's message_seq, echoed
            msg = bytes([3]) + len(body).to_bytes(3, "big") + mseq + b"\0\0\0" + len(body).to_bytes(3, "big") + body
            rec = struct.pack(">BHHHIH", 22, 0xFEFD, 0, 0, seq, len(msg)) + msg
            seq += 1
            self.sock.sendto(rec, addr)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("rotate,extra", [(1, []), (100, []), (100, ["--retransmits", "1"])])
def test_hello_verify_storm_exit_8(rotate, extra):
    # issue 15: the same fault gave exit 4 after 252 s or exit 3; now one code, one message
    with FullServer(rotate) as srv:
        t0 = time.monotonic()
        p = cli("127.0.0.1:%d" % srv.port, "--psk", "00", "--timeout-ms", "100", "--send", "x", *extra)
        took = time.monotonic() - t0
    assert p.returncode == 8, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "keeps answering with HelloVerifyRequest" in lines[0] and "connection table may be full" in lines[0]
    new = 5 if rotate == 1 else 1
    n = 5 if not extra else 3  # --retransmits 1: the hello, its cookie hello, one retransmission
    assert "%d HelloVerifyRequests, %d of them with a new cookie" % (n, new) in lines[0], lines[0]
    assert srv.hellos == n
    assert took < 10, took


# ---- key log ---------------------------------------------------------------------------------

def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail("%s not found: run `make peers` (tools/install_peers.sh installs it)" % name,
                    pytrace=False)
    return path


def _frames(tshark, pcap):
    p = subprocess.run([tshark, "-r", pcap, "-T", "fields", "-e", "frame.number"],
                       capture_output=True, text=True, timeout=60)
    return len(p.stdout.split())


def _decrypted(tshark, pcap, port, keylog=None):
    """Hex payloads tshark decrypts (data.data of the DTLS application data), in order."""
    argv = [tshark, "-r", pcap, "-d", "udp.port==%d,dtls" % port, "-T", "fields", "-e", "data.data"]
    if keylog:
        argv[3:3] = ["-o", "tls.keylog_file:" + keylog]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [l for l in p.stdout.split() if l]


def test_keylog_lets_tshark_decrypt_full_and_resumed_handshakes(tmp_path):
    tcpdump, tshark = _tool("tcpdump"), _tool("tshark")
    pcap, keylog, state = str(tmp_path / "f.pcap"), str(tmp_path / "keys.log"), str(tmp_path / "st")
    with peers.pion_server() as srv:
        cap = subprocess.Popen([tcpdump, "-i", "lo", "-U", "--immediate-mode", "-w", pcap,
                                "udp port %d" % srv.port], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        try:
            assert b"listening on lo" in cap.stderr.readline()
            datagrams = 0
            for text, extra in (("full handshake secret", []), ("resumed secret", ["--force-resume"])):
                p = cli(target(srv), "--psk", srv.psk_hex, "--keylog", keylog, "--state", state,
                        "--close", "-v", "--send", text, *extra)
                assert p.returncode == 0 and p.stdout == text.encode() + b"\n", p.stderr
                m = re.search(r"done: (\d+) datagrams / \d+ B sent, (\d+) /", p.stderr)
                datagrams += int(m.group(1)) + int(m.group(2))
            assert "abbreviated handshake" in p.stderr, p.stderr
            deadline = time.monotonic() + 10  # until tcpdump has written every datagram
            while _frames(tshark, pcap) < datagrams and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            cap.terminate()
            cap.wait(10)
            cap.stderr.close()
    lines = open(keylog).read().splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}", l)
                                   for l in lines), lines
    assert lines[0].split()[2] == lines[1].split()[2]  # resumption keeps the master secret
    want = [t.encode().hex() for t in ("full handshake secret", "resumed secret")]
    # each record twice: ours and pion's echo
    assert _decrypted(tshark, pcap, srv.port, keylog) == [want[0], want[0], want[1], want[1]]
    assert _decrypted(tshark, pcap, srv.port) == []  # without the key log: nothing readable
