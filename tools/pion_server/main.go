// A pion/dtls v2 PSK echo server for the interop tests (built by tools/install_peers.sh from
// Debian's golang-github-pion-dtls.v2-dev). Loopback only; serves many associations at once.
//
//	pion_server -addr 127.0.0.1:PORT -psk HEX -hint TEXT [-nocookie]
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/pion/dtls/v2"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	pskHex := flag.String("psk", "73656372657450534b", "PSK as hex")
	identity := flag.String("identity", "Client_identity", "the one identity accepted")
	hint := flag.String("hint", "", "PSK identity hint (ServerKeyExchange) if not empty")
	nocookie := flag.Bool("nocookie", false, "skip HelloVerifyRequest")
	flag.Parse()
	psk, err := hex.DecodeString(*pskHex)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad -psk:", err)
		os.Exit(2)
	}
	udp, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad -addr:", err)
		os.Exit(2)
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
		ExtendedMasterSecret:    dtls.RequireExtendedMasterSecret,
		InsecureSkipVerifyHello: *nocookie,
		ConnectContextMaker: func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), 10*time.Second)
		},
	}
	if *hint != "" {
		cfg.PSKIdentityHint = []byte(*hint)
	}
	ln, err := dtls.Listen("udp", udp, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Println("handshake failed:", err)
			continue
		}
		go echo(c)
	}
}

func echo(c net.Conn) {
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
