package firmware

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/signed"
)

// fakeRoot makes an update root by hand: dummy slots for versions, current
// (and previous) links, and the given state.
func fakeRoot(t *testing.T, current, previous string, st State, slots ...string) string {
	t.Helper()
	root := t.TempDir()
	l := layout{root}
	for _, v := range append(slots, current, previous) {
		if v == "" {
			continue
		}
		if err := os.MkdirAll(l.slot(v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(l.binary(v), []byte("binary "+v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if current != "" {
		if err := l.switchLink(currentLink, current); err != nil {
			t.Fatal(err)
		}
	}
	if previous != "" {
		if err := l.switchLink(previousLink, previous); err != nil {
			t.Fatal(err)
		}
	}
	if err := saveState(l.state(), st); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestCheckPolicy: manifests that must be refused are refused with the
// right error; the others pass.
func TestCheckPolicy(t *testing.T) {
	release, rotated, stranger := testKey("release"), testKey("rotated"), testKey("stranger")
	good := func() Manifest { return manifestForBytes("3.0.0", []byte("new release")) }
	with := func(f func(*Manifest)) Manifest { m := good(); f(&m); return m }
	tampered := func() []byte {
		env, err := ParseEnvelope(sign(t, good(), release))
		if err != nil {
			t.Fatal(err)
		}
		m := good()
		m.Floor = "3.0.0"
		env.Manifest, _ = json.Marshal(m)
		data, _ := json.Marshal(env)
		return data
	}
	unknownField := func() []byte {
		body := []byte(`{"version":"3.0.0","arch":"` + hostArch() + `","size":1,"sha256":"` + good().SHA256 +
			`","issued":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z","reboot_into_recovery":true}`)
		env := Envelope{Manifest: body, Signatures: []Signature{{KeyID: signed.KeyID(pub(release)), Sig: ed25519.Sign(release, signedBytes(body))}}}
		data, _ := json.Marshal(env)
		return data
	}
	for _, tc := range []struct {
		name     string
		envelope []byte
		want     error
	}{
		{"good", sign(t, good(), release), nil},
		{"second pinned key (rotation)", sign(t, good(), rotated), nil},
		{"signed by pinned and unpinned key", sign(t, good(), stranger, release), nil},
		{"bad signature: unpinned key", sign(t, good(), stranger), ErrBadSignature},
		{"bad signature: manifest altered after signing", tampered(), ErrBadSignature},
		{"wrong architecture", sign(t, with(func(m *Manifest) { m.Arch = "linux/mips" }), release), ErrWrongArch},
		{"expired", sign(t, with(func(m *Manifest) { m.Expires = testNow.Add(-time.Second) }), release), ErrExpired},
		{"below floor", sign(t, with(func(m *Manifest) { m.Version = "1.4.9" }), release), ErrBelowFloor},
		{"below min-from-version", sign(t, with(func(m *Manifest) { m.MinFromVersion = "2.1.0" }), release), ErrBelowMinFrom},
		{"min-from-version met", sign(t, with(func(m *Manifest) { m.MinFromVersion = "2.0.0" }), release), nil},
		{"not targeted", sign(t, with(func(m *Manifest) { m.Targets = []string{"device:door-9", "group:garage"} }), release), ErrNotTargeted},
		{"targeted by group", sign(t, with(func(m *Manifest) { m.Targets = []string{"device:door-9", "group:lobby"} }), release), nil},
		{"targeted by device", sign(t, with(func(m *Manifest) { m.Targets = []string{"device:door-1"} }), release), nil},
		{"rolled back before", sign(t, with(func(m *Manifest) { m.Version = "2.5.0" }), release), ErrKnownBad},
		{"already running", sign(t, with(func(m *Manifest) { m.Version = "2.0.0" }), release), ErrAlreadyInstalled},
		{"downgrade above floor", sign(t, with(func(m *Manifest) { m.Version = "1.5.0" }), release), nil},
		{"unknown manifest field", unknownField(), ErrMalformed},
		{"not JSON", []byte("release 3.0.0"), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, "2.0.0", "", State{Committed: "2.0.0", Floor: "1.5.0", Bad: []string{"2.5.0"}})
			v, err := NewVerifier(pub(release), pub(rotated))
			if err != nil {
				t.Fatal(err)
			}
			u := &Updater{Root: root, Verifier: v, Clock: clocktest.New(testNow), Device: Device{ID: "door-1", Groups: []string{"lobby"}, Arch: hostArch()}}
			_, err = u.Check(context.Background(), tc.envelope)
			if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("Check: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestStageRefusesWrongBytes: bytes that do not match the signed size and
// hash are refused and nothing is installed.
func TestStageRefusesWrongBytes(t *testing.T) {
	body := []byte("the real release binary")
	for _, tc := range []struct {
		name   string
		served []byte
	}{
		{"wrong hash", []byte("the fake release binary")},
		{"short", body[:10]},
		{"one byte flipped", append([]byte{body[0] ^ 1}, body[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			src := filepath.Join(t.TempDir(), "bin")
			if err := os.WriteFile(src, tc.served, 0o644); err != nil {
				t.Fatal(err)
			}
			m := manifestForBytes("2.0.0", body)
			u := newUpdater(t, root)
			err := u.Stage(context.Background(), m, FileFetcher{Path: src})
			if !errors.Is(err, ErrHashMismatch) {
				t.Fatalf("Stage: %v, want ErrHashMismatch", err)
			}
			l := layout{root}
			for _, p := range []string{l.binary("2.0.0"), l.partial(m.SHA256)} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind (stat: %v)", p, err)
				}
			}
		})
	}
}

type busy string

func (b busy) Busy() (bool, string) { return b != "", string(b) }

// TestActivateRefusals: busy controller, outside the window, trial
// pending, not staged.
func TestActivateRefusals(t *testing.T) {
	body := []byte("release 3")
	m := manifestForBytes("3.0.0", body)
	window, err := ParseWindow("02:00-04:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	at := func(h int) time.Time {
		return time.Date(testNow.Year(), testNow.Month(), testNow.Day(), h, 30, 0, 0, time.UTC)
	}
	for _, tc := range []struct {
		name    string
		busy    busy
		now     time.Time
		pending string
		staged  bool
		want    error
	}{
		{"idle inside the window", "", at(3), "", true, nil},
		{"door open", "door lobby open", at(3), "", true, ErrBusy},
		{"outside the window", "", at(12), "", true, ErrOutsideWindow},
		{"trial pending", "", at(3), "2.1.0", true, ErrTrialPending},
		{"not staged", "", at(3), "", false, ErrNotStaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := State{Committed: "2.0.0", Pending: tc.pending}
			root := fakeRoot(t, "2.0.0", "", st)
			u := newUpdater(t, root)
			u.Clock, u.Busy, u.Window = clocktest.New(tc.now), tc.busy, window
			m := m
			m.Expires = tc.now.Add(time.Hour)
			if tc.staged {
				if err := u.Stage(context.Background(), m, bytesFetcher(body)); err != nil {
					t.Fatal(err)
				}
			}
			err := u.Activate(context.Background(), m)
			if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Activate: %v, want %v", err, tc.want)
			}
			s, err := ReadStatus(root)
			if err != nil {
				t.Fatal(err)
			}
			wantRunning := "2.0.0"
			if tc.want == nil {
				wantRunning = "3.0.0"
			}
			if s.Running != wantRunning {
				t.Errorf("running %s, want %s", s.Running, wantRunning)
			}
		})
	}
}

// bytesFetcher serves a byte slice.
type bytesFetcher []byte

func (b bytesFetcher) Fetch(_ context.Context, off int64, n int) ([]byte, error) {
	if off >= int64(len(b)) {
		return nil, io.EOF
	}
	return b[off:min(int64(len(b)), off+int64(n))], nil
}
