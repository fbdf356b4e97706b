package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// testPKI is one CA and a shared leaf key, made once per test binary (RSA
// key generation is slow).
var testPKI = sync.OnceValues(func() (*jpkitest.CA, *rsa.PrivateKey) {
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
	return cardsim.New(cardsim.Profile{TokenLabel: "JPKIAPICCTOKEN2", AuthCert: der, CACert: ca.DER, AuthKey: key, PIN: "1234", Tries: 3})
}

// typedPIN is a keypad on which the holder types pin.
type typedPIN string

func (p typedPIN) ReadPIN(_ context.Context, maxLen int) (*reader.PIN, error) {
	pin := reader.NewPIN(maxLen)
	for _, c := range []byte(p) {
		if err := pin.Add(c - '0'); err != nil {
			return nil, err
		}
	}
	return pin, nil
}

func pinIdentifier(t testing.TB, pin string) *reader.Identifier {
	t.Helper()
	ca, _ := testPKI()
	v, err := reader.NewVerifier([]*x509.Certificate{ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	id, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: reader.ModePIN, Verifier: v, Keypad: typedPIN(pin)})
	if err != nil {
		t.Fatal(err)
	}
	return id
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
	mu    sync.Mutex
	steps []string
}

func (j *journal) add(s string) { j.mu.Lock(); j.steps = append(j.steps, s); j.mu.Unlock() }
func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.steps, ",")
}

type fakeDecider struct {
	allow, breakGlass map[string]bool
	pinDoor           bool // the door is in card + PIN mode
	j                 *journal
}

func (f *fakeDecider) DecideAt(req policy.Request) policy.Decision {
	f.j.add("decide")
	if req.Door != "front" && req.Door != "bench" {
		return policy.Decision{Reason: policy.ReasonUnknownDoor}
	}
	if f.pinDoor && !req.PINVerified {
		return policy.Decision{Reason: policy.ReasonPINRequired}
	}
	if f.breakGlass[req.Credential.SerialHex()] {
		return policy.Decision{Granted: true, Reason: policy.ReasonBreakGlass}
	}
	if f.allow[req.Credential.SerialHex()] {
		return policy.Decision{Granted: true, Reason: policy.ReasonEnrolled}
	}
	return policy.Decision{Reason: policy.ReasonNotEnrolled}
}

type fakeLock struct {
	j          *journal
	err        error
	lockedDown bool
}

func (f *fakeLock) AllowGrant(admin bool) bool  { return admin || !f.lockedDown }
func (f *fakeLock) Grant(context.Context) error { f.j.add("grant"); return f.err }
func (f *fakeLock) AdminGrant(context.Context) error {
	f.j.add("admin-grant")
	return f.err
}
func (f *fakeLock) Indicate(_ context.Context, s door.Signal) error {
	f.j.add("indicate:" + string(s))
	return nil
}

type fakeLog struct {
	j      *journal
	err    error
	events []proto.Event
}

func (f *fakeLog) Append(ev proto.Event) (proto.Event, error) {
	f.j.add("append:" + ev.Type)
	if f.err != nil {
		return proto.Event{}, f.err
	}
	ev.Seq = uint64(len(f.events) + 1)
	f.events = append(f.events, ev)
	return ev, nil
}

