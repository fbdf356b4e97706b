package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/credential"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// keyID returns a 20-byte issuer key ID filled with b.
func keyID(b byte) []byte { return bytes.Repeat([]byte{b}, credential.KeyIDLen) }

func cert(kid byte, serial ...byte) credential.Credential {
	return credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: keyID(kid), Serial: serial}
}

func freeArea(id string) credential.Credential {
	return credential.Credential{Kind: credential.KindFreeArea, ID: id}
}

func openStore(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.db")
	s, err := Open(path, discard)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func mustApply(t testing.TB, s *Store, snap Snapshot) {
	t.Helper()
	if err := s.ApplyFull(context.Background(), snap); err != nil {
		t.Fatalf("ApplyFull(version %d): %v", snap.Version, err)
	}
}

func TestDecide(t *testing.T) {
	s, _ := openStore(t)
	mustApply(t, s, Snapshot{
		Version: 7,
		Allow: []Entry{
			{Credential: cert(0xA1, 0x01, 0x02, 0x03, 0x04), Person: "p-enrolled"},
			{Credential: cert(0xA1, 0x0B, 0xAD), Person: "p-revoked"},
			{Credential: cert(0xA2, 0x05, 0x06), Person: "p-gen2"},
			{Credential: freeArea("EMP-0042"), Person: "p-free"},
		},
		Revoked: []Revocation{
			{IssuerKeyID: keyID(0xA1), Serial: []byte{0x0B, 0xAD}},
			{IssuerKeyID: keyID(0xA1), Serial: []byte{0x05, 0x06}}, // same serial as p-gen2, other CA
			{IssuerKeyID: keyID(0xA1), Serial: []byte{0x99}},       // revoked, never enrolled
		},
	})
	tests := []struct {
		name string
		cred credential.Credential
		want Decision
	}{
		{"enrolled", cert(0xA1, 0x01, 0x02, 0x03, 0x04), Decision{Granted: true, Reason: ReasonEnrolled, Person: "p-enrolled", SnapshotVersion: 7}},
		{"not enrolled", cert(0xA1, 0x01, 0x02, 0x03, 0x05), Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 7}},
		{"enrolled serial under another issuer is not enrolled", cert(0xA3, 0x01, 0x02, 0x03, 0x04), Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 7}},
		{"revoked and enrolled is revoked", cert(0xA1, 0x0B, 0xAD), Decision{Reason: ReasonRevoked, SnapshotVersion: 7}},
		{"revoked and not enrolled is revoked", cert(0xA1, 0x99), Decision{Reason: ReasonRevoked, SnapshotVersion: 7}},
		{"same serial revoked under another issuer is granted", cert(0xA2, 0x05, 0x06), Decision{Granted: true, Reason: ReasonEnrolled, Person: "p-gen2", SnapshotVersion: 7}},
		{"free-area ID enrolled", freeArea("EMP-0042"), Decision{Granted: true, Reason: ReasonEnrolled, Person: "p-free", SnapshotVersion: 7}},
		{"free-area ID not enrolled", freeArea("EMP-0043"), Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 7}},
		{"free-area ID equal to a cert key's tail is not enrolled", freeArea(string(append(keyID(0xA1), 1, 2, 3, 4))), Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 7}},
		{"invalid credential is not enrolled", credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: []byte{1}, Serial: []byte{1}}, Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 7}},
		{"serial with leading zero is not enrolled", cert(0xA1, 0x00, 0x01, 0x02, 0x03, 0x04), Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 7}},
		{"zero credential is not enrolled", credential.Credential{}, Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Decide(tt.cred)
			if got != tt.want {
				t.Errorf("Decide(%s) = %+v, want %+v", tt.cred, got, tt.want)
			}
			if got.Granted != got.Reason.Granted() {
				t.Errorf("Decide(%s): Granted=%v but Reason %q grants=%v", tt.cred, got.Granted, got.Reason, got.Reason.Granted())
			}
		})
	}
}

