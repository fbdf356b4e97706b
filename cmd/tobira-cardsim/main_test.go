package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/cmd/internal/cli/clitest"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
)

func TestGenPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"gen-pki", dir}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	v := kitVerifier(t, dir)
	now := time.Now()
	for name, want := range map[string]error{
		"card-1": nil, "card-2": nil, "card-gen2": nil, "card-expired": reader.ErrExpired,
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
	if want := "--key " + filepath.Join(dir, "card-key.pem"); !strings.Contains(out.String(), want) {
		t.Errorf("output does not show %q:\n%s", want, out.String())
	}
	if code := run(t.Context(), []string{"gen-pki"}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "tobira-cardsim gen-pki: accepts 1 arg(s), received 0") {
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
		{[]string{"--label", cardsim.LabelJuki}, 2, "--cert is required"},
		{[]string{"--cert", certPath, "--pin", "12a4"}, 2, "--pin must be 4 digits"},
		{[]string{"--cert", certPath, "--pin", "12345"}, 2, "--pin must be 4 digits"},
		{[]string{"--cert", certPath, "--tries", "4"}, 2, "--tries must be"},
		{[]string{"--cert", certPath, "extra"}, 2, `unknown command "extra" for "tobira-cardsim"`},
		{[]string{"--bogus"}, 2, "tobira-cardsim: unknown flag: --bogus"},
		{[]string{"-cert", certPath}, 2, "unknown shorthand flag: 'c' in -cert"},
		{[]string{"--cert", filepath.Join(t.TempDir(), "missing.der")}, 1, "missing.der"},
		{[]string{"--cert", certPath, "--key", filepath.Join(t.TempDir(), "missing.pem")}, 1, "read key: open"},
		{[]string{"--cert", certPath, "--key", certPath}, 1, "no PEM PRIVATE KEY or RSA PRIVATE KEY block"},
		{[]string{"--cert", certPath, "--free-area-pin", "1357"}, 2, "--free-area-pin must be 4 digits and needs --free-area-id"},
		{[]string{"--cert", certPath, "--free-area-id", "E1", "--free-area-pin", "13"}, 2, "--free-area-pin must be 4 digits"},
		{[]string{"--cert", certPath, "--free-area-id", "EMP 7"}, 2, "--free-area-id must be"},
		{[]string{"--cert", certPath, "--free-area-id", strings.Repeat("E", 51)}, 2, "--free-area-id must be"},
		{[]string{"--cert", certPath, "--remove-after", "-1"}, 2, "--remove-after must be 0 or more"},
		{[]string{"--label", ""}, 0, ""}, // a card without JPKI-AP needs no certificate
		{[]string{"--help"}, 0, ""},      // TestHelp checks what it prints
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

// TestHelp runs -h, --help and help for every command of the tree.
func TestHelp(t *testing.T) {
	clitest.CheckHelp(t, newRoot(), func(args []string, stdout, stderr io.Writer) error {
		return cli.Execute(t.Context(), newRoot(), args, stdout, stderr)
	})
}

// parseFlags parses the serving form's flags as the command does and
// validates them.
func parseFlags(args []string, _ io.Writer) (config, error) {
	var cfg config
	c := &cobra.Command{}
	cfg.register(c)
	if err := c.Flags().Parse(args); err != nil {
		return config{}, err
	}
	return cfg, cfg.validate()
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

func TestReadKey(t *testing.T) {
	key, err := jpkitest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPKCS8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"PKCS #8", block("PRIVATE KEY", pkcs8), ""},
		{"PKCS #1", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)), ""},
		{"key after a certificate", append(block("CERTIFICATE", []byte{0x30, 0x00}), block("PRIVATE KEY", pkcs8)...), ""},
		{"EC key", block("PRIVATE KEY", ecPKCS8), "want an RSA key"},
		{"bad PKCS #1", block("RSA PRIVATE KEY", []byte{0x30, 0x00}), "parse PKCS #1"},
		{"bad PKCS #8", block("PRIVATE KEY", []byte{0x30, 0x00}), "parse PKCS #8"},
		{"DER, not PEM", pkcs8, "no PEM PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readKey(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("readKey() = %v, want an error naming %s and %q", err, path, tt.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(key) {
				t.Fatalf("readKey() = %v, %v; want the key", got, err)
			}
		})
	}
}

