package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/pcsc"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
)

// These tests run the acceptance checks of the reader issue through the
// real stack with this command as the card: pcsc.Conn -> pcscd -> vpcd
// -> tobira-cardsim (run in process, driven on its stdin).

// integrationTimeout bounds each integration test, so that a hung PC/SC
// call fails the test instead of stalling the run.
const integrationTimeout = 90 * time.Second

// sim is a running tobira-cardsim, driven through its console.
type sim struct {
	t       *testing.T
	stdin   *io.PipeWriter
	replies *bufio.Scanner
	exit    chan int
}

// startSim runs tobira-cardsim on vpcd slot 0 with args; it quits when the
// test ends.
func startSim(t *testing.T, args ...string) *sim {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	s := &sim{t: t, stdin: stdinW, replies: bufio.NewScanner(stdoutR), exit: make(chan int, 1)}
	go func() {
		s.exit <- run(context.Background(), append([]string{"--vpcd", pcsctest.VPCDAddr}, args...), stdinR, stdoutW, t.Output())
		stdoutW.Close()
	}()
	t.Cleanup(func() {
		stdinW.Close() // end of input: the command exits, removing its card
		for s.replies.Scan() {
		}
		if code := <-s.exit; code != 0 {
			t.Errorf("tobira-cardsim exit %d", code)
		}
	})
	return s
}

// say sends one console command and returns the reply line.
func (s *sim) say(cmd string) string {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, cmd+"\n"); err != nil {
		s.t.Fatalf("tobira-cardsim %s: %v", cmd, err)
	}
	if !s.replies.Scan() {
		s.t.Fatalf("tobira-cardsim %s: no reply", cmd)
	}
	return s.replies.Text()
}

// must sends cmd and fails the test unless the reply starts with "ok".
func (s *sim) must(cmd string) string {
	s.t.Helper()
	r := s.say(cmd)
	if !strings.HasPrefix(r, "ok") {
		s.t.Fatalf("tobira-cardsim %s: %s", cmd, r)
	}
	return r
}

// scriptedKeypad types a fixed PIN, after running hook if set.
type scriptedKeypad struct {
	pin  string
	hook func()
}

