package hq_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// markBackend is one MarkStore implementation: open returns n stores
// sharing one new, empty store (for bbolt the same store n times; for
// PostgreSQL n stores on separate connection pools, like replicas).
type markBackend struct {
	name string
	open func(t testing.TB, n int) []hq.MarkStore
}

// markBackends are bbolt and PostgreSQL (skipped without it unless
// CI=true).
var markBackends = []markBackend{
	{name: "bbolt", open: func(t testing.TB, n int) []hq.MarkStore {
		s, err := hq.OpenBoltMarks(filepath.Join(t.TempDir(), "hq-marks.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out := make([]hq.MarkStore, n)
		for i := range out {
			out[i] = s
		}
		return out
	}},
	{name: "postgres", open: func(t testing.TB, n int) []hq.MarkStore {
		url := pgtest.DB(t)
		if _, err := pgstore.Migrate(t.Context(), url); err != nil {
			t.Fatal(err)
		}
		out := make([]hq.MarkStore, n)
		for i := range out {
			st, err := pgstore.Open(context.Background(), url, pgstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			out[i] = st.Marks()
		}
		return out
	}},
}

// eachMarkBackend runs fn as a subtest per MarkStore implementation.
func eachMarkBackend(t *testing.T, fn func(t *testing.T, open func(t testing.TB, n int) []hq.MarkStore)) {
	for _, b := range markBackends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open) })
	}
}

var markT0 = time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC)

// entry returns an entry mark of ticket at door, i nanoseconds after
// markT0 (nanoseconds: the stores must keep them).
func entry(ticket string, door string, i int) proto.Mark {
	return proto.Mark{Ticket: []byte(ticket), Event: "ev1", State: proto.MarkIn, At: markT0.Add(time.Duration(i)), Door: door}
}

// exit is entry's exit mark.
func exit(ticket string, door string, i int) proto.Mark {
	m := entry(ticket, door, i)
	m.State = proto.MarkOut
	return m
}

// accept accepts every mark.
func accept([]proto.Mark, proto.Mark) hq.MarkVerdict { return hq.MarkVerdict{} }