func TestHandle(t *testing.T) {
	good := testCard(t, 0x1001, time.Now().AddDate(1, 0, 0))
	unknown := testCard(t, 0x1002, time.Now().AddDate(1, 0, 0))
	expired := testCard(t, 0x1003, time.Now().Add(-time.Hour))
	glass := testCard(t, 0x1004, time.Now().AddDate(1, 0, 0))
	noJPKI := cardsim.New(cardsim.Profile{})
	diskFull := errors.New("disk full")
	relayBroken := errors.New("gpio write failed")

	tests := []struct {
		name       string
		card       *cardsim.Card
		logErr     error
		lockErr    error
		lockedDown bool
		pinDoor    bool
		pin        string // typed on the keypad when the door asks for it
		granted    bool
		reason     policy.Reason
		steps      string
		wantEvent  bool
	}{
		{name: "enrolled: event stored before the lock moves", card: good, granted: true, reason: policy.ReasonEnrolled,
			steps: "decide,append:decision,grant", wantEvent: true},
		{name: "not enrolled: no grant, denied signal", card: unknown, reason: policy.ReasonNotEnrolled,
			steps: "decide,append:decision,indicate:denied", wantEvent: true},
		{name: "expired certificate: policy not asked", card: expired, reason: policy.ReasonExpired,
			steps: "append:decision,indicate:denied", wantEvent: true},
		{name: "no JPKI-AP", card: noJPKI, reason: policy.ReasonNotMyNumberCard, steps: "append:decision,indicate:denied", wantEvent: true},
		{name: "outbox failure still decides", card: good, logErr: diskFull, granted: true, reason: policy.ReasonEnrolled,
			steps: "decide,append:decision,grant"},
		{name: "relay failure is recorded", card: good, lockErr: relayBroken, granted: true, reason: policy.ReasonEnrolled,
			steps: "decide,append:decision,grant,append:door", wantEvent: true},
		{name: "interlock refusal is recorded as interlocked", card: good, lockErr: door.ErrInterlocked, granted: true,
			reason: policy.ReasonEnrolled, steps: "decide,append:decision,grant,append:door", wantEvent: true},
		{name: "locked down: policy's grant refused before the event", card: good, lockedDown: true, reason: policy.ReasonLockedDown,
			steps: "decide,append:decision,indicate:denied", wantEvent: true},
		{name: "break-glass opens a locked-down door", card: glass, lockedDown: true, granted: true, reason: policy.ReasonBreakGlass,
			steps: "decide,append:decision,admin-grant", wantEvent: true},
		{name: "card + PIN door: PIN asked, right PIN grants", card: good, pinDoor: true, pin: "1234", granted: true,
			reason: policy.ReasonEnrolled, steps: "decide,indicate:pin_wanted,decide,append:decision,grant", wantEvent: true},
		{name: "card + PIN door: wrong PIN denies", card: good, pinDoor: true, pin: "9999", reason: policy.ReasonPINWrong,
			steps: "decide,indicate:pin_wanted,append:decision,indicate:denied", wantEvent: true},
		{name: "card + PIN door without keypad: pin_required", card: good, pinDoor: true, reason: policy.ReasonPINRequired,
			steps: "decide,append:decision,indicate:denied", wantEvent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.card.Reset()
			j := &journal{}
			log := &fakeLog{j: j, err: tt.logErr}
			notified := 0
			d := &ReaderLoop{Door: "front", Direction: "in", Identifier: testIdentifier(t),
				Decider: &fakeDecider{allow: map[string]bool{"1001": true}, breakGlass: map[string]bool{"1004": true}, pinDoor: tt.pinDoor, j: j},
				Lock:    &fakeLock{j: j, err: tt.lockErr, lockedDown: tt.lockedDown}, Events: log, Notify: func() { notified++ },
				Log: slog.New(slog.DiscardHandler)}
			if tt.pin != "" {
				d.PINIdentifier = pinIdentifier(t, tt.pin)
			}
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
			if tt.lockErr == door.ErrInterlocked && log.events[1].Reason != "interlocked" {
				t.Errorf("follow-up event reason = %q, want interlocked", log.events[1].Reason)
			}
			if tt.reason == policy.ReasonPINWrong && !strings.Contains(log.events[0].Detail, "pin_tries_left=2") {
				t.Errorf("wrong-PIN event detail %q lacks the tries left", log.events[0].Detail)
			}
			if tt.wantEvent {
				ev := log.events[0]
				if ev.Door != "front" || ev.Reason != string(tt.reason) || ev.Granted != tt.granted || ev.Type != "decision" ||
					!strings.Contains(ev.Detail, "direction=in") {
					t.Errorf("event = %+v", ev)
				}
				if tap.ReadErr == nil || tt.reason == policy.ReasonExpired {
					key, _ := tap.Identity.Credential.Key()
					if ev.Credential != hex.EncodeToString(key) || ev.Token != "mynumber" {
						t.Errorf("event credential/token = %q/%q, want %x/mynumber", ev.Credential, ev.Token, key)
					}
				} else if ev.Credential != "" && tt.reason != policy.ReasonPINWrong {
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
	serialEF := map[string]bool{"0006": true, "000a": true, "000b": true}
	pinEF := map[string]bool{"0006": true, "000a": true, "000b": true, "0018": true, "0017": true}
	for _, tc := range []struct {
		card      *cardsim.Card
		id        Identifier
		allowedEF map[string]bool
	}{
		{testCard(t, 0x2001, time.Now().AddDate(1, 0, 0)), testIdentifier(t), serialEF},
		{cardsim.New(cardsim.Profile{}), testIdentifier(t), serialEF},
		{testCard(t, 0x2002, time.Now().AddDate(1, 0, 0)), pinIdentifier(t, "1234"), pinEF},
	} {
		card, allowedEF := tc.card, tc.allowedEF
		rec := &recorder{t: card}
		d := &ReaderLoop{Door: "front", Identifier: tc.id, Decider: &fakeDecider{j: &journal{}}, Lock: &fakeLock{j: &journal{}},
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

type fakeEnrollments struct{ records [][]byte }

func (f *fakeEnrollments) AppendEnrollment(b []byte) (uint64, error) {
	f.records = append(f.records, b)
	return uint64(len(f.records)), nil
}

// TestHandleEnroll checks that an enroll-mode tap stores the enrollment
// record apart from the event, and that the event carries no certificate.
func TestHandleEnroll(t *testing.T) {
	ca, _ := testPKI()
	v, err := reader.NewVerifier([]*x509.Certificate{ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	id, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: reader.ModeEnroll, Verifier: v, Keypad: typedPIN("1234")})
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{}
	log, enr := &fakeLog{j: j}, &fakeEnrollments{}
	d := &ReaderLoop{Door: "front", Direction: "in", Identifier: id, Decider: &fakeDecider{j: j}, Lock: &fakeLock{j: j},
		Events: log, Enrollments: enr, Log: slog.New(slog.DiscardHandler)}
	tap := d.Handle(context.Background(), testCard(t, 0x1005, time.Now().AddDate(1, 0, 0)))
	if tap.EnrollmentErr != nil || tap.EnrollmentSeq != 1 || len(enr.records) != 1 {
		t.Fatalf("enrollment seq %d err %v records %d", tap.EnrollmentSeq, tap.EnrollmentErr, len(enr.records))
	}
	var rec reader.EnrollmentRecord
	if err := json.Unmarshal(enr.records[0], &rec); err != nil || !rec.PINVerified || len(rec.Signature) == 0 {
		t.Errorf("stored record = %+v (%v)", rec, err)
	}
	if err := reader.VerifyEnrollment(&rec, v, time.Now()); err != nil {
		t.Errorf("stored record does not verify: %v", err)
	}
	ev := log.events[0]
	if !strings.Contains(ev.Detail, "enrollment=1") {
		t.Errorf("event detail %q does not point at the enrollment", ev.Detail)
	}
	evJSON, _ := json.Marshal(ev)
	if strings.Contains(string(evJSON), "MII") || len(evJSON) > 1024 {
		t.Errorf("event carries more than a reference: %s", evJSON)
	}
}
