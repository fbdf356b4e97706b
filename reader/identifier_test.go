package reader_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
)

// testPKI is PKI with the card key kept, for the modes that make the card
// sign. It is made once per test binary (RSA key generation is slow).
type testPKI struct {
	gen1, gen2, other *jpkitest.CA
	key, otherKey     *rsa.PrivateKey
	// Certificates issued for key.
	good, gen2Cert, expired, notYet, untrusted []byte
	verifier                                   *reader.Verifier
}

var pkiOnce = sync.OnceValues(func() (*testPKI, error) {
	year := 365 * 24 * time.Hour
	now := fixtureNow
	p := &testPKI{}
	var err error
	if p.gen1, err = jpkitest.NewCA("", now.Add(-10*year), now.Add(20*year)); err != nil {
		return nil, err
	}
	if p.gen2, err = jpkitest.NewCA("", now.Add(-2*year), now.Add(20*year)); err != nil {
		return nil, err
	}
	if p.other, err = jpkitest.NewCA("", now.Add(-10*year), now.Add(20*year)); err != nil {
		return nil, err
	}
	if p.key, err = jpkitest.NewKey(); err != nil {
		return nil, err
	}
	if p.otherKey, err = jpkitest.NewKey(); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		out      *[]byte
		ca       *jpkitest.CA
		serial   uint32
		from, to time.Time
	}{
		{&p.good, p.gen1, 0x20000001, now.Add(-year), now.Add(4 * year)},
		{&p.gen2Cert, p.gen2, 0x20000002, now.Add(-year), now.Add(4 * year)},
		{&p.expired, p.gen1, 0x20000003, now.Add(-6 * year), now.Add(-year)},
		{&p.notYet, p.gen1, 0x20000004, now.Add(year), now.Add(6 * year)},
		{&p.untrusted, p.other, 0x20000005, now.Add(-year), now.Add(4 * year)},
	} {
		if *c.out, err = c.ca.IssueAuthCert(c.serial, c.from, c.to, p.key); err != nil {
			return nil, err
		}
	}
	p.verifier, err = reader.NewVerifier([]*x509.Certificate{p.gen1.Cert, p.gen2.Cert})
	return p, err
})

func pki(t testing.TB) *testPKI {
	t.Helper()
	p, err := pkiOnce()
	if err != nil {
		t.Fatalf("make test PKI: %v", err)
	}
	return p
}

// fakeKeypad types a fixed PIN, or fails.
type fakeKeypad struct {
	pin   string
	err   error
	calls int
	last  *reader.PIN
	hook  func() // called while the holder "types"
}

func (k *fakeKeypad) ReadPIN(ctx context.Context, maxLen int) (*reader.PIN, error) {
	k.calls++
	if k.hook != nil {
		k.hook()
	}
	if k.err != nil {
		return nil, k.err
	}
	p := reader.NewPIN(maxLen)
	for _, d := range []byte(k.pin) {
		if err := p.Add(d); err != nil {
			return nil, err
		}
	}
	k.last = p
	return p, nil
}