// record calls Record and fails the test on an error.
func record(t *testing.T, s hq.MarkStore, device string, judge hq.MarkJudge, marks ...proto.Mark) hq.Recorded {
	t.Helper()
	res, err := s.Record(t.Context(), "s1", device, marks, judge)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// seqs returns the marks' sequence numbers.
func seqs(ms []proto.Mark) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func TestMarkStoreRecord(t *testing.T) {
	eachMarkBackend(t, func(t *testing.T, open func(testing.TB, int) []hq.MarkStore) {
		s := open(t, 1)[0]
		res := record(t, s, "g1", accept, entry("t1", "d1", 1), entry("t2", "d1", 2), exit("t1", "d1", 3))
		if got := seqs(res.Stored); !slices.Equal(got, []uint64{1, 2, 3}) || res.Head != 3 || res.Duplicates != 0 {
			t.Fatalf("first batch: stored %v head %d dups %d, want 1..3, 3, 0", got, res.Head, res.Duplicates)
		}
		// The same batch again (the gate did not see the ack) stores nothing.
		res = record(t, s, "g1", accept, entry("t1", "d1", 1), entry("t2", "d1", 2), exit("t1", "d1", 3))
		if len(res.Stored) != 0 || res.Duplicates != 3 || res.Head != 3 {
			t.Fatalf("resent batch: stored %v dups %d head %d, want none, 3, 3", seqs(res.Stored), res.Duplicates, res.Head)
		}
		record(t, s, "g2", accept, entry("t3", "d2", 4))
		tests := []struct {
			after      uint64
			limit      int
			want       []uint64
			wantDevice string
		}{
			{after: 0, limit: 10, want: []uint64{1, 2, 3, 4}, wantDevice: "g1"},
			{after: 1, limit: 2, want: []uint64{2, 3}, wantDevice: "g1"},
			{after: 3, limit: 10, want: []uint64{4}, wantDevice: "g2"},
			{after: 4, limit: 10, want: []uint64{}},
			{after: 9, limit: 10, want: []uint64{}},
		}
		for _, tt := range tests {
			ms, head, err := s.After(t.Context(), "s1", tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(ms); !slices.Equal(got, tt.want) || head != 4 {
				t.Errorf("After(%d, %d) = %v head %d, want %v head 4", tt.after, tt.limit, got, head, tt.want)
			}
			if len(ms) > 0 && ms[0].Device != tt.wantDevice {
				t.Errorf("After(%d): device %q, want %q", tt.after, ms[0].Device, tt.wantDevice)
			}
			if len(ms) > 0 && tt.after == 0 && !ms[0].At.Equal(markT0.Add(1)) {
				t.Errorf("After(0): first mark at %v, want %v (nanoseconds kept)", ms[0].At, markT0.Add(1))
			}
		}
		if ms, head, err := s.After(t.Context(), "other", 0, 10); err != nil || len(ms) != 0 || head != 0 {
			t.Errorf("After of an unknown site = %v, %d, %v; want nothing, 0", ms, head, err)
		}
	})
}

func TestMarkStoreJudgment(t *testing.T) {
	eachMarkBackend(t, func(t *testing.T, open func(testing.TB, int) []hq.MarkStore) {
		s := open(t, 1)[0]
		var seen [][]proto.Mark
		// judge refuses door "bad", refuses "quiet" silently, flags an
		// entry after an entry as a conflict, and records each history.
		judge := func(hist []proto.Mark, m proto.Mark) hq.MarkVerdict {
			seen = append(seen, slices.Clone(hist))
			switch {
			case m.Door == "bad":
				return hq.MarkVerdict{Refused: "bad door"}
			case m.Door == "quiet":
				return hq.MarkVerdict{Refused: "used", Silent: true}
			case len(hist) > 0 && hist[len(hist)-1].State == proto.MarkIn && m.State == proto.MarkIn:
				return hq.MarkVerdict{Conflict: &hist[len(hist)-1]}
			}
			return hq.MarkVerdict{}
		}
		res := record(t, s, "g1", judge, entry("t1", "d1", 1), entry("t1", "bad", 2), entry("t1", "quiet", 3), entry("t1", "d2", 4))
		if got := seqs(res.Stored); !slices.Equal(got, []uint64{1, 2}) {
			t.Fatalf("stored %v, want [1 2]", got)
		}
		// The batch's fourth mark saw the first in its history.
		if len(seen) != 4 || len(seen[3]) != 1 || seen[3][0].Seq != 1 {
			t.Fatalf("histories judged = %v, want the 4th to hold mark 1", seen)
		}
		want := []struct{ kind, reason, door string }{
			{hq.ReportRefused, "bad door", "bad"},
			{hq.ReportConflict, "single-entry ticket admitted at two gates", "d2"},
		}
		reps, err := s.Reports(t.Context(), "s1")
		if err != nil {
			t.Fatal(err)
		}
		if len(reps) != len(want) || len(res.Reports) != len(want) {
			t.Fatalf("reports %+v (returned %d), want %d", reps, len(res.Reports), len(want))
		}
		for i, w := range want {
			r := reps[i]
			if r.Kind != w.kind || r.Reason != w.reason || r.Mark.Door != w.door || r.Device != "g1" {
				t.Errorf("report %d = %+v, want %+v", i, r, w)
			}
		}
		if reps[1].Other == nil || reps[1].Other.Seq != 1 {
			t.Errorf("conflict's other = %+v, want mark 1", reps[1].Other)
		}
		// A later batch sees the history by At, whatever order it came in.
		seen = nil
		record(t, s, "g2", judge, entry("t1", "d3", 0))
		if len(seen) != 1 || !slices.Equal(seqs(seen[0]), []uint64{1, 2}) {
			t.Errorf("history of t1 = %v, want marks 1, 2", seen)
		}
	})
}

// single admits an entry of a ticket only when its history holds none.
func single(hist []proto.Mark, _ proto.Mark) hq.MarkVerdict {
	if len(hist) > 0 {
		return hq.MarkVerdict{Refused: "used", Silent: true}
	}
	return hq.MarkVerdict{}
}

// TestMarkStoreConcurrent records from several goroutines on two stores
// (for PostgreSQL, two connection pools: two replicas) at once: the site's
// sequence numbers are exactly 1..N, and of the entries of one ticket
// tried everywhere at once exactly one is admitted.
func TestMarkStoreConcurrent(t *testing.T) {
	eachMarkBackend(t, func(t *testing.T, open func(testing.TB, int) []hq.MarkStore) {
		stores := open(t, 2)
		const workers, batches, per = 8, 10, 3
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		admitted := make(chan uint64, workers*batches)
		for w := range workers {
			wg.Go(func() {
				s := stores[w%2]
				for b := range batches {
					var ms []proto.Mark
					for i := range per {
						ms = append(ms, entry(fmt.Sprintf("w%d-b%d-%d", w, b, i), "d1", i))
					}
					if _, err := s.Record(context.Background(), "s1", fmt.Sprintf("g%d", w), ms, accept); err != nil {
						errs <- err
						return
					}
					// Every worker tries the shared ticket of this round.
					res, err := s.Record(context.Background(), "s1", fmt.Sprintf("g%d", w),
						[]proto.Mark{entry(fmt.Sprintf("shared-%d", b), fmt.Sprintf("door-%d", w), w)}, single)
					if err != nil {
						errs <- err
						return
					}
					for range res.Stored {
						admitted <- uint64(b)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		close(admitted)
		for err := range errs {
			t.Fatal(err)
		}
		perRound := map[uint64]int{}
		for b := range admitted {
			perRound[b]++
		}
		for b := range uint64(batches) {
			if perRound[b] != 1 {
				t.Errorf("shared ticket of round %d admitted %d times, want once", b, perRound[b])
			}
		}
		n := workers*batches*per + batches
		ms, head, err := stores[1].After(t.Context(), "s1", 0, 2*n)
		if err != nil {
			t.Fatal(err)
		}
		if head != uint64(n) || len(ms) != n {
			t.Fatalf("head %d, %d marks; want %d", head, len(ms), n)
		}
		for i, m := range ms {
			if m.Seq != uint64(i+1) {
				t.Fatalf("mark %d has seq %d: want 1..%d without a gap or repeat", i, m.Seq, n)
			}
		}
	})
}

// BenchmarkMarkStoreRecord records one entry per Record call (one tap at a
// gate), each on a new ticket, on each backend.
func BenchmarkMarkStoreRecord(b *testing.B) {
	for _, mb := range markBackends {
		b.Run(mb.name, func(b *testing.B) {
			s := mb.open(b, 1)[0]
			i := 0
			for b.Loop() {
				i++
				if _, err := s.Record(context.Background(), "s1", "g1", []proto.Mark{entry(fmt.Sprint("t", i), "d1", i)}, accept); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