func (k *scriptedKeypad) ReadPIN(ctx context.Context, maxLen int) (*reader.PIN, error) {
	if k.hook != nil {
		k.hook()
	}
	p := reader.NewPIN(maxLen)
	for _, d := range []byte(k.pin) {
		if err := p.Add(d); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// nextCard waits for the card, retrying while the reader is unavailable
// (as the controller does).
func nextCard(ctx context.Context, t *testing.T, src *pcsc.Source) reader.Card {
	t.Helper()
	var err error
	for range 100 {
		var c reader.Card
		if c, err = src.NextCard(ctx); err == nil {
			return c
		}
		t.Logf("NextCard() = %v; retrying", err)
		wait, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		<-wait.Done()
		cancel()
	}
	t.Fatalf("NextCard() never succeeded: %v", err)
	return nil
}

// TestPCSCAcceptance runs each item of the reader issue's "How it is
// checked" list through pcscd + vpcd + tobira-cardsim, with the card made
// from this command's flags.
func TestPCSCAcceptance(t *testing.T) {
	p, ctx := pcsctest.Open(t, slog.LevelInfo, integrationTimeout)
	src := p.Source(pcsctest.Reader)
	dir := kitDir(t)
	v := kitVerifier(t, dir)
	now := time.Now() // the kit is made relative to the wall clock
	file := func(name string) string { return filepath.Join(dir, name) }
	gen2DER, err := os.ReadFile(file("ca-gen2.der"))
	if err != nil {
		t.Fatal(err)
	}
	gen2, err := x509.ParseCertificate(gen2DER)
	if err != nil {
		t.Fatal(err)
	}
	card1, err := os.ReadFile(file("card-1.der"))
	if err != nil {
		t.Fatal(err)
	}
	// Commands before 80 2A in mode pin: SELECT AP, SELECT + READ EF 0006,
	// SELECT EF 000A + its READs, SELECT EF 0018, tries query, VERIFY,
	// SELECT EF 0017.
	beforeSign := 4 + (len(card1)+255)/256 + 4
	signer := []string{"--cert", file("card-1.der"), "--key", file("card-key.pem"), "--pin", "2468"}
	fa := cardsim.DemoFreeAreaProfile(true)

	tests := []struct {
		name        string
		args        []string
		mode        reader.Mode
		allowLast   bool
		pin         string
		removeAtPIN bool
		wantErr     error
		wantStatus  string
		check       func(t *testing.T, id reader.Identity)
	}{
		{name: "pin: right PIN", args: signer, mode: reader.ModePIN, pin: "2468", wantStatus: "tries=3 signatures=1",
			check: func(t *testing.T, id reader.Identity) {
				if !id.PINVerified || id.Credential.SerialHex() != "10000001" {
					t.Errorf("PINVerified %v, credential %v", id.PINVerified, id.Credential)
				}
			}},
		{name: "pin: wrong PIN, tries decrease", args: signer, mode: reader.ModePIN, pin: "1111", wantErr: reader.ErrPINWrong, wantStatus: "tries=2 signatures=0",
			check: func(t *testing.T, id reader.Identity) {
				if id.TriesLeft != 2 {
					t.Errorf("TriesLeft = %d, want 2", id.TriesLeft)
				}
			}},
		{name: "pin: one try left is refused, counter unchanged", args: append(signer, "--tries", "1"), mode: reader.ModePIN, pin: "2468",
			wantErr: reader.ErrPINNearlyBlocked, wantStatus: "tries=1 signatures=0"},
		{name: "pin: one try left, door allows the last try", args: append(signer, "--tries", "1"), mode: reader.ModePIN, allowLast: true, pin: "2468",
			wantStatus: "tries=3 signatures=1"},
		{name: "pin: blocked card", args: append(signer, "--tries", "0"), mode: reader.ModePIN, pin: "2468", wantErr: reader.ErrPINBlocked, wantStatus: "tries=0 signatures=0"},
		{name: "pin: card without the key cannot sign", args: []string{"--cert", file("card-1.der"), "--pin", "2468"}, mode: reader.ModePIN, pin: "2468",
			wantErr: reader.ErrCardResponse, wantStatus: "tries=3 signatures=0"},
		{name: "pin: card removed during PIN entry", args: signer, mode: reader.ModePIN, pin: "2468", removeAtPIN: true, wantErr: reader.ErrCardRemoved, wantStatus: "tries=3 signatures=0"},
		{name: "pin: card removed while signing", args: append(signer, "--remove-after", fmt.Sprint(beforeSign)), mode: reader.ModePIN, pin: "2468",
			wantErr: reader.ErrCardRemoved, wantStatus: "tries=3 signatures=0"},
		{name: "serial: card removed during the certificate read", args: append(signer, "--remove-after", "5"), mode: reader.ModeSerial,
			wantErr: reader.ErrCardRemoved, wantStatus: "tries=3"},
		{name: "pin: smartphone token (certificate after the PIN)", args: append(signer, "--label", cardsim.LabelAndroid, "--cert-needs-pin"), mode: reader.ModePIN, pin: "2468",
			wantStatus: "tries=3 signatures=1",
			check: func(t *testing.T, id reader.Identity) {
				if id.Token.Type != reader.TokenAndroid || !id.PINVerified {
					t.Errorf("token %v, PINVerified %v", id.Token.Type, id.PINVerified)
				}
			}},
		{name: "serial: iPhone token reported", args: append(signer, "--label", cardsim.LabelIOS), mode: reader.ModeSerial, wantStatus: "tries=3",
			check: func(t *testing.T, id reader.Identity) {
				if id.Token.Type != reader.TokenIOS {
					t.Errorf("token %v, want iPhone", id.Token.Type)
				}
			}},
		{name: "serial: expired certificate", args: []string{"--cert", file("card-expired.der")}, mode: reader.ModeSerial, wantErr: reader.ErrExpired, wantStatus: "tries=3"},
		{name: "pin: expired certificate costs no PIN try", args: []string{"--cert", file("card-expired.der"), "--key", file("card-key.pem")}, mode: reader.ModePIN, pin: "9999",
			wantErr: reader.ErrExpired, wantStatus: "tries=3 signatures=0"},
		{name: "serial: not-yet-valid certificate", args: []string{"--cert", file("card-not-yet-valid.der")}, mode: reader.ModeSerial, wantErr: reader.ErrNotYetValid, wantStatus: "tries=3"},
		{name: "serial: unknown CA", args: []string{"--cert", file("card-untrusted.der")}, mode: reader.ModeSerial, wantErr: reader.ErrUntrustedIssuer, wantStatus: "tries=3"},
		{name: "serial: second CA generation", args: []string{"--cert", file("card-gen2.der")}, mode: reader.ModeSerial, wantStatus: "tries=3",
			check: func(t *testing.T, id reader.Identity) {
				if string(id.Credential.IssuerKeyID) != string(gen2.SubjectKeyId) {
					t.Errorf("IssuerKeyID %X, want gen2's %X", id.Credential.IssuerKeyID, gen2.SubjectKeyId)
				}
			}},
		{name: "enroll: second CA generation", args: []string{"--cert", file("card-gen2.der"), "--key", file("card-key.pem")}, mode: reader.ModeEnroll, pin: "1234",
			wantStatus: "tries=3 signatures=1",
			check: func(t *testing.T, id reader.Identity) {
				if err := reader.VerifyEnrollment(id.Enrollment, v, now); err != nil {
					t.Errorf("VerifyEnrollment() = %v", err)
				}
			}},
		{name: "freearea with its PIN", args: append(signer, "--free-area-id", "EMP-7", "--free-area-pin", "1357"), mode: reader.ModeFreeArea, pin: "1357", wantStatus: "tries=3",
			check: func(t *testing.T, id reader.Identity) {
				if id.Credential.Kind != credential.KindFreeArea || id.Credential.ID != "EMP-7" {
					t.Errorf("credential %v, want freearea:EMP-7", id.Credential)
				}
			}},
		{name: "freearea on a card without JPKI-AP", args: []string{"--label", "", "--free-area-id", "EMP-8", "--free-area-pin", "1357"}, mode: reader.ModeFreeArea, pin: "1357",
			check: func(t *testing.T, id reader.Identity) {
				if id.Credential.ID != "EMP-8" {
					t.Errorf("credential %v, want freearea:EMP-8", id.Credential)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSim(t, tt.args...)
			kp := &scriptedKeypad{pin: tt.pin}
			if tt.removeAtPIN {
				kp.hook = func() { s.must("remove") }
			}
			ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: tt.mode, Verifier: v, Keypad: kp, FreeArea: &fa, AllowLastTry: tt.allowLast})
			if err != nil {
				t.Fatal(err)
			}
			s.must("insert")
			c := nextCard(ctx, t, src)
			id, err := ident.Identify(ctx, c, now)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Identify() = %v, want %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, id)
			}
			if got := s.must("status"); !strings.Contains(got, tt.wantStatus) {
				t.Errorf("status %q, want %q", got, tt.wantStatus)
			}
			s.say("remove") // "error: ... no card inserted" when the card already left
			if err := c.Done(ctx); err != nil {
				t.Fatalf("Done() = %v", err)
			}
		})
	}
}

