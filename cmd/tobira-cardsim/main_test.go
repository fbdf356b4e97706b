package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/jpkitest"
)

func TestGenPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"gen-pki", dir}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	anchors, err := reader.LoadTrustAnchors(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := reader.NewVerifier(anchors)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, want := range map[string]error{
		"card-1": nil, "card-2": nil, "card-expired": reader.ErrExpired,
		"card-not-yet-valid": reader.ErrNotYetValid, "card-untrusted": reader.ErrUntrustedIssuer,
	} {
		der, err := os.ReadFile(filepath.Join(dir, name+".der"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(der, now); (want == nil && err != nil) || (want != nil && !strings.Contains(err.Error(), want.Error())) {
			t.Errorf("%s: Verify() = %v, want %v", name, err, want)
		}
		if !strings.Contains(out.String(), name+".der") {
			t.Errorf("output does not list %s.der:\n%s", name, out.String())
		}
	}
	if code := run(t.Context(), []string{"gen-pki"}, nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "usage") {
		t.Errorf("gen-pki without DIR: exit %d, stderr %q", code, errOut.String())
	}
}

func TestFlags(t *testing.T) {
	certPath := filepath.Join(t.TempDir(), "auth.der")
	if err := os.WriteFile(certPath, []byte{0x30, 0x00}, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{nil, 2, "--cert is required"},
		{[]string{"--cert", certPath, "--pin", "12a4"}, 2, "--pin must be 4 digits"},
		{[]string{"--cert", certPath, "--pin", "12345"}, 2, "--pin must be 4 digits"},
		{[]string{"--cert", certPath, "--tries", "4"}, 2, "--tries must be"},
		{[]string{"--cert", certPath, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"--cert", filepath.Join(t.TempDir(), "missing.der")}, 1, "missing.der"},
		{[]string{"--help"}, 0, "tobira-cardsim gen-pki DIR"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), tt.args, strings.NewReader(""), &out, &errOut)
			if code != tt.wantCode || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut.String(), tt.wantCode, tt.wantErr)
			}
		})
	}
}

// vpcdSide speaks vpcd's side of the protocol on an accepted connection.
type vpcdSide struct {
	t    *testing.T
	conn net.Conn
}

func (v vpcdSide) exchange(msg []byte) []byte {
	v.t.Helper()
	buf := binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
	if _, err := v.conn.Write(append(buf, msg...)); err != nil {
		v.t.Fatal(err)
	}
	var hdr [2]byte
	if _, err := io.ReadFull(v.conn, hdr[:]); err != nil {
		v.t.Fatalf("answer to % X: %v", msg, err)
	}
	ans := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(v.conn, ans); err != nil {
		v.t.Fatal(err)
	}
	return ans
}

func TestConsole(t *testing.T) {
	now := time.Now()
	ca, err := jpkitest.NewCA("", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueAuthCert(0x12345678, now.Add(-time.Hour), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath := filepath.Join(dir, "auth.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		exit <- run(t.Context(), []string{"--vpcd", ln.Addr().String(), "--cert", certPath, "--label", "JPKIAPICCTOKEN"}, stdinR, stdoutW, io.Discard)
		stdoutW.Close()
	}()
	replies := bufio.NewScanner(stdoutR)
	say := func(cmd, want string) {
		t.Helper()
		if _, err := io.WriteString(stdinW, cmd+"\n"); err != nil {
			t.Fatal(err)
		}
		if !replies.Scan() {
			t.Fatalf("%s: no reply", cmd)
		}
		if got := replies.Text(); !strings.HasPrefix(got, want) {
			t.Fatalf("%s: reply %q, want prefix %q", cmd, got, want)
		}
	}

	say("remove", "error: remove card from vpcd")
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- conn
	}()
	say("insert", "ok")
	conn := <-accepted
	defer conn.Close()
	v := vpcdSide{t, conn}
	selectAP := []byte{0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01}
	if ans := v.exchange(selectAP); !bytes.Equal(ans, []byte{0x90, 0x00}) {
		t.Fatalf("SELECT AP = % X", ans)
	}
	v.exchange([]byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x06})
	if ans := v.exchange([]byte{0x00, 0xB0, 0x00, 0x00, 0x20}); !bytes.HasPrefix(ans, []byte("JPKIAPICCTOKEN ")) {
		t.Fatalf("token = %q, want the --label", ans)
	}
	v.exchange([]byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x0A})
	if ans := v.exchange([]byte{0x00, 0xB0, 0x00, 0x00, 0x10}); !bytes.Equal(ans[:16], der[:16]) {
		t.Fatalf("certificate start = % X, want % X", ans[:16], der[:16])
	}
	say("insert", "error: insert card into vpcd")
	say("bogus", `error: unknown command "bogus"`)
	say("remove", "ok")
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after remove: %v, want EOF", err)
	}
	say("quit", "ok")
	if code := <-exit; code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestConsoleEndOfInputAndTimeout(t *testing.T) {
	certPath := filepath.Join(t.TempDir(), "auth.der")
	if err := os.WriteFile(certPath, []byte{0x30, 0x00}, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens: insert must give up
	var out bytes.Buffer
	code := run(t.Context(), []string{"--vpcd", addr, "--cert", certPath, "--connect-timeout", "50ms"}, strings.NewReader("insert\n"), &out, io.Discard)
	if code != 0 {
		t.Fatalf("exit %d at end of input, want 0", code)
	}
	if !strings.Contains(out.String(), "error: insert card into vpcd") || !strings.Contains(out.String(), "deadline exceeded") {
		t.Errorf("output %q, want an insert timeout error", out.String())
	}
}
