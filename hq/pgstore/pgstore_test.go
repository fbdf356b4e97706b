package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// migrated returns the URL of a fresh, migrated database.
func migrated(t *testing.T) string {
	t.Helper()
	url := pgtest.DB(t)
	if _, err := pgstore.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	return url
}

// open opens a Store on url.
func open(t *testing.T, url string, opt pgstore.Options) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), url, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// batch returns events first..last of s1/d1 received at at.
func batch(t *testing.T, first, last int, at time.Time) hq.EventBatch {
	t.Helper()
	var evs []proto.Event
	for i := first; i <= last; i++ {
		ev := prototest.Event(i)
		ev.Seq = uint64(i)
		evs = append(evs, ev)
	}
	b, err := hq.NewEventBatch("s1", "d1", at, evs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ingest stores b and returns its result.
func ingest(t *testing.T, s *pgstore.Store, b hq.EventBatch) hq.BatchResult {
	t.Helper()
	res, err := s.StoreEvents(t.Context(), []hq.EventBatch{b})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// check asserts the count, ack point and stored seqs.
func check(t *testing.T, s *pgstore.Store, count int, ack uint64, seqs string) {
	t.Helper()
	n, err := s.Count(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Acked(t.Context(), "s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(t.Context(), "s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(prototest.Seqs(evs)); n != count || a != ack || got != seqs {
		t.Fatalf("count %d, ack %d, seqs %s; want %d, %d, %s", n, a, got, count, ack, seqs)
	}
}

var day1 = time.Date(2026, 3, 31, 23, 0, 0, 0, time.UTC)

// Dedup holds across partitions, for events below the ack point and for
// events held beyond a gap, with daily and monthly partitions.
func TestDedupAcrossPartitions(t *testing.T) {
	for _, p := range []pgstore.Partitioning{pgstore.Daily, pgstore.Monthly} {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			s := open(t, migrated(t), pgstore.Options{Partition: p})
			day2 := day1.Add(2 * time.Hour) // the next day and month
			steps := []struct {
				b    hq.EventBatch
				ack  uint64
				dups int
			}{
				{batch(t, 1, 3, day1), 3, 0},
				{batch(t, 6, 7, day1), 3, 0}, // held beyond a gap
				{batch(t, 1, 3, day2), 3, 3}, // re-sent in the next partition
				{batch(t, 5, 7, day2), 3, 2}, // 6, 7 held in the previous one
				{batch(t, 4, 4, day2), 7, 0}, // gap filled across partitions
				{batch(t, 2, 7, day2), 7, 6},
			}
			for i, st := range steps {
				r := ingest(t, s, st.b)
				if r.Ack != st.ack || r.Dups != st.dups {
					t.Fatalf("step %d: ack %d, dups %d; want %d, %d", i, r.Ack, r.Dups, st.ack, st.dups)
				}
			}
			check(t, s, 7, 7, "[1 2 3 4 5 6 7]")
		})
	}
}

// Retention drops whole old partitions; a re-sent old batch is still
// known (acked, not stored again).
func TestRetentionKeepsDedup(t *testing.T) {
	clk := clocktest.New(day1)
	url := migrated(t)
	s := open(t, url, pgstore.Options{Retention: 48 * time.Hour, Clock: clk})
	ingest(t, s, batch(t, 1, 3, day1))
	ingest(t, s, batch(t, 5, 5, day1.Add(2*time.Hour)))
	check(t, s, 4, 3, "[1 2 3 5]")

	clk.Advance(72 * time.Hour) // day1's partition ended 49h ago, day2's 25h ago
	dropped, err := s.DropExpired(t.Context())
	if err != nil || fmt.Sprint(dropped) != "[events_d20260331]" {
		t.Fatalf("DropExpired = %v, %v; want [events_d20260331]", dropped, err)
	}
	check(t, s, 1, 3, "[5]")
	if r := ingest(t, s, batch(t, 1, 4, clk.Now())); r.Ack != 5 || r.Dups != 3 || len(r.Added) != 1 {
		t.Fatalf("re-sent old batch: ack %d, dups %d, added %d; want 5, 3, 1", r.Ack, r.Dups, len(r.Added))
	}
	check(t, s, 2, 5, "[4 5]")
	// Ingest makes the next partitions and drops the expired on its own.
	clk.Advance(72 * time.Hour)
	ingest(t, s, batch(t, 6, 6, clk.Now()))
	check(t, s, 1, 6, "[6]")
}

// A connection killed between the COPY and the commit leaves nothing:
// no event, no ack point; the same batch again is stored whole.
func TestKillBeforeCommitStoresNothing(t *testing.T) {
	url := migrated(t)
	s := open(t, url, pgstore.Options{})
	ingest(t, s, batch(t, 1, 2, day1))
	s.SetAfterCopy(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
		return err
	})
	if _, err := s.StoreEvents(t.Context(), []hq.EventBatch{batch(t, 3, 9, day1)}); err == nil {
		t.Fatal("StoreEvents succeeded on a killed connection")
	}
	s.SetAfterCopy(nil)
	s2 := open(t, url, pgstore.Options{}) // as after a restart
	check(t, s2, 2, 2, "[1 2]")
	if r := ingest(t, s2, batch(t, 3, 9, day1)); r.Ack != 9 || len(r.Added) != 7 {
		t.Fatalf("after the kill: ack %d, added %d; want 9, 7", r.Ack, len(r.Added))
	}
	check(t, s, 9, 9, "[1 2 3 4 5 6 7 8 9]")
}

// Open refuses a database without the schema, naming the fix.
func TestOpenRefusesOldSchema(t *testing.T) {
	url := pgtest.DB(t)
	if _, err := pgstore.Open(t.Context(), url, pgstore.Options{}); !errors.Is(err, pgstore.ErrSchemaBehind) {
		t.Fatalf("Open on an empty database = %v, want ErrSchemaBehind", err)
	}
	for range 2 { // the second run applies nothing
		if _, err := pgstore.Migrate(t.Context(), url); err != nil {
			t.Fatal(err)
		}
	}
	open(t, url, pgstore.Options{})
}

// Status: an offline will keeps the last facts; results by ID.
func TestDeviceStore(t *testing.T) {
	s := open(t, migrated(t), pgstore.Options{})
	ctx := t.Context()
	st := proto.Status{Online: true, Version: "1.2", OutboxDepth: 4}
	if err := s.PutStatus(ctx, "s1", "d2", st, day1); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatus(ctx, "s1", "d2", proto.Status{}, day1.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ingest(t, s, batch(t, 1, 2, day1))
	devs, err := s.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%+v", devs)
	want := fmt.Sprintf("%+v", []hq.DeviceRecord{{Site: "s1", Device: "d1", Acked: 2},
		{Site: "s1", Device: "d2", Status: proto.Status{Version: "1.2", OutboxDepth: 4}, Seen: day1.Add(time.Minute)}})
	if got != want {
		t.Fatalf("Devices = %s\nwant %s", got, want)
	}
	r := proto.Result{ID: "x1", Kind: "command", Site: "s1", Device: "d1", Status: "ok", Time: day1}
	if err := s.PutResult(ctx, r, day1); err != nil {
		t.Fatal(err)
	}
	if g, ok, err := s.Result(ctx, "x1"); err != nil || !ok || g != r {
		t.Fatalf("Result = %+v, %v, %v; want %+v", g, ok, err, r)
	}
	if _, ok, err := s.Result(ctx, "nope"); err != nil || ok {
		t.Fatalf("Result of an unknown ID = %v, %v; want false", ok, err)
	}
}