func TestDecideWithoutSnapshot(t *testing.T) {
	s, _ := openStore(t)
	want := Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 0}
	if got := s.Decide(cert(1, 1)); got != want {
		t.Errorf("Decide on an empty store = %+v, want %+v", got, want)
	}
	if v, err := s.Version(); err != nil || v != 0 {
		t.Errorf("Version() on an empty store = %d, %v; want 0, nil", v, err)
	}
}

func TestDecideStoreUnavailable(t *testing.T) {
	s, _ := openStore(t)
	mustApply(t, s, Snapshot{Version: 1, Allow: []Entry{{Credential: cert(1, 1), Person: "p"}}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := Decision{Reason: ReasonStoreUnavailable}
	for _, c := range []credential.Credential{cert(1, 1), {}} {
		if got := s.Decide(c); got != want {
			t.Errorf("Decide(%s) on a closed store = %+v, want %+v", c, got, want)
		}
	}
}

func TestApplyFullReplaces(t *testing.T) {
	s, _ := openStore(t)
	mustApply(t, s, Snapshot{
		Version: 1,
		Allow:   []Entry{{Credential: cert(1, 1), Person: "old"}, {Credential: cert(1, 2), Person: "kept"}},
		Revoked: []Revocation{{IssuerKeyID: keyID(1), Serial: []byte{3}}},
	})
	mustApply(t, s, Snapshot{
		Version: 2,
		Allow:   []Entry{{Credential: cert(1, 2), Person: "kept-renamed"}, {Credential: cert(1, 3), Person: "new"}},
	})
	tests := []struct {
		cred credential.Credential
		want Decision
	}{
		{cert(1, 1), Decision{Reason: ReasonNotEnrolled, SnapshotVersion: 2}},
		{cert(1, 2), Decision{Granted: true, Reason: ReasonEnrolled, Person: "kept-renamed", SnapshotVersion: 2}},
		{cert(1, 3), Decision{Granted: true, Reason: ReasonEnrolled, Person: "new", SnapshotVersion: 2}}, // revocation gone
	}
	for _, tt := range tests {
		if got := s.Decide(tt.cred); got != tt.want {
			t.Errorf("after version 2, Decide(%s) = %+v, want %+v", tt.cred, got, tt.want)
		}
	}
}

func TestApplyFullRefusals(t *testing.T) {
	good := Snapshot{Version: 5, Allow: []Entry{{Credential: cert(1, 1), Person: "p1"}}}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		snap    Snapshot
		wantErr error
		wantMsg string // a substring that names the culprit
	}{
		{"same version", context.Background(), Snapshot{Version: 5}, ErrStaleVersion, "offered 5, stored 5"},
		{"older version", context.Background(), Snapshot{Version: 4}, ErrStaleVersion, "offered 4, stored 5"},
		{"version zero", context.Background(), Snapshot{}, ErrInvalidSnapshot, "version 0"},
		{"short issuer key ID", context.Background(), Snapshot{Version: 6, Allow: []Entry{
			{Credential: cert(1, 2), Person: "ok"},
			{Credential: credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: []byte{1, 2}, Serial: []byte{1}}, Person: "p"},
		}}, credential.ErrInvalid, "allow[1]"},
		{"empty serial", context.Background(), Snapshot{Version: 6, Allow: []Entry{{Credential: cert(1), Person: "p"}}}, credential.ErrInvalid, "allow[0]"},
		{"serial with leading zero", context.Background(), Snapshot{Version: 6, Allow: []Entry{{Credential: cert(1, 0, 1), Person: "p"}}}, ErrInvalidSnapshot, "allow[0]: invalid credential: serial 0001 has a leading zero"},
		{"unknown kind", context.Background(), Snapshot{Version: 6, Allow: []Entry{{Credential: credential.Credential{Kind: 9}, Person: "p"}}}, credential.ErrInvalid, "allow[0]"},
		{"empty person", context.Background(), Snapshot{Version: 6, Allow: []Entry{{Credential: cert(1, 2)}}}, ErrInvalidSnapshot, "allow[0] (cert:01010101…/02): person is empty"},
		{"long person", context.Background(), Snapshot{Version: 6, Allow: []Entry{{Credential: cert(1, 2), Person: strings.Repeat("x", MaxPersonLen+1)}}}, ErrInvalidSnapshot, "allow[0]"},
		{"non-UTF-8 free-area ID", context.Background(), Snapshot{Version: 6, Allow: []Entry{{Credential: freeArea("\xff"), Person: "p"}}}, ErrInvalidSnapshot, "allow[0]"},
		{"duplicate credential", context.Background(), Snapshot{Version: 6, Allow: []Entry{
			{Credential: cert(1, 2), Person: "a"}, {Credential: freeArea("x"), Person: "b"}, {Credential: cert(1, 2), Person: "c"},
		}}, ErrInvalidSnapshot, "allow[2] (cert:01010101…/02) repeats allow[0]"},
		{"bad revocation", context.Background(), Snapshot{Version: 6, Revoked: []Revocation{
			{IssuerKeyID: keyID(1), Serial: []byte{1}}, {IssuerKeyID: keyID(1), Serial: make([]byte, 21)},
		}}, credential.ErrInvalid, "revoked[1]"},
		{"cancelled context", cancelled, Snapshot{Version: 6}, context.Canceled, "version 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := openStore(t)
			mustApply(t, s, good)
			err := s.ApplyFull(tt.ctx, tt.snap)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ApplyFull = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), path) {
				t.Errorf("ApplyFull error %q does not name %q and the path %s", err, tt.wantMsg, path)
			}
			if v, err := s.Version(); err != nil || v != 5 {
				t.Errorf("after refusal, Version() = %d, %v; want 5, nil", v, err)
			}
			want := Decision{Granted: true, Reason: ReasonEnrolled, Person: "p1", SnapshotVersion: 5}
			if got := s.Decide(cert(1, 1)); got != want {
				t.Errorf("after refusal, Decide = %+v, want the old snapshot's %+v", got, want)
			}
			if got := s.Decide(cert(1, 2)); got.Granted {
				t.Errorf("after refusal, an entry of the refused snapshot was granted: %+v", got)
			}
		})
	}
}

