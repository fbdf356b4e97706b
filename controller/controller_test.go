package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
	tsync "github.com/tobira-ac/tobira/sync"
)

// testPKI is one CA and a shared leaf key, made once per test binary (RSA
// key generation is slow).
var testPKI = gosync.OnceValues(func() (*jpkitest.CA, *rsa.PrivateKey) {
	now := time.Now()
	ca, err := jpkitest.NewCA("controller-test", now.AddDate(-1, 0, 0), now.AddDate(5, 0, 0))
	if err != nil {
		panic(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return ca, key
})

func testCard(t testing.TB, serial uint32, notAfter time.Time) *cardsim.Card {
	t.Helper()
	ca, key := testPKI()
	der, err := ca.IssueAuthCert(serial, time.Now().AddDate(-1, 0, 0), notAfter, key)
	if err != nil {
		t.Fatal(err)
	}
	return cardsim.New(cardsim.Profile{TokenLabel: "JPKIAPICCTOKEN2", AuthCert: der, CACert: ca.DER, PIN: "1234", Tries: 3})
}

func testIdentifier(t testing.TB) *reader.Identifier {
	t.Helper()
	ca, _ := testPKI()
	v, err := reader.NewVerifier([]*x509.Certificate{ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	id, err := reader.NewIdentifier(reader.IdentifierConfig{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// journal records the order in which the fakes were used.
type journal struct {
	mu    gosync.Mutex
	steps []string
}

func (j *journal) add(s string) { j.mu.Lock(); j.steps = append(j.steps, s); j.mu.Unlock() }
func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.steps, ",")
}

type fakeDecider struct {
	allow map[string]bool
	j     *journal
}

func (f *fakeDecider) Decide(c credential.Credential) policy.Decision {
	f.j.add("decide")
	if f.allow[c.SerialHex()] {
		return policy.Decision{Granted: true, Reason: policy.ReasonEnrolled}
	}
	return policy.Decision{Reason: policy.ReasonNotEnrolled}
}

type fakeLock struct {
	j   *journal
	err error
}

func (f *fakeLock) Grant(context.Context) error { f.j.add("grant"); return f.err }

type fakeLog struct {
	j      *journal
	err    error
	events []tsync.Event
}

func (f *fakeLog) Append(ev tsync.Event) (tsync.Event, error) {
	f.j.add("append:" + ev.Type)
	if f.err != nil {
		return tsync.Event{}, f.err
	}
	ev.Seq = uint64(len(f.events) + 1)
	f.events = append(f.events, ev)
	return ev, nil
}

func TestHandle(t *testing.T) {
	good := testCard(t, 0x1001, time.Now().AddDate(1, 0, 0))
	unknown := testCard(t, 0x1002, time.Now().AddDate(1, 0, 0))
	expired := testCard(t, 0x1003, time.Now().Add(-time.Hour))
	noJPKI := cardsim.New(cardsim.Profile{})
	diskFull := errors.New("disk full")
	relayBroken := errors.New("gpio write failed")

	tests := []struct {
		name      string
		card      *cardsim.Card
		logErr    error
		lockErr   error
		granted   bool
		reason    policy.Reason
		steps     string
		wantEvent bool
	}{
		{"enrolled: event stored before the lock moves", good, nil, nil, true, policy.ReasonEnrolled,
			"decide,append:decision,grant", true},
		{"not enrolled: no grant", unknown, nil, nil, false, policy.ReasonNotEnrolled, "decide,append:decision", true},
		{"expired certificate: policy not asked", expired, nil, nil, false, policy.ReasonExpired, "append:decision", true},
		{"no JPKI-AP", noJPKI, nil, nil, false, policy.ReasonNotMyNumberCard, "append:decision", true},
		{"outbox failure still decides", good, diskFull, nil, true, policy.ReasonEnrolled,
			"decide,append:decision,grant", false},
		{"relay failure is recorded", good, nil, relayBroken, true, policy.ReasonEnrolled,
			"decide,append:decision,grant,append:door", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &journal{}
			log := &fakeLog{j: j, err: tt.logErr}
			notified := 0
			d := &ReaderLoop{Door: "front", Identifier: testIdentifier(t), Decider: &fakeDecider{allow: map[string]bool{"1001": true}, j: j},
				Lock: &fakeLock{j: j, err: tt.lockErr}, Events: log, Notify: func() { notified++ }, Log: slog.New(slog.DiscardHandler)}
			tap := d.Handle(context.Background(), tt.card)
			if tap.Decision.Granted != tt.granted || tap.Decision.Reason != tt.reason {
				t.Errorf("decision = %+v, want granted=%t reason=%s (read err %v)", tap.Decision, tt.granted, tt.reason, tap.ReadErr)
			}
			if got := j.String(); got != tt.steps {
				t.Errorf("steps = %s, want %s", got, tt.steps)
			}
			if notified != 1 {
				t.Errorf("Notify called %d times, want 1", notified)
			}
			if (tap.Event.Seq != 0) != tt.wantEvent {
				t.Errorf("tap event seq = %d, want stored=%t", tap.Event.Seq, tt.wantEvent)
			}
			if tt.lockErr != nil && !errors.Is(tap.LockErr, tt.lockErr) {
				t.Errorf("LockErr = %v, want %v", tap.LockErr, tt.lockErr)
			}
			if tt.wantEvent {
				ev := log.events[0]
				if ev.Door != "front" || ev.Reason != string(tt.reason) || ev.Granted != tt.granted || ev.Type != "decision" {
					t.Errorf("event = %+v", ev)
				}
				if tap.ReadErr == nil || tt.reason == policy.ReasonExpired {
					key, _ := tap.Identity.Credential.Key()
					if ev.Credential != hex.EncodeToString(key) || ev.Token != "mynumber" {
						t.Errorf("event credential/token = %q/%q, want %x/mynumber", ev.Credential, ev.Token, key)
					}
				} else if ev.Credential != "" {
					t.Errorf("event of a failed read carries credential %q", ev.Credential)
				}
			}
		})
	}
}

func TestReasonForReadError(t *testing.T) {
	tests := []struct {
		err  error
		want policy.Reason
	}{
		{fmt.Errorf("read EF 000A: %w", reader.ErrCardRemoved), policy.ReasonCardRemoved},
		{fmt.Errorf("x: %w", reader.ErrNotMyNumberCard), policy.ReasonNotMyNumberCard},
		{fmt.Errorf("x: %w", reader.ErrExpired), policy.ReasonExpired},
		{fmt.Errorf("x: %w", reader.ErrNotYetValid), policy.ReasonNotYetValid},
		{fmt.Errorf("x: %w", reader.ErrUntrustedIssuer), policy.ReasonUntrustedIssuer},
		{fmt.Errorf("x: %w", reader.ErrBadCertificate), policy.ReasonBadCertificate},
		{&reader.StatusError{Command: "READ BINARY", SW: 0x6700}, policy.ReasonCardError},
		{errors.New("transport exploded"), policy.ReasonCardError},
	}
	for _, tt := range tests {
		if got := ReasonForReadError(tt.err); got != tt.want {
			t.Errorf("ReasonForReadError(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// recorder passes APDUs to a card and keeps every command.
type recorder struct {
	t    reader.Transmitter
	cmds [][]byte
}

func (r *recorder) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	r.cmds = append(r.cmds, append([]byte(nil), cmd...))
	return r.t.Transmit(ctx, cmd)
}

// TestTapSelectsOnlyJPKIAuthFiles enforces the legal rule: a tap selects the
// JPKI-AP only, and within it only the token, auth certificate and CA files;
// never the signing certificate (EF 0001) or another application.
func TestTapSelectsOnlyJPKIAuthFiles(t *testing.T) {
	jpkiAID, _ := hex.DecodeString("D392F000260100000001")
	allowedEF := map[string]bool{"0006": true, "000a": true, "000b": true}
	for _, card := range []*cardsim.Card{testCard(t, 0x2001, time.Now().AddDate(1, 0, 0)), cardsim.New(cardsim.Profile{})} {
		rec := &recorder{t: card}
		d := &ReaderLoop{Door: "front", Identifier: testIdentifier(t), Decider: &fakeDecider{j: &journal{}}, Lock: &fakeLock{j: &journal{}},
			Events: &fakeLog{j: &journal{}}, Log: slog.New(slog.DiscardHandler)}
		d.Handle(context.Background(), rec)
		if len(rec.cmds) == 0 {
			t.Fatal("no command reached the card")
		}
		for _, c := range rec.cmds {
			if len(c) < 4 || c[1] != 0xA4 {
				continue
			}
			switch c[2] {
			case 0x04:
				if len(c) < 5 || !bytes.Equal(c[5:5+int(c[4])], jpkiAID) {
					t.Errorf("selected an application other than JPKI-AP: % X", c)
				}
			case 0x02:
				if len(c) < 7 || !allowedEF[hex.EncodeToString(c[5:7])] {
					t.Errorf("selected a file other than EF 0006/000A/000B: % X", c)
				}
			default:
				t.Errorf("unexpected SELECT form: % X", c)
			}
		}
	}
}