func TestIdentifierPINModes(t *testing.T) {
	p := pki(t)
	card := func(cert []byte, edit func(*cardsim.Profile)) cardsim.Profile {
		pr := cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: cert, AuthKey: p.key, PIN: "4321"}
		if edit != nil {
			edit(&pr)
		}
		return pr
	}
	tests := []struct {
		name            string
		mode            reader.Mode
		profile         cardsim.Profile
		keypad          fakeKeypad
		allowLast       bool
		removeDuringPIN bool
		wantErr         error
		wantTries       int // card's counter afterwards
		wantIDTries     int // Identity.TriesLeft
		wantKeypad      int // keypad calls
		wantSigns       int
		wantVerified    bool
	}{
		{name: "right PIN", mode: reader.ModePIN, profile: card(p.good, nil), keypad: fakeKeypad{pin: "4321"},
			wantTries: 3, wantIDTries: 3, wantKeypad: 1, wantSigns: 1, wantVerified: true},
		{name: "right PIN, second CA generation", mode: reader.ModePIN, profile: card(p.gen2Cert, nil), keypad: fakeKeypad{pin: "4321"},
			wantTries: 3, wantIDTries: 3, wantKeypad: 1, wantSigns: 1, wantVerified: true},
		{name: "wrong PIN: tries decrease", mode: reader.ModePIN, profile: card(p.good, nil), keypad: fakeKeypad{pin: "9999"},
			wantErr: reader.ErrPINWrong, wantTries: 2, wantIDTries: 2, wantKeypad: 1},
		{name: "wrong PIN with two tries left", mode: reader.ModePIN, profile: card(p.good, func(c *cardsim.Profile) { c.Tries = 2 }), keypad: fakeKeypad{pin: "9999"},
			wantErr: reader.ErrPINWrong, wantTries: 1, wantIDTries: 1, wantKeypad: 1},
		{name: "one try left: refused, counter unchanged", mode: reader.ModePIN, profile: card(p.good, func(c *cardsim.Profile) { c.Tries = 1 }), keypad: fakeKeypad{pin: "4321"},
			wantErr: reader.ErrPINNearlyBlocked, wantTries: 1, wantIDTries: 1},
		{name: "one try left, door allows it", mode: reader.ModePIN, profile: card(p.good, func(c *cardsim.Profile) { c.Tries = 1 }), keypad: fakeKeypad{pin: "4321"}, allowLast: true,
			wantTries: 3, wantIDTries: 1, wantKeypad: 1, wantSigns: 1, wantVerified: true},
		{name: "blocked card", mode: reader.ModePIN, profile: card(p.good, func(c *cardsim.Profile) { c.Tries = -1 }), keypad: fakeKeypad{pin: "4321"},
			wantErr: reader.ErrPINBlocked, wantTries: 0, wantIDTries: 0},
		{name: "expired certificate: no PIN asked", mode: reader.ModePIN, profile: card(p.expired, nil), keypad: fakeKeypad{pin: "4321"},
			wantErr: reader.ErrExpired, wantTries: 3, wantIDTries: reader.TriesUnknown},
		{name: "not yet valid certificate", mode: reader.ModeEnroll, profile: card(p.notYet, nil), keypad: fakeKeypad{pin: "4321"},
			wantErr: reader.ErrNotYetValid, wantTries: 3, wantIDTries: reader.TriesUnknown},
		{name: "unknown CA", mode: reader.ModePIN, profile: card(p.untrusted, nil), keypad: fakeKeypad{pin: "4321"},
			wantErr: reader.ErrUntrustedIssuer, wantTries: 3, wantIDTries: reader.TriesUnknown},
		{name: "keypad timeout", mode: reader.ModePIN, profile: card(p.good, nil), keypad: fakeKeypad{err: fmt.Errorf("keypad: %w", reader.ErrPINTimeout)},
			wantErr: reader.ErrPINTimeout, wantTries: 3, wantIDTries: 3, wantKeypad: 1},
		{name: "cancel key", mode: reader.ModePIN, profile: card(p.good, nil), keypad: fakeKeypad{err: fmt.Errorf("keypad: %w", reader.ErrPINCancelled)},
			wantErr: reader.ErrPINCancelled, wantTries: 3, wantIDTries: 3, wantKeypad: 1},
		{name: "keypad gone", mode: reader.ModePIN, profile: card(p.good, nil), keypad: fakeKeypad{err: errors.New("read /dev/input/event3: no such device")},
			wantErr: reader.ErrPINCancelled, wantTries: 3, wantIDTries: 3, wantKeypad: 1},
		{name: "three digits: not sent", mode: reader.ModePIN, profile: card(p.good, nil), keypad: fakeKeypad{pin: "432"},
			wantErr: reader.ErrPINFormat, wantTries: 3, wantIDTries: 3, wantKeypad: 1},
		{name: "card key does not match the certificate", mode: reader.ModePIN, profile: card(p.good, func(c *cardsim.Profile) { c.AuthKey = p.otherKey }), keypad: fakeKeypad{pin: "4321"},
			wantErr: reader.ErrSignature, wantTries: 3, wantIDTries: 3, wantKeypad: 1, wantSigns: 1},
		{name: "card cannot sign", mode: reader.ModePIN, profile: card(p.good, func(c *cardsim.Profile) { c.AuthKey = nil }), keypad: fakeKeypad{pin: "4321"},
			wantErr: reader.ErrCardResponse, wantTries: 3, wantIDTries: 3, wantKeypad: 1},
		{name: "smartphone token: certificate after the PIN", mode: reader.ModePIN,
			profile: card(p.good, func(c *cardsim.Profile) { c.TokenLabel, c.CertNeedsPIN = cardsim.LabelAndroid, true }), keypad: fakeKeypad{pin: "4321"},
			wantTries: 3, wantIDTries: 3, wantKeypad: 1, wantSigns: 1, wantVerified: true},
		{name: "smartphone token in serial mode", mode: reader.ModeSerial,
			profile: card(p.good, func(c *cardsim.Profile) { c.TokenLabel, c.CertNeedsPIN = cardsim.LabelAndroid, true }),
			wantErr: reader.ErrCardResponse, wantTries: 3, wantIDTries: reader.TriesUnknown},
		{name: "card removed while the PIN is typed", mode: reader.ModePIN, profile: card(p.good, nil), keypad: fakeKeypad{pin: "4321"},
			removeDuringPIN: true, wantErr: reader.ErrCardRemoved, wantTries: 3, wantIDTries: 3, wantKeypad: 1},
		{name: "enroll", mode: reader.ModeEnroll, profile: card(p.good, nil), keypad: fakeKeypad{pin: "4321"},
			wantTries: 3, wantIDTries: 3, wantKeypad: 1, wantSigns: 1, wantVerified: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp := tt.keypad
			ident, err := reader.NewIdentifier(reader.IdentifierConfig{
				Mode: tt.mode, Verifier: p.verifier, Keypad: &kp, AllowLastTry: tt.allowLast,
			})
			if err != nil {
				t.Fatal(err)
			}
			c := cardsim.New(tt.profile)
			if tt.removeDuringPIN {
				kp.hook = func() { c.SetFault(cardsim.FaultRemove, 0) }
			}
			id, err := ident.Identify(t.Context(), c, fixtureNow)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Identify() error = %v", err)
			}
			if got := matchedSentinels(err); tt.wantErr != nil && (len(got) != 1 || got[0] != tt.wantErr) {
				t.Fatalf("Identify() error = %v, matches %v, want exactly %v", err, got, tt.wantErr)
			}
			var wrong *reader.PINWrongError
			if errors.As(err, &wrong) && wrong.TriesLeft != tt.wantTries {
				t.Errorf("PINWrongError.TriesLeft = %d, want %d", wrong.TriesLeft, tt.wantTries)
			}
			if c.Tries() != tt.wantTries {
				t.Errorf("card tries = %d, want %d", c.Tries(), tt.wantTries)
			}
			if id.TriesLeft != tt.wantIDTries {
				t.Errorf("Identity.TriesLeft = %d, want %d", id.TriesLeft, tt.wantIDTries)
			}
			if kp.calls != tt.wantKeypad {
				t.Errorf("keypad asked %d times, want %d", kp.calls, tt.wantKeypad)
			}
			if kp.last != nil && kp.last.Len() != 0 {
				t.Errorf("PIN buffer not zeroed: %v", kp.last)
			}
			if c.Signatures() != tt.wantSigns {
				t.Errorf("card signed %d times, want %d", c.Signatures(), tt.wantSigns)
			}
			if id.PINVerified != tt.wantVerified || id.Mode != tt.mode {
				t.Errorf("PINVerified, Mode = %v, %v; want %v, %v", id.PINVerified, id.Mode, tt.wantVerified, tt.mode)
			}
			if id.APDUs != c.Commands() {
				t.Errorf("APDUs = %d, card processed %d", id.APDUs, c.Commands())
			}
			if err != nil && (strings.Contains(err.Error(), "4321") || strings.Contains(err.Error(), "9999")) {
				t.Errorf("error %q carries the PIN", err)
			}
			if tt.mode == reader.ModeEnroll && err == nil {
				rec := id.Enrollment
				if rec == nil || !rec.PINVerified || !bytes.Equal(rec.Certificate, tt.profile.AuthCert) || len(rec.Challenge) != reader.ChallengeLen {
					t.Fatalf("Enrollment = %+v", rec)
				}
				if err := reader.VerifyEnrollment(rec, p.verifier, fixtureNow); err != nil {
					t.Errorf("VerifyEnrollment() = %v", err)
				}
				forged := *rec
				forged.Challenge = bytes.Clone(rec.Challenge)
				forged.Challenge[0] ^= 1
				if err := reader.VerifyEnrollment(&forged, p.verifier, fixtureNow); !errors.Is(err, reader.ErrSignature) {
					t.Errorf("VerifyEnrollment(other challenge) = %v, want ErrSignature", err)
				}
			} else if id.Enrollment != nil {
				t.Errorf("Enrollment = %+v in mode %s / error %v", id.Enrollment, tt.mode, err)
			}
		})
	}
}

