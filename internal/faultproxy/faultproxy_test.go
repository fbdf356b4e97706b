package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/tobira-ac/tobira/internal/faultproxy"
)

// echoServer accepts connections on loopback and echoes what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes n bytes through addr and reads back what comes, until
// the connection ends or n bytes came back.
func roundTrip(t *testing.T, addr string, n int) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("0123456789"), n/10)
	go c.Write(msg)
	got := make([]byte, 0, n)
	buf := make([]byte, 4096)
	for len(got) < len(msg) {
		k, err := c.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			break
		}
	}
	if !bytes.Equal(got, msg[:len(got)]) {
		t.Fatalf("proxy changed the bytes it forwarded")
	}
	return got
}

func TestProxy(t *testing.T) {
	tests := []struct {
		name      string
		cfg       faultproxy.Config
		conns     int
		wantCuts  int
		wantWhole int // connections expected to carry all 10000 bytes
	}{
		{"never cuts", faultproxy.Config{}, 3, 0, 3},
		// 10000 bytes out and back is 20000 bytes: a budget of at most
		// 5000 cuts every connection.
		{"cuts every connection", faultproxy.Config{MinBytes: 100, MaxBytes: 5000}, 3, 3, 0},
		{"stops cutting after MaxCuts", faultproxy.Config{MinBytes: 100, MaxBytes: 5000, MaxCuts: 2}, 4, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Target = echoServer(t)
			p, err := faultproxy.Start(t.Context(), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			whole := 0
			for range tt.conns {
				if len(roundTrip(t, p.Addr(), 10000)) == 10000 {
					whole++
				}
			}
			if p.Cuts() != tt.wantCuts || whole != tt.wantWhole || p.Connections() != tt.conns {
				t.Fatalf("cuts %d, whole %d, connections %d; want %d, %d, %d",
					p.Cuts(), whole, p.Connections(), tt.wantCuts, tt.wantWhole, tt.conns)
			}
		})
	}
}

func TestProxyCutAllAndClose(t *testing.T) {
	p, err := faultproxy.Start(context.Background(), faultproxy.Config{Target: echoServer(t)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	p.CutAll()
	if _, err := c.Read(buf); err == nil {
		t.Fatal("read after CutAll succeeded, want the connection closed")
	}
	if p.Cuts() != 1 {
		t.Fatalf("Cuts = %d after CutAll of one connection, want 1", p.Cuts())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}

func TestStartChecksConfig(t *testing.T) {
	for _, cfg := range []faultproxy.Config{{}, {Target: "127.0.0.1:1", MinBytes: 10, MaxBytes: 5}} {
		if _, err := faultproxy.Start(t.Context(), cfg); err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("Start(%+v) = %v, want a config error", cfg, err)
		}
	}
}

func TestProxySetDown(t *testing.T) {
	p, err := faultproxy.Start(t.Context(), faultproxy.Config{Target: echoServer(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.SetDown(true)
	if got := roundTrip(t, p.Addr(), 100); len(got) != 0 {
		t.Fatalf("%d bytes came back through a proxy that is down", len(got))
	}
	p.SetDown(false)
	if got := roundTrip(t, p.Addr(), 100); len(got) != 100 {
		t.Fatalf("%d bytes came back after SetDown(false), want 100", len(got))
	}
}
