package reader_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/pcsc"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
)

// TestPCSCModes runs every identification mode through pcscd + vpcd +
// cardsim: the acceptance checks of the reader issue.
func TestPCSCModes(t *testing.T) {
	p, ctx := pcsctest.Open(t, slog.LevelDebug, integrationTimeout)
	pk := pki(t)
	src := p.Source(pcsctest.Reader)
	bridge := cardsim.NewBridge(pcsctest.VPCDAddr, cardsim.VPCD{Retry: 20 * time.Millisecond})
	t.Cleanup(func() { bridge.Close() })

	profile := func(cert []byte, edit func(*cardsim.Profile)) cardsim.Profile {
		pr := cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: cert, AuthKey: pk.key, PIN: "2468"}
		if edit != nil {
			edit(&pr)
		}
		return pr
	}
	fa := cardsim.DemoFreeAreaProfile(true)
	tests := []struct {
		name      string
		mode      reader.Mode
		profile   cardsim.Profile
		pin       string
		removeAt  bool // the card leaves while the PIN is typed
		wantErr   error
		wantTries int
		check     func(t *testing.T, id reader.Identity)
	}{
		{name: "pin: right PIN", mode: reader.ModePIN, profile: profile(pk.good, nil), pin: "2468", wantTries: 3,
			check: func(t *testing.T, id reader.Identity) {
				if !id.PINVerified || id.Credential.Kind != credential.KindCertSerial {
					t.Errorf("Identity = %+v", id)
				}
			}},
		{name: "pin: wrong PIN", mode: reader.ModePIN, profile: profile(pk.good, nil), pin: "1111", wantErr: reader.ErrPINWrong, wantTries: 2},
		{name: "pin: one try left", mode: reader.ModePIN, profile: profile(pk.good, func(c *cardsim.Profile) { c.Tries = 1 }), pin: "2468", wantErr: reader.ErrPINNearlyBlocked, wantTries: 1},
		{name: "pin: blocked card", mode: reader.ModePIN, profile: profile(pk.good, func(c *cardsim.Profile) { c.Tries = -1 }), pin: "2468", wantErr: reader.ErrPINBlocked, wantTries: 0},
		{name: "pin: card removed during PIN entry", mode: reader.ModePIN, profile: profile(pk.good, nil), pin: "2468", removeAt: true, wantErr: reader.ErrCardRemoved, wantTries: 3},
		{name: "pin: smartphone token", mode: reader.ModePIN, profile: profile(pk.good, func(c *cardsim.Profile) { c.TokenLabel, c.CertNeedsPIN = cardsim.LabelAndroid, true }), pin: "2468", wantTries: 3,
			check: func(t *testing.T, id reader.Identity) {
				if id.Token.Type != reader.TokenAndroid || !id.PINVerified {
					t.Errorf("Identity token %v, PINVerified %v", id.Token.Type, id.PINVerified)
				}
			}},
		{name: "enroll", mode: reader.ModeEnroll, profile: profile(pk.gen2Cert, nil), pin: "2468", wantTries: 3,
			check: func(t *testing.T, id reader.Identity) {
				if err := reader.VerifyEnrollment(id.Enrollment, pk.verifier, fixtureNow); err != nil {
					t.Errorf("VerifyEnrollment() = %v", err)
				}
			}},
		{name: "serial: expired", mode: reader.ModeSerial, profile: profile(pk.expired, nil), wantErr: reader.ErrExpired, wantTries: 3},
		{name: "serial: not yet valid", mode: reader.ModeSerial, profile: profile(pk.notYet, nil), wantErr: reader.ErrNotYetValid, wantTries: 3},
		{name: "serial: unknown CA", mode: reader.ModeSerial, profile: profile(pk.untrusted, nil), wantErr: reader.ErrUntrustedIssuer, wantTries: 3},
		{name: "serial: second CA generation", mode: reader.ModeSerial, profile: profile(pk.gen2Cert, nil), wantTries: 3,
			check: func(t *testing.T, id reader.Identity) {
				if !bytes.Equal(id.Credential.IssuerKeyID, pk.gen2.Cert.SubjectKeyId) {
					t.Errorf("IssuerKeyID = %X, want gen2's", id.Credential.IssuerKeyID)
				}
			}},
		{name: "serial: iPhone token reported", mode: reader.ModeSerial, profile: profile(pk.good, func(c *cardsim.Profile) { c.TokenLabel = cardsim.LabelIOS }), wantTries: 3,
			check: func(t *testing.T, id reader.Identity) {
				if id.Token.Type != reader.TokenIOS {
					t.Errorf("Token = %v", id.Token)
				}
			}},
		{name: "freearea with PIN", mode: reader.ModeFreeArea, profile: profile(pk.good, func(c *cardsim.Profile) { c.FreeArea = cardsim.DemoFreeArea("EMP-42", "1357") }), pin: "1357", wantTries: 3,
			check: func(t *testing.T, id reader.Identity) {
				if id.Credential.String() != "freearea:EMP-42" {
					t.Errorf("Credential = %v", id.Credential)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			card := cardsim.New(tt.profile)
			kp := &fakeKeypad{pin: tt.pin}
			if tt.removeAt {
				kp.hook = func() {
					if err := bridge.Remove(); err != nil {
						t.Errorf("Remove() = %v", err)
					}
				}
			}
			ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: tt.mode, Verifier: pk.verifier, Keypad: kp, FreeArea: &fa})
			if err != nil {
				t.Fatal(err)
			}
			if err := bridge.Insert(ctx, card); err != nil {
				t.Fatal(err)
			}
			c, err := src.NextCard(ctx)
			if err != nil {
				t.Fatalf("NextCard() = %v", err)
			}
			id, err := ident.Identify(ctx, c, fixtureNow)
			if got := matchedSentinels(err); tt.wantErr != nil && (len(got) != 1 || got[0] != tt.wantErr) || tt.wantErr == nil && err != nil {
				t.Fatalf("Identify() = %v, matches %v, want %v", err, got, tt.wantErr)
			}
			if card.Tries() != tt.wantTries {
				t.Errorf("card tries = %d, want %d", card.Tries(), tt.wantTries)
			}
			if tt.check != nil && err == nil {
				tt.check(t, id)
			}
			if id.CardIO <= 0 || id.CardIO > id.Elapsed {
				t.Errorf("CardIO %v, Elapsed %v: the split is wrong", id.CardIO, id.Elapsed)
			}
			if !tt.removeAt {
				if err := bridge.Remove(); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Done(ctx); err != nil {
				t.Fatalf("Done() = %v", err)
			}
		})
	}
}

