// A pion/dtls v2 PSK echo server for the interop tests (built by tools/install_peers.sh from
// Debian's golang-github-pion-dtls.v2-dev). Loopback only; serves many associations at once:
// each handshake runs in its own goroutine (pion's own Listener.Accept handshakes one client
// at a time, so one silent client would stall every other for -hstimeout).
//
// It keeps sessions in memory (a dtls.SessionStore) and resumes them by session ID
// (RFC 5246 7.3); pion skips HelloVerifyRequest on resumption.
//
// RFC 6347 4.2.8: a new ClientHello (epoch 0) from the address of an established association
// means the client lost its state or resumes; pion 2.2 hands it to that association, which
// ignores it. helloWatch closes the association instead, so the client's retransmitted
// ClientHello opens a new one (which may resume). Simplified: 4.2.8 keeps the old association
// until the new handshake proved reachability; a loopback test server need not.
//
//	pion_server -addr 127.0.0.1:PORT -psk HEX [-identity ID] [-hint TEXT] [-nocookie]
//	            [-hstimeout 10s] [-noems]
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/protocol"
	"github.com/pion/dtls/v2/pkg/protocol/recordlayer"
	"github.com/pion/udp"
)

// memStore is an in-memory dtls.SessionStore keyed by session ID. The server calls Set after
// a full handshake, Get for every ClientHello that offers an ID (a miss must return a zero
// Session and no error, else pion answers internal_error) and Del after a fatal alert.
type memStore struct {
	mu       sync.Mutex
	sessions map[string]dtls.Session
}

func (m *memStore) Set(key []byte, s dtls.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[string(key)] = dtls.Session{ID: append([]byte{}, s.ID...), Secret: append([]byte{}, s.Secret...)}
	fmt.Printf("session stored %x\n", key)
	return nil
}

func (m *memStore) Get(key []byte) (dtls.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[string(key)]
	if ok {
		fmt.Printf("session resumed %x\n", key)
	} else {
		fmt.Printf("session unknown %x\n", key)
	}
	return s, nil
}

func (m *memStore) Del(key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, string(key))
	fmt.Printf("session deleted %x\n", key)
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	pskHex := flag.String("psk", "73656372657450534b", "PSK as hex")
	identity := flag.String("identity", "Client_identity", "the one identity accepted")
	hint := flag.String("hint", "", "PSK identity hint (ServerKeyExchange) if not empty")
	nocookie := flag.Bool("nocookie", false, "skip HelloVerifyRequest")
	hstimeout := flag.Duration("hstimeout", 10*time.Second, "handshake timeout per association")
	noems := flag.Bool("noems", false, "accept clients without extended master secret")
	flag.Parse()
	psk, err := hex.DecodeString(*pskHex)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad -psk:", err)
		os.Exit(2)
	}
	udpAddr, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad -addr:", err)
		os.Exit(2)
	}
	ems := dtls.RequireExtendedMasterSecret
	if *noems {
		ems = dtls.RequestExtendedMasterSecret
	}
	cfg := &dtls.Config{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) != *identity {
				return nil, fmt.Errorf("unknown identity %q", id)
			}
			return psk, nil
		},
		CipherSuites: []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_PSK_WITH_AES_128_CCM,
			dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.TLS_PSK_WITH_AES_128_CBC_SHA256},
		ExtendedMasterSecret:    ems,
		InsecureSkipVerifyHello: *nocookie,
		SessionStore:            &memStore{sessions: map[string]dtls.Session{}},
	}
	if *hint != "" {
		cfg.PSKIdentityHint = []byte(*hint)
	}
	// The same filter as dtls.Listen: only a handshake record opens a new association.
	lc := udp.ListenConfig{
		Backlog: 1024,
		AcceptFilter: func(packet []byte) bool {
			pkts, err := recordlayer.UnpackDatagram(packet)
			if err != nil || len(pkts) < 1 {
				return false
			}
			h := &recordlayer.Header{}
			if err := h.Unmarshal(pkts[0]); err != nil {
				return false
			}
			return h.ContentType == protocol.ContentTypeHandshake
		},
	}
	ln, err := lc.Listen("udp", udpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s (hstimeout %s, ems required %t)\n", ln.Addr(), *hstimeout, !*noems)
	for {
		raw, err := ln.Accept()
		if err != nil {
			fmt.Println("accept failed:", err)
			return
		}
		go serve(raw, cfg, *hstimeout)
	}
}

// helloWatch is the raw connection of one association. A datagram whose first record is an
// epoch-0 ClientHello with a client random this association has not seen (not a
// retransmission, nor the hello after HelloVerifyRequest) closes it (RFC 6347 4.2.8): once
// the handshake is done, and also during it (the client restarted, e.g. it was killed).
type helloWatch struct {
	net.Conn
	mu      sync.Mutex
	done    bool
	tripped bool
	randoms map[string]bool
}

// clientHelloRandom is the client_random of a datagram whose first record is an epoch-0
// handshake record starting with a ClientHello's first fragment, else nil.
func clientHelloRandom(b []byte) []byte {
	// record header 13 (type, version, epoch, seq, length), handshake header 12, version 2
	if len(b) < 13+12+2+32 || b[0] != 22 || b[3] != 0 || b[4] != 0 || b[13] != 1 ||
		b[19] != 0 || b[20] != 0 || b[21] != 0 {
		return nil
	}
	return b[13+12+2 : 13+12+2+32]
}

func (w *helloWatch) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil || n == 0 {
		return n, err
	}
	r := clientHelloRandom(p[:n])
	if r == nil {
		return n, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.randoms[string(r)] || (!w.done && len(w.randoms) == 0) {
		w.randoms[string(r)] = true
		return n, err
	}
	w.tripped = true
	fmt.Printf("new ClientHello from %s: association closed (RFC 6347 4.2.8)\n", w.RemoteAddr())
	w.Conn.Close() // the listener forgets the address: its next datagram is a new association
	return 0, io.EOF
}

func (w *helloWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	tripped := w.tripped
	w.mu.Unlock()
	if tripped { // no close_notify from the old association into the client's new handshake
		return 0, net.ErrClosed
	}
	return w.Conn.Write(p)
}

func serve(conn net.Conn, cfg *dtls.Config, hstimeout time.Duration) {
	raw := &helloWatch{Conn: conn, randoms: map[string]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), hstimeout)
	c, err := dtls.ServerWithContext(ctx, raw, cfg)
	cancel()
	if err != nil {
		fmt.Printf("handshake failed from %s: %v\n", raw.RemoteAddr(), err)
		raw.Close()
		return
	}
	raw.mu.Lock()
	raw.done = true
	raw.mu.Unlock()
	fmt.Printf("handshake done from %s session %x\n", raw.RemoteAddr(), c.ConnectionState().SessionID)
	defer c.Close()
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if err != nil {
			fmt.Println("association ended:", err)
			return
		}
		fmt.Printf("echo %d bytes\n", n)
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}