func TestIdentifierChallengesAreFresh(t *testing.T) {
	p := pki(t)
	ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: reader.ModeEnroll, Verifier: p.verifier, Keypad: &fakeKeypad{pin: "1234"}})
	if err != nil {
		t.Fatal(err)
	}
	c := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: p.good, AuthKey: p.key})
	a, err := ident.Identify(t.Context(), c, fixtureNow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ident.Identify(t.Context(), c, fixtureNow)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Enrollment.Challenge, b.Enrollment.Challenge) {
		t.Error("two enrollments signed the same challenge")
	}
}

func TestIdentifierCardTimeout(t *testing.T) {
	p := pki(t)
	ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: reader.ModeSerial, Verifier: p.verifier, CommandTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: p.good})
	c.SetFault(cardsim.FaultMute, 3)
	id, err := ident.Identify(t.Context(), c, fixtureNow)
	if got := matchedSentinels(err); len(got) != 1 || got[0] != reader.ErrCardTimeout {
		t.Fatalf("Identify(mute card) = %v, want ErrCardTimeout", err)
	}
	if id.APDUs != 4 {
		t.Errorf("APDUs = %d, want 4 (the 4th got no answer)", id.APDUs)
	}
	// The caller's own cancellation is not a card timeout.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ident.Identify(ctx, c, fixtureNow); !errors.Is(err, context.Canceled) || errors.Is(err, reader.ErrCardTimeout) {
		t.Errorf("Identify(cancelled) = %v, want context.Canceled only", err)
	}
}