// TestPCSCReaderUnplugged stops pcscd, and vpcd with it (the reader
// vanishes), while tobira-cardsim holds a card, and starts it again: the
// card is inserted again and the same PCSC source identifies it in mode
// pin.
func TestPCSCReaderUnplugged(t *testing.T) {
	p, ctx := pcsctest.Open(t, slog.LevelInfo, integrationTimeout)
	src := p.Source(pcsctest.Reader)
	dir := kitDir(t)
	v := kitVerifier(t, dir)
	s := startSim(t, "--cert", filepath.Join(dir, "card-1.der"), "--key", filepath.Join(dir, "card-key.pem"), "--connect-timeout", "30s")
	ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: reader.ModePIN, Verifier: v, Keypad: &scriptedKeypad{pin: "1234"}})
	if err != nil {
		t.Fatal(err)
	}
	tap := func(wantSignatures int) {
		t.Helper()
		s.must("insert")
		c := nextCard(ctx, t, src)
		if _, err := ident.Identify(ctx, c, time.Now()); err != nil {
			t.Fatalf("Identify() = %v", err)
		}
		if got, want := s.must("status"), fmt.Sprintf("signatures=%d", wantSignatures); !strings.Contains(got, want) {
			t.Errorf("status %q, want %s", got, want)
		}
		s.say("remove")
		if err := c.Done(ctx); err != nil {
			t.Fatalf("Done() = %v", err)
		}
	}
	tap(1)
	s.must("insert")
	restart := pcsctest.StopPCSCD(t)
	if _, err := src.NextCard(ctx); err == nil {
		t.Fatal("NextCard() succeeded with pcscd and vpcd stopped")
	}
	restart()
	// The card's connection died with vpcd; remove clears the slot (and
	// reports the lost connection) so that insert can connect again.
	s.say("remove")
	tap(2)
}