// kitDir writes a gen-pki kit and returns its directory.
func kitDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if code := run(t.Context(), []string{"gen-pki", dir}, nil, io.Discard, t.Output()); code != 0 {
		t.Fatalf("gen-pki exit %d", code)
	}
	return dir
}

// kitVerifier returns a verifier that trusts the kit in dir.
func kitVerifier(t *testing.T, dir string) *reader.Verifier {
	t.Helper()
	anchors, err := reader.LoadTrustAnchors(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := reader.NewVerifier(anchors)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCardFromFlags checks what each card flag does to the simulated
// card, in process (the PC/SC path is in pcsc_integration_test.go).
func TestCardFromFlags(t *testing.T) {
	dir := kitDir(t)
	file := func(name string) string { return filepath.Join(dir, name) }
	v := kitVerifier(t, dir)
	// A key that is not the certificates' key.
	other, err := jpkitest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := x509.MarshalPKCS8PrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(t.TempDir(), "other-key.pem")
	if err := os.WriteFile(otherKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	fa := cardsim.DemoFreeAreaProfile(false)
	signer := []string{"--cert", file("card-1.der"), "--key", file("card-key.pem"), "--pin", "2468"}
	tests := []struct {
		name     string
		args     []string
		mode     reader.Mode
		typed    string // the PIN typed on the keypad
		wantErr  error
		wantWarn bool
		check    func(t *testing.T, id reader.Identity, card *cardsim.Card)
	}{
		{name: "key signs", args: signer, mode: reader.ModePIN, typed: "2468",
			check: func(t *testing.T, id reader.Identity, card *cardsim.Card) {
				if !id.PINVerified || card.Signatures() != 1 {
					t.Errorf("PINVerified %v, signatures %d", id.PINVerified, card.Signatures())
				}
			}},
		{name: "no key, no signature", args: []string{"--cert", file("card-1.der")}, mode: reader.ModePIN, typed: "1234", wantErr: reader.ErrCardResponse},
		{name: "key of another certificate: warned, signature fails", args: []string{"--cert", file("card-1.der"), "--key", otherKey}, mode: reader.ModePIN, typed: "1234",
			wantErr: reader.ErrSignature, wantWarn: true},
		{name: "wrong PIN", args: signer, mode: reader.ModePIN, typed: "1111", wantErr: reader.ErrPINWrong,
			check: func(t *testing.T, id reader.Identity, card *cardsim.Card) {
				if card.Tries() != 2 {
					t.Errorf("tries %d, want 2", card.Tries())
				}
			}},
		{name: "one try left", args: append(signer, "--tries", "1"), mode: reader.ModePIN, typed: "2468", wantErr: reader.ErrPINNearlyBlocked},
		{name: "blocked", args: append(signer, "--tries", "0"), mode: reader.ModePIN, typed: "2468", wantErr: reader.ErrPINBlocked},
		{name: "smartphone certificate needs the PIN", args: append(signer, "--label", cardsim.LabelAndroid, "--cert-needs-pin"), mode: reader.ModeSerial,
			wantErr: reader.ErrCardResponse},
		{name: "free area", args: []string{"--label", "", "--free-area-id", "EMP-9"}, mode: reader.ModeFreeArea,
			check: func(t *testing.T, id reader.Identity, card *cardsim.Card) {
				if id.Credential.ID != "EMP-9" {
					t.Errorf("credential %v", id.Credential)
				}
			}},
		{name: "removed after 3 commands", args: append(signer, "--remove-after", "3"), mode: reader.ModeSerial, wantErr: reader.ErrCardRemoved,
			check: func(t *testing.T, id reader.Identity, card *cardsim.Card) {
				if id.APDUs != 4 {
					t.Errorf("APDUs %d, want 4 (the 4th unanswered)", id.APDUs)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFlags(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			card, err := cfg.card(slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if warned := strings.Contains(logs.String(), "does not match"); warned != tt.wantWarn {
				t.Errorf("warning logged %v, want %v: %s", warned, tt.wantWarn, logs.String())
			}
			ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: tt.mode, Verifier: v, Keypad: &scriptedKeypad{pin: tt.typed}, FreeArea: &fa})
			if err != nil {
				t.Fatal(err)
			}
			id, err := ident.Identify(t.Context(), card, time.Now())
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Identify() = %v, want %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, id, card)
			}
		})
	}
}
