"""A PPP peer for the emulated ESP32: the board's network.PPP over its UART1, and a TUN
interface on this side, so the board's lwIP sends real IP packets into a network namespace.

    unshare --net -- python tools/esp32emu/pppgw.py --uart /tmp/esp32emu-x/uart1 \\
        --local 10.44.0.1 --peer 10.44.0.2

The Linux kernel here has no PPP driver (pppd needs /dev/ppp), so this speaks the little of
PPP an lwIP client needs, in user space: HDLC-like framing with FCS-16 (RFC 1662), LCP
(RFC 1661: MRU, ACCM and magic number accepted; protocol and address/control compression and
authentication rejected; echo and terminate answered), IPCP (RFC 1332: the board is given
--peer, VJ compression and DNS options rejected), IPv4 both ways, Protocol-Reject for the
rest. The TUN interface `esp32ppp` gets --local/24 and comes up with loopback, in the network
namespace this process runs in: run it under `unshare --net` (root), start the servers in
that namespace (nsenter --net=/proc/PID/ns/net), and nothing touches the host's network.

Stdin takes one command per line: `peer A.B.C.D` gives the board that address at its next
IPCP negotiation (a new address after the next wake). Stdout: one line per event
("lcp up", "ipcp up peer 10.44.0.2", "lcp down", ...). Ends when the UART socket closes for
good (QEMU quit) or on SIGTERM; --wait-uart S keeps retrying the socket for S seconds (QEMU
restarts across power cycles).
"""
import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

FLAG, ESC = 0x7E, 0x7D
PROTO_IP, PROTO_LCP, PROTO_IPCP = 0x0021, 0xC021, 0x8021
CONF_REQ, CONF_ACK, CONF_NAK, CONF_REJ, TERM_REQ, TERM_ACK = 1, 2, 3, 4, 5, 6
PROTO_REJ, ECHO_REQ, ECHO_REP, DISCARD_REQ = 8, 9, 10, 11
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
IFNAME = "esp32ppp"


def _fcs_table():
    t = []
    for b in range(256):
        v = b
        for _ in range(8):
            v = (v >> 1) ^ 0x8408 if v & 1 else v >> 1
        t.append(v)
    return t


FCSTAB = _fcs_table()


def fcs16(data, fcs=0xFFFF):
    for c in data:
        fcs = (fcs >> 8) ^ FCSTAB[(fcs ^ c) & 0xFF]
    return fcs


def frame(proto, payload):
    """One HDLC-like frame: address/control, protocol, payload, FCS; every byte below 0x20
    escaped (the default ACCM, always valid)."""
    body = bytes((0xFF, 0x03)) + struct.pack(">H", proto) + payload
    fcs = fcs16(body) ^ 0xFFFF
    body += bytes((fcs & 0xFF, fcs >> 8))
    out = bytearray((FLAG,))
    for c in body:
        if c < 0x20 or c in (FLAG, ESC):
            out += bytes((ESC, c ^ 0x20))
        else:
            out.append(c)
    out.append(FLAG)
    return bytes(out)


class Deframer:
    def __init__(self):
        self.buf = bytearray()
        self.esc = False

    def feed(self, data):
        """[(protocol, payload)] of the complete, valid frames in data."""
        out = []
        for c in data:
            if c == FLAG:
                if len(self.buf) >= 4 and fcs16(self.buf) == 0xF0B8:
                    f = bytes(self.buf[:-2])
                    if f[:2] == b"\xff\x03":
                        f = f[2:]
                    if f and f[0] & 1:  # compressed protocol field
                        out.append((f[0], f[1:]))
                    elif len(f) >= 2:
                        out.append(((f[0] << 8) | f[1], f[2:]))
                self.buf = bytearray()
                self.esc = False
            elif c == ESC:
                self.esc = True
            else:
                self.buf.append(c ^ 0x20 if self.esc else c)
                self.esc = False
        return out


def options(data):
    i, out = 0, []
    while i + 2 <= len(data):
        t, n = data[i], data[i + 1]
        if n < 2 or i + n > len(data):
            break
        out.append((t, data[i + 2:i + n]))
        i += n
    return out


