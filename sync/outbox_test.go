package sync_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// openOutbox opens path and closes it in Cleanup.
func openOutbox(t *testing.T, path string) *tsync.Outbox {
	t.Helper()
	ob, err := tsync.OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

// newOutbox opens a fresh outbox in a temporary directory.
func newOutbox(t *testing.T) *tsync.Outbox {
	t.Helper()
	return openOutbox(t, filepath.Join(t.TempDir(), "events.db"))
}

func TestOutboxAppendAssignsSequence(t *testing.T) {
	ob := newOutbox(t)
	in := prototest.Event(1)
	in.Seq = 99 // ignored: the outbox assigns
	in.Time = in.Time.In(time.FixedZone("JST", 9*3600))
	got, err := ob.Append(in)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 1 {
		t.Errorf("first Append got seq %d, want 1", got.Seq)
	}
	if got.Time.Location() != time.UTC || !got.Time.Equal(in.Time) {
		t.Errorf("stored time %v, want %v in UTC", got.Time, in.Time)
	}
	more := prototest.AppendN(t, ob, 2, 4)
	if fmt.Sprint(prototest.Seqs(more)) != "[2 3 4 5]" {
		t.Errorf("seqs %v, want [2 3 4 5]", prototest.Seqs(more))
	}
	pending, err := ob.Pending(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := prototest.DiffEvents(pending, append([]proto.Event{got}, more...)); d != "" {
		t.Errorf("Pending differs from what Append returned: %s", d)
	}
	if n, err := ob.Depth(); err != nil || n != 5 {
		t.Errorf("Depth = %d, %v; want 5", n, err)
	}
	if s, err := ob.LastSeq(); err != nil || s != 5 {
		t.Errorf("LastSeq = %d, %v; want 5", s, err)
	}
}

func TestOutboxPending(t *testing.T) {
	ob := newOutbox(t)
	prototest.AppendN(t, ob, 1, 5)
	tests := []struct {
		after uint64
		max   int
		want  string
	}{
		{0, 0, "[1 2 3 4 5]"},
		{0, -1, "[1 2 3 4 5]"},
		{0, 2, "[1 2]"},
		{2, 2, "[3 4]"},
		{4, 10, "[5]"},
		{5, 10, "[]"},
		{100, 1, "[]"},
		{math.MaxUint64, 1, "[]"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after %d max %d", tt.after, tt.max), func(t *testing.T) {
			evs, err := ob.Pending(tt.after, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(prototest.Seqs(evs)); got != tt.want {
				t.Fatalf("Pending = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestOutboxAck(t *testing.T) {
	ob := newOutbox(t)
	prototest.AppendN(t, ob, 1, 5)
	steps := []struct {
		ack         uint64
		wantRemoved int
		wantErr     error
		wantLeft    string
	}{
		{0, 0, nil, "[1 2 3 4 5]"},
		{3, 3, nil, "[4 5]"},
		{3, 0, nil, "[4 5]"}, // repeated ack
		{2, 0, nil, "[4 5]"}, // stale ack
		{6, 0, tsync.ErrAckAhead, "[4 5]"},
		{math.MaxUint64, 0, tsync.ErrAckAhead, "[4 5]"},
		{4, 1, nil, "[5]"},
		{5, 1, nil, "[]"},
	}
	for _, s := range steps {
		removed, err := ob.Ack(s.ack)
		if !errors.Is(err, s.wantErr) || removed != s.wantRemoved {
			t.Fatalf("Ack(%d) = %d, %v; want %d, %v", s.ack, removed, err, s.wantRemoved, s.wantErr)
		}
		evs, err := ob.Pending(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(prototest.Seqs(evs)); got != s.wantLeft {
			t.Fatalf("after Ack(%d) left %s, want %s", s.ack, got, s.wantLeft)
		}
		if n, err := ob.Depth(); err != nil || n != len(evs) {
			t.Fatalf("after Ack(%d) Depth = %d, %v; want %d", s.ack, n, err, len(evs))
		}
	}
}

func TestOutboxSequenceSurvivesEmptyingAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	ob, err := tsync.OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	prototest.AppendN(t, ob, 1, 3)
	if _, err := ob.Ack(3); err != nil {
		t.Fatal(err)
	}
	if n, _ := ob.Depth(); n != 0 {
		t.Fatalf("Depth = %d after acking everything", n)
	}
	if ev := prototest.AppendN(t, ob, 4, 1)[0]; ev.Seq != 4 {
		t.Fatalf("Append after emptying got seq %d, want 4", ev.Seq)
	}
	if _, err := ob.Ack(4); err != nil {
		t.Fatal(err)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}

	ob = openOutbox(t, path)
	if s, err := ob.LastSeq(); err != nil || s != 4 {
		t.Fatalf("LastSeq after reopen = %d, %v; want 4", s, err)
	}
	if ev := prototest.AppendN(t, ob, 5, 1)[0]; ev.Seq != 5 {
		t.Fatalf("Append after reopen got seq %d, want 5", ev.Seq)
	}
}

func TestOutboxDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	ob, err := tsync.OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	stored := prototest.AppendN(t, ob, 1, 10)
	if _, err := ob.Ack(4); err != nil {
		t.Fatal(err)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}

	ob = openOutbox(t, path)
	got, err := ob.Pending(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := prototest.DiffEvents(got, stored[4:]); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
}

func TestOutboxRefusesInvalidEvent(t *testing.T) {
	tests := []struct {
		name string
		edit func(ev *proto.Event)
	}{
		{"no type", func(ev *proto.Event) { ev.Type = "" }},
		{"no time", func(ev *proto.Event) { ev.Time = time.Time{} }},
		{"negative decision time", func(ev *proto.Event) { ev.DecisionUS = -1 }},
		{"long type", func(ev *proto.Event) { ev.Type = strings.Repeat("t", proto.MaxTypeLen+1) }},
		{"long door", func(ev *proto.Event) { ev.Door = strings.Repeat("d", proto.MaxDoorLen+1) }},
		{"long reason", func(ev *proto.Event) { ev.Reason = strings.Repeat("r", proto.MaxReasonLen+1) }},
		{"long credential", func(ev *proto.Event) { ev.Credential = strings.Repeat("0", proto.MaxCredentialLen+1) }},
		{"long token", func(ev *proto.Event) { ev.Token = strings.Repeat("k", proto.MaxTokenLen+1) }},
		{"year 10000", func(ev *proto.Event) { ev.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"door too long once made valid UTF-8", func(ev *proto.Event) { ev.Door = strings.Repeat("\xffa", proto.MaxDoorLen/2) }},
	}
	ob := newOutbox(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := prototest.Event(1)
			tt.edit(&ev)
			if _, err := ob.Append(ev); !errors.Is(err, proto.ErrInvalidEvent) {
				t.Fatalf("Append = %v, want ErrInvalidEvent", err)
			}
			if s, _ := ob.LastSeq(); s != 0 {
				t.Fatalf("a refused event used seq %d", s)
			}
		})
	}
}

func TestOutboxNormalizesEvent(t *testing.T) {
	tests := []struct {
		name       string
		detail     string
		wantDetail string
	}{
		{"short", "relay did not answer", "relay did not answer"},
		{"long ASCII cut", strings.Repeat("x", proto.MaxDetailLen+10), strings.Repeat("x", proto.MaxDetailLen)},
		{"long cut at a character boundary", "x" + strings.Repeat("é", proto.MaxDetailLen), "x" + strings.Repeat("é", (proto.MaxDetailLen-1)/2)},
		{"invalid UTF-8 replaced", "bad \xff byte", "bad \uFFFD byte"},
	}
	ob := newOutbox(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := prototest.Event(1)
			ev.Detail = tt.detail
			got, err := ob.Append(ev)
			if err != nil {
				t.Fatal(err)
			}
			if got.Detail != tt.wantDetail {
				t.Fatalf("stored detail %q (%d bytes), want %q (%d bytes)", got.Detail, len(got.Detail), tt.wantDetail, len(tt.wantDetail))
			}
			// What the edge stores, HQ accepts unchanged.
			p, err := json.Marshal(proto.Batch{Site: "s1", Device: "d1", Events: []proto.Event{got}})
			if err != nil {
				t.Fatal(err)
			}
			b, err := proto.DecodeBatch(p)
			if err != nil {
				t.Fatalf("HQ would reject the stored event: %v", err)
			}
			if d := prototest.DiffEvents(b.Events, []proto.Event{got}); d != "" {
				t.Fatalf("HQ would see another event: %s", d)
			}
		})
	}
}

func TestOpenOutboxBadFile(t *testing.T) {
	tests := []struct {
		name    string
		make    func(t *testing.T, path string)
		wantErr error // nil: any error
	}{
		{"garbage", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("not a bbolt file "), 1000), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"other bbolt data", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("snapshot")); return err }); err != nil {
				t.Fatal(err)
			}
		}, tsync.ErrBadFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			tt.make(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ob, err := tsync.OpenOutbox(path)
			if err == nil {
				ob.Close()
				t.Fatal("OpenOutbox accepted a file that is not an outbox")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("err = %q does not name the file", err)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("OpenOutbox changed the file it refused")
			}
		})
	}
}
