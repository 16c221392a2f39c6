"""A CID-routing UDP front for tests (CPython only): what a CID-aware load balancer does in
front of a DTLS server, so that a client that moves to a new address or port reaches the same
server association (RFC 9146 6 leaves the address update to the server; Mbed TLS's
ssl_server2 ties its socket to the first client address, so it needs this in front).

    with cid_front.CidFront(upstream=(srv.host, srv.port), cid_len=3) as front:
        run the client against front.address ...
        front.log         # [(direction, client (host, port), datagram bytes), ...]
        front.rebinds     # times an association's client address changed (CID routing)
        front.dropped     # tls12_cid datagrams with a CID no association has

Routing. Each association has its own upstream socket, so the server sees one stable address
per association. A datagram whose first record is tls12_cid (content type 25) is routed by the
CID in its header (cid_len bytes after the sequence number, RFC 9146 4; the front knows the
length, as a load balancer knows the length of the CIDs its servers assign) and the
association's client address becomes the datagram's source: replies go there. Anything else
(the handshake before a CID exists, or a connection without CID) is routed by client address.
The front learns an association's CID from the server's ServerHello (connection_id extension,
RFC 9146 3) as it passes, or else from the first tls12_cid datagram of a known client address.
Like any load balancer it cannot authenticate records: the server's own checks stay the
authority (a spoofed CID can at worst redirect replies until the real client sends again).

One thread, one selector, bounded tables (MAX_ASSOCIATIONS, MAX_LOG); the thread stops and
every socket closes on exit. Only loopback addresses.
"""
import selectors
import socket
import struct
import threading

UP = "up"      # client -> server
DOWN = "down"  # server -> client
MAX_ASSOCIATIONS = 64
MAX_LOG = 100000
_POLL_S = 0.05
_CT_HANDSHAKE = 22
_CT_TLS12_CID = 25
_HT_SERVER_HELLO = 2
_EXT_CONNECTION_ID = 54


def record_cid(datagram, cid_len):
    """The CID of the datagram's first record if it is a tls12_cid record, else None."""
    if len(datagram) >= 13 + cid_len and datagram[0] == _CT_TLS12_CID:
        return bytes(datagram[11:11 + cid_len])
    return None


def server_hello_cid(datagram):
    """The CID a ServerHello in this (epoch 0) datagram asks for, or None."""
    off = 0
    while off + 13 <= len(datagram):
        ctype, epoch, n = datagram[off], struct.unpack_from(">H", datagram, off + 3)[0], \
            struct.unpack_from(">H", datagram, off + 11)[0]
        frag = datagram[off + 13:off + 13 + n]
        off += 13 + n
        if ctype != _CT_HANDSHAKE or epoch != 0 or len(frag) < 12 or frag[0] != _HT_SERVER_HELLO:
            continue
        body = frag[12:]  # a whole, unfragmented ServerHello is all we need to handle here
        try:
            p = 35 + body[34] + 3  # version, random, session_id, cipher_suite, compression
            end = p + 2 + struct.unpack_from(">H", body, p)[0]
            p += 2
            while p + 4 <= end:
                t, m = struct.unpack_from(">HH", body, p)
                if t == _EXT_CONNECTION_ID and m >= 1:
                    return bytes(body[p + 5:p + 5 + body[p + 4]])
                p += 4 + m
        except (IndexError, struct.error):
            return None
    return None


class _Association:
    def __init__(self, client, upstream):
        self.client = client
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind(("127.0.0.1", 0))
        self.up.connect(upstream)
        self.cids = []


class CidFront:
    def __init__(self, upstream, cid_len, host="127.0.0.1", port=0):
        self.upstream = upstream
        self.cid_len = cid_len
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.by_cid = {}
        self.by_addr = {}
        self.associations = []
        self.log = []
        self.rebinds = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return self.sock.getsockname()

    @property
    def port(self):
        return self.address[1]

    def records(self, direction):
        """[(client, datagram)] of one direction, in order."""
        with self._lock:
            return [(c, d) for dr, c, d in self.log if dr == direction]

    def close(self):
        self._stop.set()
        self._thread.join(2.0)
        for a in self.associations:
            a.up.close()
        self.sock.close()
        self._sel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- the thread -------------------------------------------------------------------------

    def _run(self):
        while not self._stop.is_set():
            for key, _ in self._sel.select(_POLL_S):
                try:
                    data, addr = key.fileobj.recvfrom(65535)
                except OSError:  # e.g. ICMP port unreachable from a client that went away
                    continue
                with self._lock:
                    if key.data is None:
                        self._from_client(data, addr)
                    else:
                        self._from_server(key.data, data)

    def _log(self, direction, client, data):
        if len(self.log) < MAX_LOG:
            self.log.append((direction, client, data))

    def _from_client(self, data, addr):
        self._log(UP, addr, data)
        cid = record_cid(data, self.cid_len)
        if cid is None:
            a = self.by_addr.get(addr) or self._new(addr)
        else:
            a = self.by_cid.get(cid)
            if a is None:
                a = self.by_addr.get(addr)
                if a is None:
                    self.dropped += 1
                    return
                self._learn(a, cid)
            if a.client != addr:  # a new address or port: the association follows the CID
                self.rebinds += 1
                a.client = addr
                self.by_addr[addr] = a
        if a is not None:
            try:
                a.up.send(data)
            except OSError:
                pass

    def _from_server(self, a, data):
        self._log(DOWN, a.client, data)
        cid = server_hello_cid(data)
        if cid:
            self._learn(a, cid)
        try:
            self.sock.sendto(data, a.client)
        except OSError:
            pass

    def _learn(self, a, cid):
        if cid not in a.cids:
            a.cids.append(cid)
        self.by_cid[cid] = a

    def _new(self, addr):
        if len(self.associations) >= MAX_ASSOCIATIONS:
            self.dropped += 1
            return None
        a = _Association(addr, self.upstream)
        self.associations.append(a)
        self.by_addr[addr] = a
        self._sel.register(a.up, selectors.EVENT_READ, a)
        return a
