package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend is one place to keep the audit log in.
type backend struct {
	name string
	// open returns n logs on one new, empty chain (for PostgreSQL on n
	// connection pools, like replicas) and a function that changes the
	// actor of entry seq behind the log's back.
	open func(t *testing.T, n int) ([]*audit.Log, func(seq uint64, actor string))
}

var backends = []backend{
	{"bbolt", func(t *testing.T, n int) ([]*audit.Log, func(uint64, string)) {
		db, err := bolt.Open(filepath.Join(t.TempDir(), "console.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		logs := make([]*audit.Log, n)
		for i := range logs {
			if logs[i], err = audit.New(db, []byte("test/1"), nil); err != nil {
				t.Fatal(err)
			}
		}
		return logs, func(seq uint64, actor string) {
			if err := audit.TamperActor(db, seq, actor); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{"postgres", func(t *testing.T, n int) ([]*audit.Log, func(uint64, string)) {
		url := pgtest.DB(t)
		if _, err := pgstore.Migrate(t.Context(), url); err != nil {
			t.Fatal(err)
		}
		logs := make([]*audit.Log, n)
		for i := range logs {
			st, err := pgstore.Open(context.Background(), url, pgstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			logs[i] = audit.NewLog(st.AuditChain(), nil)
		}
		return logs, func(seq uint64, actor string) {
			conn, err := pgx.Connect(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(t.Context(), `UPDATE audit_log SET entry = jsonb_set(entry, '{actor}', to_jsonb($2::text)) WHERE seq = $1`, int64(seq), actor); err != nil {
				t.Fatal(err)
			}
		}
	}},
}

// TestBackends appends, pages, verifies and detects an edit on each
// backend.
func TestBackends(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			logs, tamper := b.open(t, 1)
			l := logs[0]
			at := time.Date(2026, 4, 1, 9, 0, 0, 123456789, time.UTC)
			for i, e := range []audit.Entry{
				{Actor: "alice", Action: "login", Addr: "192.0.2.1", Time: at},
				{Actor: "alice", Action: "command", Target: "tokyo/gate-1", After: "=lockdown"},
				{Actor: "alice", Action: "logout"},
			} {
				got, err := l.Append(e)
				if err != nil || got.Seq != uint64(i+1) {
					t.Fatalf("append %d = %+v, %v", i, got, err)
				}
			}
			tests := []struct {
				before uint64
				limit  int
				want   []uint64
			}{
				{0, 2, []uint64{3, 2}},
				{2, 10, []uint64{1}},
				{1, 10, nil},
				{99, 1, []uint64{3}},
			}
			for _, tt := range tests {
				page, err := l.Page(tt.before, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				var got []uint64
				for _, e := range page {
					got = append(got, e.Seq)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("Page(%d, %d) = %v, want %v", tt.before, tt.limit, got, tt.want)
				}
			}
			if first, err := l.Page(2, 1); err != nil || len(first) != 1 || !first[0].Time.Equal(at) {
				t.Errorf("entry 1 = %+v, %v; want its time %v kept to the nanosecond", first, err, at)
			}
			n, head, err := l.Verify()
			if err != nil || n != 3 || len(head) != 64 {
				t.Fatalf("Verify = %d, %q, %v; want 3 entries", n, head, err)
			}
			tamper(2, "mallory")
			if _, _, err := l.Verify(); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "entry 2 does not match its hash") {
				t.Fatalf("Verify after an edit = %v, want ErrTampered naming entry 2", err)
			}
		})
	}
}

// TestTwoWriters appends from two logs on one chain (for PostgreSQL two
// connection pools: two replicas) at once: the chain stays one chain.
func TestTwoWriters(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			logs, _ := b.open(t, 2)
			const writers, each = 4, 25
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						if _, err := logs[w%2].Append(audit.Entry{Actor: fmt.Sprint("w", w), Action: fmt.Sprint("a", i)}); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for i, l := range logs {
				if n, _, err := l.Verify(); err != nil || n != writers*each {
					t.Fatalf("log %d: Verify = %d, %v; want one chain of %d", i, n, err, writers*each)
				}
			}
		})
	}
}