func TestIdentifierFreeArea(t *testing.T) {
	profile := func(withPIN bool, edit func(*reader.FreeAreaProfile)) *reader.FreeAreaProfile {
		pr := cardsim.DemoFreeAreaProfile(withPIN)
		if edit != nil {
			edit(&pr)
		}
		return &pr
	}
	withFA := func(fa *cardsim.FreeArea) cardsim.Profile {
		return cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, FreeArea: fa}
	}
	tests := []struct {
		name      string
		profile   *reader.FreeAreaProfile
		card      cardsim.Profile
		keypad    fakeKeypad
		wantErr   error
		wantID    string
		wantTries int
	}{
		{"no PIN", profile(false, nil), withFA(cardsim.DemoFreeArea("EMP-000123", "")), fakeKeypad{}, nil, "EMP-000123", reader.TriesUnknown},
		{"with PIN", profile(true, nil), withFA(cardsim.DemoFreeArea("EMP-000124", "5678")), fakeKeypad{pin: "5678"}, nil, "EMP-000124", 3},
		{"wrong PIN", profile(true, nil), withFA(cardsim.DemoFreeArea("EMP-000124", "5678")), fakeKeypad{pin: "1111"}, reader.ErrPINWrong, "", 2},
		{"PIN needed but profile skips it", profile(false, nil), withFA(cardsim.DemoFreeArea("EMP-000124", "5678")), fakeKeypad{}, reader.ErrCardResponse, "", reader.TriesUnknown},
		{"hex encoding of the whole template", profile(false, func(p *reader.FreeAreaProfile) { p.TLVPath, p.Encoding, p.Length = nil, "hex", 5 }),
			withFA(cardsim.DemoFreeArea("X", "")), fakeKeypad{}, nil, "7006c00101", reader.TriesUnknown},
		{"no free-area application", profile(false, nil), cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard}, fakeKeypad{}, reader.ErrFreeAreaNotFound, "", reader.TriesUnknown},
		{"no such file", profile(false, func(p *reader.FreeAreaProfile) { p.File = "0109" }), withFA(cardsim.DemoFreeArea("A", "")), fakeKeypad{}, reader.ErrFreeAreaNotFound, "", reader.TriesUnknown},
		{"tag missing", profile(false, func(p *reader.FreeAreaProfile) { p.TLVPath = []string{"70", "C2"} }), withFA(cardsim.DemoFreeArea("A", "")), fakeKeypad{}, reader.ErrFreeAreaData, "", reader.TriesUnknown},
		{"file shorter than the profile", profile(false, func(p *reader.FreeAreaProfile) { p.Length = 300 }), withFA(cardsim.DemoFreeArea("A", "")), fakeKeypad{}, reader.ErrFreeAreaData, "", reader.TriesUnknown},
		{"not printable", profile(false, nil), withFA(cardsim.DemoFreeArea("A\x01", "")), fakeKeypad{}, reader.ErrFreeAreaData, "", reader.TriesUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp := tt.keypad
			ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: tt.profile, Keypad: &kp})
			if err != nil {
				t.Fatal(err)
			}
			c := cardsim.New(tt.card)
			id, err := ident.Identify(t.Context(), c, fixtureNow)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Identify() error = %v", err)
			}
			if got := matchedSentinels(err); tt.wantErr != nil && (len(got) != 1 || got[0] != tt.wantErr) {
				t.Fatalf("Identify() error = %v, matches %v, want exactly %v", err, got, tt.wantErr)
			}
			if tt.wantID != "" && (id.Credential.Kind != credential.KindFreeArea || id.Credential.ID != tt.wantID) {
				t.Errorf("Credential = %v, want freearea:%s", id.Credential, tt.wantID)
			}
			if tt.wantID == "" && id.Credential.Kind != 0 {
				t.Errorf("Credential = %v with error %v", id.Credential, err)
			}
			if id.TriesLeft != tt.wantTries {
				t.Errorf("TriesLeft = %d, want %d", id.TriesLeft, tt.wantTries)
			}
		})
	}
}

