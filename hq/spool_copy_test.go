package hq_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// spoolFixture is what newSpoolFixture put into a FileSpool.
type spoolFixture struct {
	dir       string
	spool     *hq.FileSpool
	transfers []proto.Manifest
}

// putTransfer spools a transfer of n random bytes to device or group of
// s1, issued at issued.
func (f *spoolFixture) putTransfer(t *testing.T, device, group string, version uint64, issued time.Time, n int) {
	t.Helper()
	payload := make([]byte, n)
	_, _ = rand.Read(payload)
	sum := sha256.Sum256(payload)
	m := proto.Manifest{Transfer: proto.NewCommandID(), Site: "s1", Device: device, Group: group, Type: proto.SnapshotFull, Version: version,
		Size: int64(n), SHA256: hex.EncodeToString(sum[:]), ChunkSize: 1000, Chunks: (n + 999) / 1000, Issued: issued}
	if err := f.spool.PutTransfer(t.Context(), m, []byte("env "+m.Transfer), bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	f.transfers = append(f.transfers, m)
}

// newSpoolFixture returns a FileSpool holding two transfers to d1, two to
// d2 (its latest issued before the other), one to a group; commands in
// force for d1 (set_mode, then lockdown of every door, then a set_mode of
// one door) and d2; release offers to d1 and to a group.
func newSpoolFixture(t *testing.T) *spoolFixture {
	dir := t.TempDir()
	s, err := hq.NewFileSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &spoolFixture{dir: dir, spool: s}
	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	f.putTransfer(t, "d1", "", 3, at, 2500)
	f.putTransfer(t, "d1", "", 4, at.Add(time.Minute), 1200)
	f.putTransfer(t, "d2", "", 5, at.Add(time.Hour), 10)
	f.putTransfer(t, "d2", "", 6, at, 3000) // the latest, though issued before
	f.putTransfer(t, "", "gates", 7, at, 999)
	cmd := func(device, action, door, mode string) hq.SpooledEnvelope[proto.Command] {
		c := modeCmd(action, door, mode)
		c.Value.Device = device
		return c
	}
	for _, c := range []hq.SpooledEnvelope[proto.Command]{
		cmd("d1", proto.ActionSetMode, "a", "unlocked"),
		cmd("d1", proto.ActionLockdown, "", ""),
		cmd("d1", proto.ActionSetMode, "b", "unlocked"),
		cmd("d2", proto.ActionSetMode, "a", "unlocked"),
		cmd("d2", proto.ActionSetMode, "b", "locked"),
	} {
		if err := s.PutCommand(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range [][2]string{{"d1", ""}, {"", "gates"}} {
		o := proto.ReleaseOffer{ID: proto.NewCommandID(), Site: "s1", Device: target[0], Group: target[1], Issued: at, Expires: at.Add(time.Hour),
			ChunkSize: 1000, Manifest: []byte("m")}
		if err := s.PutOffer(t.Context(), hq.SpooledEnvelope[proto.ReleaseOffer]{Value: o, Envelope: []byte("env " + o.ID)}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// reads returns, as JSON, every answer sp gives about the fixture: the
// latest transfers, each transfer with its chunks, the commands in force
// and the offers.
func (f *spoolFixture) reads(t *testing.T, sp hq.Spool) string {
	t.Helper()
	ctx := t.Context()
	var out []any
	add := func(v any, err error) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	add(sp.Latest(ctx, "s1", "d1"))
	add(sp.Latest(ctx, "s1", "d2"))
	add(sp.LatestGroup(ctx, "s1", "gates"))
	for _, m := range f.transfers {
		add(sp.Transfer(ctx, m.Transfer))
		for i := range m.Chunks {
			add(sp.Chunk(ctx, m, i))
		}
	}
	add(sp.Commands(ctx, "s1", "d1"))
	add(sp.Commands(ctx, "s1", "d2"))
	add(sp.Offers(ctx, "s1", "d1", []string{"gates"}))
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCopySpool: CopySpool copies a FileSpool into PostgreSQL so that
// every read answers the same (the latest transfers, the commands in
// force in their order), and a second copy copies nothing.
func TestCopySpool(t *testing.T) {
	f := newSpoolFixture(t)
	want := f.reads(t, f.spool)
	if !strings.Contains(want, f.transfers[3].Transfer) || !strings.Contains(want, "lockdown") {
		t.Fatalf("the fixture's reads lack its transfers or commands:\n%s", want)
	}
	dst := spools[1].open(t)
	for i, wantNew := range []hq.SpoolCopy{{NewTransfers: 5, NewCommands: 2, NewOffers: 2}, {}} {
		n, err := hq.CopySpool(t.Context(), f.spool, dst)
		if err != nil {
			t.Fatalf("copy %d: %v", i+1, err)
		}
		wantNew.Transfers, wantNew.Latest, wantNew.Commands, wantNew.Offers = 5, 3, 2, 2
		if n != wantNew {
			t.Errorf("copy %d copied %+v, want %+v", i+1, n, wantNew)
		}
		if got := f.reads(t, dst); got != want {
			t.Fatalf("after copy %d PostgreSQL answers\n%s\nthe spool directory\n%s", i+1, got, want)
		}
	}
}

// TestCopySpoolRefuses: a bad spool file stops the copy before anything
// is written, with an error naming the file; PostgreSQL holding a newer
// latest transfer stops it with ErrSpoolDiverged.
func TestCopySpoolRefuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		diverged bool
		// spoil spoils f and returns what the error must say.
		spoil func(t *testing.T, f *spoolFixture, dst hq.Spool) (string, error)
	}{
		{"truncated payload", false, func(t *testing.T, f *spoolFixture, _ hq.Spool) (string, error) {
			path := filepath.Join(f.dir, f.transfers[0].Transfer+".bin")
			return path + ": payload has 2000 bytes, its manifest says 2500", os.Truncate(path, 2000)
		}},
		{"changed payload", false, func(t *testing.T, f *spoolFixture, _ hq.Spool) (string, error) {
			path := filepath.Join(f.dir, f.transfers[4].Transfer+".bin")
			return path + ": payload's SHA-256", os.WriteFile(path, make([]byte, f.transfers[4].Size), 0o600)
		}},
		{"bad manifest", false, func(t *testing.T, f *spoolFixture, _ hq.Spool) (string, error) {
			path := filepath.Join(f.dir, f.transfers[2].Transfer+".manifest.json")
			return "decode manifest " + path, os.WriteFile(path, []byte(`{"transfer":`), 0o600)
		}},
		{"bad commands", false, func(t *testing.T, f *spoolFixture, _ hq.Spool) (string, error) {
			path := filepath.Join(f.dir, "modes", "s1", "d2.json")
			return "decode " + path, os.WriteFile(path, []byte(`[{"value":`), 0o600)
		}},
		{"interrupted publication", false, func(t *testing.T, f *spoolFixture, _ hq.Spool) (string, error) {
			return f.transfers[4].Transfer + ".manifest.json: transfer to group s1/gates, which has no latest transfer",
				os.Remove(filepath.Join(f.dir, "latest", "s1", "groups", "gates.json"))
		}},
		{"published into PostgreSQL", true, func(t *testing.T, f *spoolFixture, dst hq.Spool) (string, error) {
			other := newSpoolFixture(t)
			other.putTransfer(t, "d1", "", 9, time.Now(), 10)
			_, err := hq.CopySpool(t.Context(), other.spool, dst)
			return "the destination spool holds what the copied spool does not: its latest transfer to device s1/d1 is " + other.transfers[5].Transfer, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSpoolFixture(t)
			dst := spools[1].open(t)
			want, err := tc.spoil(t, f, dst)
			if err != nil {
				t.Fatal(err)
			}
			before := dstState(t, f, dst)
			_, err = hq.CopySpool(t.Context(), f.spool, dst)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("CopySpool = %v, want an error saying %q", err, want)
			}
			if tc.diverged != errors.Is(err, hq.ErrSpoolDiverged) {
				t.Errorf("CopySpool = %v: ErrSpoolDiverged %v, want %v", err, !tc.diverged, tc.diverged)
			}
			if after := dstState(t, f, dst); after != before {
				t.Errorf("the refused copy wrote into PostgreSQL: before\n%s\nafter\n%s", before, after)
			}
		})
	}
}

// dstState returns which of f's transfers dst holds, and dst's commands in
// force and offers for f's devices.
func dstState(t *testing.T, f *spoolFixture, dst hq.Spool) string {
	t.Helper()
	var b strings.Builder
	for _, m := range f.transfers {
		_, err := dst.Transfer(t.Context(), m.Transfer)
		fmt.Fprintf(&b, "transfer %s: %v\n", m.Transfer, err == nil)
	}
	for _, d := range []string{"d1", "d2"} {
		cmds, err := dst.Commands(t.Context(), "s1", d)
		offers, oerr := dst.Offers(t.Context(), "s1", d, []string{"gates"})
		fmt.Fprintf(&b, "%s: %d commands %v, %d offers %v\n", d, len(cmds), err, len(offers), oerr)
	}
	return b.String()
}

// failingSpool fails every write after the first ok ones.
type failingSpool struct {
	hq.Spool
	ok int
}

// errPut is failingSpool's error.
var errPut = errors.New("put failed")

// put reports whether one more write may go through.
func (s *failingSpool) put() error {
	if s.ok == 0 {
		return errPut
	}
	s.ok--
	return nil
}

// PutTransfer implements hq.Spool.
func (s *failingSpool) PutTransfer(ctx context.Context, m proto.Manifest, envelope []byte, payload io.Reader) error {
	if err := s.put(); err != nil {
		return err
	}
	return s.Spool.PutTransfer(ctx, m, envelope, payload)
}

// PutCommand implements hq.Spool.
func (s *failingSpool) PutCommand(ctx context.Context, c hq.SpooledEnvelope[proto.Command]) error {
	if err := s.put(); err != nil {
		return err
	}
	return s.Spool.PutCommand(ctx, c)
}

// PutOffer implements hq.Spool.
func (s *failingSpool) PutOffer(ctx context.Context, o hq.SpooledEnvelope[proto.ReleaseOffer]) error {
	if err := s.put(); err != nil {
		return err
	}
	return s.Spool.PutOffer(ctx, o)
}

// TestCopySpoolResumes: a copy that stopped half-way (among the
// transfers, before the latest ones, within a device's commands, among the
// offers) goes on when run again, to the same answers.
func TestCopySpoolResumes(t *testing.T) {
	f := newSpoolFixture(t)
	want := f.reads(t, f.spool)
	// The writes: 5 transfers (2 not the latest, then the 3 latest), the
	// commands in force of d1 (2) and d2 (2), 2 offers.
	for _, ok := range []int{1, 2, 6, 8, 10} {
		t.Run(fmt.Sprint(ok, " writes"), func(t *testing.T) {
			dst := spools[1].open(t)
			if _, err := hq.CopySpool(t.Context(), f.spool, &failingSpool{Spool: dst, ok: ok}); !errors.Is(err, errPut) {
				t.Fatalf("the copy stopped after %d writes = %v, want errPut", ok, err)
			}
			if _, err := hq.CopySpool(t.Context(), f.spool, dst); err != nil {
				t.Fatalf("the copy run again: %v", err)
			}
			if got := f.reads(t, dst); got != want {
				t.Fatalf("after the copy resumed PostgreSQL answers\n%s\nthe spool directory\n%s", got, want)
			}
		})
	}
}