def packet(code, ident, data=b""):
    return struct.pack(">BBH", code, ident, 4 + len(data)) + data


def opts(items):
    return b"".join(bytes((t, 2 + len(v))) + v for t, v in items)


class Gateway:
    def __init__(self, uart_path, local, peer, wait_uart=0):
        self.uart_path = uart_path
        self.local = socket.inet_aton(local)
        self.peer = socket.inet_aton(peer)
        self.wait_uart = wait_uart
        self.sock = None
        self.tun = None
        self.deframer = Deframer()
        self.ident = 0
        self.magic = os.urandom(4)
        self.reset()

    def say(self, msg):
        print(msg, flush=True)

    def reset(self):
        self.lcp_ours_acked = self.lcp_theirs_acked = False
        self.ipcp_ours_acked = self.ipcp_theirs_acked = False
        self.lcp_up = self.ipcp_up = False
        self.next_req = 0.0
        self.tries = 0

    # ---- setup -------------------------------------------------------------------------
    def open_tun(self):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", IFNAME.encode(), IFF_TUN | IFF_NO_PI))
        os.set_blocking(fd, False)
        self.tun = fd
        local = socket.inet_ntoa(self.local)
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", local + "/24", "dev", IFNAME],
                     ["ip", "link", "set", IFNAME, "up", "mtu", "1500"]):
            subprocess.run(argv, check=True)
        self.say("tun %s %s/24 up" % (IFNAME, local))

    def connect_uart(self):
        deadline = time.monotonic() + self.wait_uart
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.uart_path)
                s.setblocking(False)
                self.sock = s
                self.say("uart connected")
                return True
            except OSError:
                s.close()
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)

    # ---- sending -----------------------------------------------------------------------
    def send(self, proto, payload):
        data = frame(proto, payload)
        while data:
            try:
                n = self.sock.send(data)
                data = data[n:]
            except BlockingIOError:
                select.select([], [self.sock], [], 1.0)

    def next_ident(self):
        self.ident = (self.ident + 1) & 0xFF
        return self.ident

    def send_requests(self, now):
        if now < self.next_req:
            return
        self.next_req = now + 1.0
        if not self.lcp_ours_acked:
            self.send(PROTO_LCP, packet(CONF_REQ, self.next_ident(), opts([(5, self.magic)])))
        elif self.lcp_up and not self.ipcp_ours_acked:
            self.send(PROTO_IPCP, packet(CONF_REQ, self.next_ident(), opts([(3, self.local)])))

    # ---- receiving ---------------------------------------------------------------------
    def on_frame(self, proto, payload):
        if proto == PROTO_LCP:
            self.on_lcp(payload)
        elif proto == PROTO_IPCP:
            if self.lcp_up:
                self.on_ipcp(payload)
        elif proto == PROTO_IP:
            if self.ipcp_up and self.tun is not None:
                try:
                    os.write(self.tun, payload)
                except OSError:
                    pass
        elif self.lcp_up:  # IPV6CP, CCP, ...: Protocol-Reject (RFC 1661 5.7)
            self.send(PROTO_LCP, packet(PROTO_REJ, self.next_ident(),
                                        struct.pack(">H", proto) + payload[:1400]))

    def on_lcp(self, p):
        if len(p) < 4:
            return
        code, ident, n = struct.unpack(">BBH", p[:4])
        data = p[4:n]
        if code == CONF_REQ:
            if self.lcp_up:  # the board started over (a reboot): so do we
                self.say("lcp down (peer restarted)")
                self.reset()
            rej = [(t, v) for t, v in options(data) if t not in (1, 2, 5)]
            if rej:
                self.send(PROTO_LCP, packet(CONF_REJ, ident, opts(rej)))
            else:
                self.send(PROTO_LCP, packet(CONF_ACK, ident, data))
                self.lcp_theirs_acked = True
        elif code == CONF_ACK:
            self.lcp_ours_acked = True
            self.next_req = 0.0
        elif code in (CONF_NAK, CONF_REJ):
            self.next_req = 0.0  # our only option is the magic number: send it again
        elif code == TERM_REQ:
            self.send(PROTO_LCP, packet(TERM_ACK, ident))
            if self.lcp_up:
                self.say("lcp down (terminated by peer)")
            self.reset()
            return
        elif code == ECHO_REQ:
            self.send(PROTO_LCP, packet(ECHO_REP, ident, self.magic + data[4:]))
        if not self.lcp_up and self.lcp_ours_acked and self.lcp_theirs_acked:
            self.lcp_up = True
            self.next_req = 0.0
            self.say("lcp up")

    def on_ipcp(self, p):
        if len(p) < 4:
            return
        code, ident, n = struct.unpack(">BBH", p[:4])
        data = p[4:n]
        if code == CONF_REQ:
            items = options(data)
            rej = [(t, v) for t, v in items if t != 3]
            addr = [v for t, v in items if t == 3]
            if rej:
                self.send(PROTO_IPCP, packet(CONF_REJ, ident, opts(rej)))
            elif not addr or addr[0] != self.peer:
                self.send(PROTO_IPCP, packet(CONF_NAK, ident, opts([(3, self.peer)])))
            else:
                self.send(PROTO_IPCP, packet(CONF_ACK, ident, data))
                self.ipcp_theirs_acked = True
        elif code == CONF_ACK:
            self.ipcp_ours_acked = True
        elif code in (CONF_NAK, CONF_REJ):
            self.next_req = 0.0
        elif code == TERM_REQ:
            self.send(PROTO_IPCP, packet(TERM_ACK, ident))
            self.ipcp_up = self.ipcp_ours_acked = self.ipcp_theirs_acked = False
            self.say("ipcp down")
        if not self.ipcp_up and self.ipcp_ours_acked and self.ipcp_theirs_acked:
            self.ipcp_up = True
            self.say("ipcp up peer %s" % socket.inet_ntoa(self.peer))

    def on_command(self, line):
        words = line.split()
        if len(words) == 2 and words[0] == "peer":
            self.peer = socket.inet_aton(words[1])
            self.say("next peer address %s" % words[1])

    # ---- the loop ----------------------------------------------------------------------
    def run(self):
        self.open_tun()
        if not self.connect_uart():
            self.say("no uart at %s" % self.uart_path)
            return 1
        stdin_open = True
        while True:
            fds = [self.sock, self.tun] + ([sys.stdin] if stdin_open else [])
            r, _, _ = select.select(fds, [], [], 0.2)
            if self.sock in r:
                try:
                    data = self.sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data == b"":  # QEMU went away: wait for the next one (power cycle)
                    self.sock.close()
                    self.sock = None
                    if self.lcp_up:
                        self.say("lcp down (uart closed)")
                    self.reset()
                    self.deframer = Deframer()
                    if not self.connect_uart():
                        self.say("uart gone")
                        return 0
                    continue
                for proto, payload in self.deframer.feed(data or b""):
                    self.on_frame(proto, payload)
            if self.tun in r:
                try:
                    pkt = os.read(self.tun, 65536)
                except (BlockingIOError, OSError):
                    pkt = b""
                if pkt and self.ipcp_up:
                    self.send(PROTO_IP, pkt)
            if stdin_open and sys.stdin in r:
                line = sys.stdin.readline()
                if not line:
                    stdin_open = False
                else:
                    self.on_command(line)
            self.send_requests(time.monotonic())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uart", required=True, help="QEMU's UART1 unix socket")
    ap.add_argument("--local", default="10.44.0.1", help="this side's address (/24)")
    ap.add_argument("--peer", default="10.44.0.2", help="the address the board gets")
    ap.add_argument("--wait-uart", type=float, default=30.0,
                    help="seconds to keep trying the UART socket (default %(default)s)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return Gateway(a.uart, a.local, a.peer, a.wait_uart).run()


if __name__ == "__main__":
    sys.exit(main())