func TestPCSCInspect(t *testing.T) {
	p, ctx := pcsctest.Open(t, slog.LevelDebug, integrationTimeout)
	pk := pki(t)
	card := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: pk.untrusted, Tries: 2})
	pcsctest.Insert(t, card)
	c, err := p.Source(pcsctest.Reader).NextCard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := reader.Inspect(ctx, c, pk.verifier, fixtureNow)
	if err != nil {
		t.Fatalf("Inspect() = %v", err)
	}
	var out strings.Builder
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`token:\s+My Number Card`, `serial:\s+20000005`, `issuer:.*JPKI for user authentication`,
		`chain:\s+FAILED: certificate issuer not trusted`, `PIN tries left:\s+2\n`, `valid:\s+2024-06-01 to 2029-05-31`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("report does not match %s:\n%s", want, out.String())
		}
	}
	if card.Tries() != 2 {
		t.Errorf("Inspect spent a PIN try: %d left", card.Tries())
	}
}

// TestPCSCRecovery stops pcscd (the vpcd reader and the PC/SC service
// vanish, as on unplug and pcscd restart) and starts it again: the same
// PCSC and sources serve cards again, with several sources in use at once.
func TestPCSCRecovery(t *testing.T) {
	p, ctx := pcsctest.Open(t, slog.LevelDebug, integrationTimeout)
	pk := pki(t)
	src := p.Source(pcsctest.Reader)
	other := p.Source("Virtual PCD 00 01")
	bridge := cardsim.NewBridge(pcsctest.VPCDAddr, cardsim.VPCD{Retry: 20 * time.Millisecond})
	t.Cleanup(func() { bridge.Close() })

	// A second source waits for a card on the other slot all along.
	otherCtx, cancelOther := context.WithCancel(ctx)
	otherDone := make(chan error, 1)
	go func() {
		for {
			_, err := other.NextCard(otherCtx)
			if otherCtx.Err() != nil {
				otherDone <- nil
				return
			}
			if err == nil {
				otherDone <- errors.New("a card appeared on slot 1")
				return
			}
			waitCtx, cancel := context.WithTimeout(otherCtx, 100*time.Millisecond) // the controller's retry delay
			<-waitCtx.Done()
			cancel()
		}
	}()

	tap := func() {
		t.Helper()
		card := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: pk.good})
		if err := bridge.Insert(ctx, card); err != nil {
			t.Fatal(err)
		}
		var c reader.Card
		var err error
		for range 100 { // as the controller does: retry while the reader is unavailable
			if c, err = src.NextCard(ctx); err == nil {
				break
			}
			t.Logf("NextCard() = %v; retrying", err)
			waitCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			<-waitCtx.Done()
			cancel()
		}
		if err != nil {
			t.Fatalf("NextCard() never recovered: %v", err)
		}
		if _, err := reader.Identify(ctx, c, pk.verifier, fixtureNow); err != nil {
			t.Fatalf("Identify() = %v", err)
		}
		if err := bridge.Remove(); err != nil {
			t.Fatal(err)
		}
		if err := c.Done(ctx); err != nil {
			t.Fatalf("Done() = %v", err)
		}
	}
	tap()
	restart := pcsctest.StopPCSCD(t)
	if _, err := src.NextCard(ctx); err == nil {
		t.Fatal("NextCard() succeeded with pcscd stopped")
	}
	if names, err := p.Readers(); err == nil && len(names) > 0 {
		t.Errorf("Readers() = %q with pcscd stopped", names)
	}
	restart()
	tap()
	cancelOther()
	if err := <-otherDone; err != nil {
		t.Error(err)
	}
}

