// A pion/dtls v2 PSK echo server for the interop tests (built by tools/install_peers.sh from
// Debian's golang-github-pion-dtls.v2-dev). Loopback only; serves many associations at once:
// each handshake runs in its own goroutine (pion's own Listener.Accept handshakes one client
// at a time, so one silent client would stall every other for -hstimeout).
//
// It keeps sessions in memory (a dtls.SessionStore) and resumes them by session ID
// (RFC 5246 7.3); pion skips HelloVerifyRequest on resumption.
//
//	pion_server -addr 127.0.0.1:PORT -psk HEX [-identity ID] [-hint TEXT] [-nocookie]
//	            [-hstimeout 10s] [-noems]
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
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

func serve(raw net.Conn, cfg *dtls.Config, hstimeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), hstimeout)
	c, err := dtls.ServerWithContext(ctx, raw, cfg)
	cancel()
	if err != nil {
		fmt.Printf("handshake failed from %s: %v\n", raw.RemoteAddr(), err)
		raw.Close()
		return
	}
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