func TestNewIdentifierChecksConfig(t *testing.T) {
	p := pki(t)
	good := cardsim.DemoFreeAreaProfile(true)
	bad := func(edit func(*reader.FreeAreaProfile)) *reader.FreeAreaProfile {
		pr := cardsim.DemoFreeAreaProfile(false)
		edit(&pr)
		return &pr
	}
	tests := []struct {
		name string
		cfg  reader.IdentifierConfig
		ok   bool
	}{
		{"serial", reader.IdentifierConfig{Verifier: p.verifier}, true},
		{"serial without verifier", reader.IdentifierConfig{}, false},
		{"unknown mode", reader.IdentifierConfig{Mode: "face", Verifier: p.verifier}, false},
		{"pin without keypad", reader.IdentifierConfig{Mode: reader.ModePIN, Verifier: p.verifier}, false},
		{"enroll", reader.IdentifierConfig{Mode: reader.ModeEnroll, Verifier: p.verifier, Keypad: &fakeKeypad{}}, true},
		{"freearea without profile", reader.IdentifierConfig{Mode: reader.ModeFreeArea}, false},
		{"freearea with PIN without keypad", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: &good}, false},
		{"freearea with PIN", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: &good, Keypad: &fakeKeypad{}}, true},
		{"bad AID", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: bad(func(p *reader.FreeAreaProfile) { p.AID = "F0" })}, false},
		{"bad file", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: bad(func(p *reader.FreeAreaProfile) { p.File = "3F00" })}, false},
		{"zero length", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: bad(func(p *reader.FreeAreaProfile) { p.Length = 0 })}, false},
		{"bad tag", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: bad(func(p *reader.FreeAreaProfile) { p.TLVPath = []string{"5F2001"} })}, false},
		{"bad auth", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: bad(func(p *reader.FreeAreaProfile) { p.Auth = "external_auth" })}, false},
		{"pin file without auth", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: bad(func(p *reader.FreeAreaProfile) { p.PINFile = "0102" })}, false},
		{"bad encoding", reader.IdentifierConfig{Mode: reader.ModeFreeArea, FreeArea: bad(func(p *reader.FreeAreaProfile) { p.Encoding = "utf16" })}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reader.NewIdentifier(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("NewIdentifier() error = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]reader.Mode{"": reader.ModeSerial, "serial": reader.ModeSerial, "pin": reader.ModePIN, "freearea": reader.ModeFreeArea, "enroll": reader.ModeEnroll} {
		if got, err := reader.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := reader.ParseMode("PIN"); err == nil {
		t.Error(`ParseMode("PIN") succeeded`)
	}
}

func TestPINNeverPrinted(t *testing.T) {
	p := reader.NewPIN(4)
	for _, d := range "9876" {
		if err := p.Add(byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Add('1'); !errors.Is(err, reader.ErrPINFull) {
		t.Errorf("Add() to a full PIN = %v, want ErrPINFull", err)
	}
	if err := p.Add('x'); err == nil {
		t.Error("Add('x') succeeded")
	}
	var logged bytes.Buffer
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s", p, p, p, p), logLine(&logged, p)} {
		if strings.Contains(s, "9876") || strings.Contains(s, "57 56") {
			t.Errorf("PIN printed as %q", s)
		}
	}
	if p.Len() != 4 {
		t.Errorf("Len() = %d", p.Len())
	}
	p.Backspace()
	if p.Len() != 3 {
		t.Errorf("Len() after Backspace = %d", p.Len())
	}
	p.Zero()
	if p.Len() != 0 || p.String() != "PIN(0 digits)" {
		t.Errorf("after Zero: %v", p)
	}
}

func TestVerifierCache(t *testing.T) {
	p := pki(t)
	v, err := reader.NewVerifier([]*x509.Certificate{p.gen1.Cert}, reader.WithCacheSize(1))
	if err != nil {
		t.Fatal(err)
	}
	year := 365 * 24 * time.Hour
	steps := []struct {
		der     []byte
		now     time.Time
		wantErr error
		hits    uint64
	}{
		{p.good, fixtureNow, nil, 0},
		{p.good, fixtureNow, nil, 1},
		{p.good, fixtureNow.Add(5 * year), reader.ErrExpired, 2},      // a hit still checks the time
		{p.good, fixtureNow.Add(-2 * year), reader.ErrNotYetValid, 3}, // both ways
		{p.expired, fixtureNow, reader.ErrExpired, 3},                 // evicts good (size 1)
		{p.good, fixtureNow, nil, 3},
		{p.untrusted, fixtureNow, reader.ErrUntrustedIssuer, 3}, // not cached
		{p.untrusted, fixtureNow, reader.ErrUntrustedIssuer, 3},
	}
	for i, s := range steps {
		_, err := v.Verify(s.der, s.now)
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil) != (err == nil) {
			t.Fatalf("step %d: Verify() = %v, want %v", i+1, err, s.wantErr)
		}
		if st := v.CacheStats(); st.Hits != s.hits || st.Entries > 1 {
			t.Fatalf("step %d: stats %+v, want %d hits and at most 1 entry", i+1, st, s.hits)
		}
	}
	off, err := reader.NewVerifier([]*x509.Certificate{p.gen1.Cert}, reader.WithCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := off.Verify(p.good, fixtureNow); err != nil {
			t.Fatal(err)
		}
	}
	if st := off.CacheStats(); st != (reader.CacheStats{}) {
		t.Errorf("disabled cache stats = %+v", st)
	}
}

// logLine logs p through slog's text handler into buf and returns the line.
func logLine(buf *bytes.Buffer, p *reader.PIN) string {
	slog.New(slog.NewTextHandler(buf, nil)).Info("typed", "pin", p)
	return buf.String()
}