// BenchmarkPCSCIdentifyPIN measures one mode-pin identification through
// pcscd and vpcd with a keypad that types at once: tries query, VERIFY and
// the on-card signature included, certificate from the cache. The split:
// card I/O (all APDUs, signature included), own work (parse, cache,
// challenge, signature check) and PIN entry (the scripted keypad: ~0).
// Each iteration verifies the right PIN, so the card's counter stays full.
func BenchmarkPCSCIdentifyPIN(b *testing.B) {
	pcsctest.Start(b)
	p, err := pcsc.Open(slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	pk := pki(b)
	card := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: pk.good, AuthKey: pk.key, PIN: "2468"})
	pcsctest.Insert(b, card)
	ctx, cancel := context.WithTimeout(b.Context(), integrationTimeout)
	defer cancel()
	c, err := p.Source(pcsctest.Reader).NextCard(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: reader.ModePIN, Verifier: pk.verifier,
		Keypad: &fakeKeypad{pin: "2468"}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	var apdus int
	var io, own, entry time.Duration
	for b.Loop() {
		id, err := ident.Identify(ctx, c, fixtureNow)
		if err != nil {
			b.Fatal(err)
		}
		apdus = id.APDUs
		io += id.CardIO
		own += id.OwnWork()
		entry += id.PINEntry
	}
	if card.Signatures() < b.N || card.Tries() != cardsim.MaxTries {
		b.Fatalf("card made %d signatures for %d identifications, %d tries left", card.Signatures(), b.N, card.Tries())
	}
	b.ReportMetric(float64(apdus), "APDUs/op")
	b.ReportMetric(float64(io.Microseconds())/float64(b.N), "card-io-µs/op")
	b.ReportMetric(float64(own.Microseconds())/float64(b.N), "own-µs/op")
	b.ReportMetric(float64(entry.Microseconds())/float64(b.N), "pin-entry-µs/op")
}