// TestApplyFullCancelledMidway cancels the context while records are being
// written; the old snapshot must survive whole.
func TestApplyFullCancelledMidway(t *testing.T) {
	s, _ := openStore(t)
	mustApply(t, s, Snapshot{Version: 1, Allow: []Entry{{Credential: cert(1, 1), Person: "p1"}}})
	ctx := &cancelAfter{Context: context.Background(), left: 2}
	big := Snapshot{Version: 2}
	for i := range 3 * ctxCheckEvery {
		big.Allow = append(big.Allow, Entry{Credential: cert(2, byte(i>>8)|0x80, byte(i)), Person: "p"})
	}
	if err := s.ApplyFull(ctx, big); !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyFull with a context cancelled midway = %v, want context.Canceled", err)
	}
	if ctx.left > 0 {
		t.Fatalf("the test's context was never cancelled (left=%d)", ctx.left)
	}
	if got := s.Decide(cert(1, 1)); got.Reason != ReasonEnrolled || got.SnapshotVersion != 1 {
		t.Errorf("after a cancelled apply, Decide = %+v, want the version 1 grant", got)
	}
	if got := s.Decide(cert(2, 0x80, 0)); got.Reason != ReasonNotEnrolled {
		t.Errorf("after a cancelled apply, a partial entry is visible: %+v", got)
	}
}

// cancelAfter is a context whose Err turns to Canceled after it has been
// asked left times.
type cancelAfter struct {
	context.Context
	mu   sync.Mutex
	left int
}

func (c *cancelAfter) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left <= 0 {
		return context.Canceled
	}
	c.left--
	return nil
}

func TestReopenPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.db")
	s, err := Open(path, discard)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, Snapshot{
		Version: 42,
		Allow:   []Entry{{Credential: cert(1, 1), Person: "p1"}},
		Revoked: []Revocation{{IssuerKeyID: keyID(1), Serial: []byte{2}}},
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, discard)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if v, err := s.Version(); err != nil || v != 42 {
		t.Errorf("after reopen, Version() = %d, %v; want 42, nil", v, err)
	}
	if got := s.Decide(cert(1, 1)); got.Reason != ReasonEnrolled || got.Person != "p1" {
		t.Errorf("after reopen, Decide(enrolled) = %+v", got)
	}
	if got := s.Decide(cert(1, 2)); got.Reason != ReasonRevoked {
		t.Errorf("after reopen, Decide(revoked) = %+v", got)
	}
	if err := s.ApplyFull(context.Background(), Snapshot{Version: 41}); !errors.Is(err, ErrStaleVersion) {
		t.Errorf("after reopen, applying version 41 = %v, want ErrStaleVersion", err)
	}
}

func TestOpenLocked(t *testing.T) {
	defer func(d time.Duration) { openTimeout = d }(openTimeout)
	openTimeout = 100 * time.Millisecond
	_, path := openStore(t)
	s2, err := Open(path, discard)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a held store succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("second Open = %v, want ErrLocked naming %s", err, path)
	}
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    error
	}{
		{"not a bbolt file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt},
		{"another program's bbolt file", func(t *testing.T, path string) {
			writeBolt(t, path, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("outbox")); return err })
		}, ErrCorrupt},
		{"allow bucket missing", func(t *testing.T, path string) {
			s, err := Open(path, discard)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			writeBolt(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketAllow) })
		}, ErrCorrupt},
		{"version record truncated", func(t *testing.T, path string) {
			s, err := Open(path, discard)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			writeBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(versionKey, []byte{1}) })
		}, ErrCorrupt},
		{"future format", func(t *testing.T, path string) {
			s, err := Open(path, discard)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			writeBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(formatKey, []byte{0, 0, 0, 99}) })
		}, ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.db")
			tt.prepare(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, discard)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open = %v, want %v naming %s", err, tt.want, path)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("Open changed a file it refused")
			}
		})
	}
}

func writeBolt(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDecideSeesWholeSnapshots applies versions that flip two credentials
// together while another goroutine decides: every pair of decisions read in
// one Decide call is about one version, so a decision for credential A in
// version v must match what version v says about A.
func TestDecideSeesWholeSnapshots(t *testing.T) {
	s, _ := openStore(t)
	a, b := cert(1, 0x0A), cert(1, 0x0B)
	snapFor := func(v uint64) Snapshot {
		// Odd versions allow a and revoke b; even versions the reverse.
		if v%2 == 1 {
			return Snapshot{Version: v, Allow: []Entry{{Credential: a, Person: "a"}}, Revoked: []Revocation{{IssuerKeyID: b.IssuerKeyID, Serial: b.Serial}}}
		}
		return Snapshot{Version: v, Allow: []Entry{{Credential: b, Person: "b"}}, Revoked: []Revocation{{IssuerKeyID: a.IssuerKeyID, Serial: a.Serial}}}
	}
	mustApply(t, s, snapFor(1))
	const last = 60
	done := make(chan struct{})
	errs := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			for _, c := range []credential.Credential{a, b} {
				d := s.Decide(c)
				wantGrant := (d.SnapshotVersion%2 == 1) == (c.Serial[0] == 0x0A)
				want := ReasonRevoked
				if wantGrant {
					want = ReasonEnrolled
				}
				if d.Reason != want {
					select {
					case errs <- fmt.Sprintf("version %d: %s got %s, want %s", d.SnapshotVersion, c, d.Reason, want):
					default:
					}
				}
			}
		}
	}()
	for v := uint64(2); v <= last; v++ {
		mustApply(t, s, snapFor(v))
	}
	close(done)
	wg.Wait()
	select {
	case e := <-errs:
		t.Errorf("a decision mixed versions: %s", e)
	default:
	}
}
