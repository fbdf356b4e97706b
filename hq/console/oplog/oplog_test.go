package oplog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/hq/console/oplog"
	"github.com/tobira-ac/tobira/hq/pgstore/pgstoretest"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/sync/proto"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend is one oplog.Store.
type backend struct {
	name string
	// open returns n stores on one new, empty store: for bbolt the same
	// file opened again (a restart), for PostgreSQL n connection pools on
	// one database (replicas).
	open func(t *testing.T, n int) []oplog.Store
}

var backends = []backend{
	{"memory", func(_ *testing.T, n int) []oplog.Store {
		return slices.Repeat([]oplog.Store{oplog.NewMemory()}, n)
	}},
	{"bbolt", func(t *testing.T, n int) []oplog.Store {
		db, err := bolt.Open(filepath.Join(t.TempDir(), "console.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var out []oplog.Store
		for range n {
			st, err := oplog.Open(db, []byte("test-format"))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, st)
		}
		return out
	}},
	{"postgres", func(t *testing.T, n int) []oplog.Store {
		var out []oplog.Store
		for _, st := range pgstoretest.Replicas(t, n) {
			out = append(out, st.ConsoleOps())
		}
		return out
	}},
}

// pub returns publication i, at t0 plus i minutes.
func pub(i int) oplog.Op {
	return oplog.Op{ID: fmt.Sprintf("p%03d", i), Kind: oplog.Publication, Site: "tokyo", Group: "lobby", By: "admin",
		At: t0.Add(time.Duration(i) * time.Minute), Snapshot: "delta",
		Manifests: []proto.Manifest{{Transfer: fmt.Sprintf("t%03d", i), Site: "tokyo", Group: "lobby", Version: uint64(i), ContentHash: "aa"}}}
}

// ids returns the IDs of ops.
func ids(ops []oplog.Op) []string {
	var out []string
	for _, op := range ops {
		out = append(out, op.ID)
	}
	return out
}

// TestSharedAndKept: an operation added through one store is read whole
// through another on the same data (a replica, a restart); the lists are
// newest first, per kind, without the manifests and offers.
func TestSharedAndKept(t *testing.T) {
	ro := oplog.Op{ID: "r1", Kind: oplog.Rollout, Site: "osaka", Group: "gates", By: "ops", At: t0.Add(90 * time.Second),
		Version: "2.0.0", Offers: []string{"o1", "o2"}}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			st := b.open(t, 2)
			for _, op := range []oplog.Op{pub(1), ro, pub(2), pub(0)} {
				if err := st[0].Add(ctx, op); err != nil {
					t.Fatal(err)
				}
			}
			got, ok, err := st[1].Get(ctx, "p001")
			if err != nil || !ok || !got.At.Equal(t0.Add(time.Minute)) || len(got.Manifests) != 1 || got.Manifests[0].Transfer != "t001" ||
				got.Site != "tokyo" || got.Group != "lobby" || got.Snapshot != "delta" || got.By != "admin" {
				t.Fatalf("Get p001 on the other = %+v %v %v", got, ok, err)
			}
			if got, ok, err := st[1].Get(ctx, "r1"); err != nil || !ok || !slices.Equal(got.Offers, ro.Offers) || got.Version != "2.0.0" {
				t.Fatalf("Get r1 on the other = %+v %v %v", got, ok, err)
			}
			if _, ok, err := st[1].Get(ctx, "nope"); ok || err != nil {
				t.Fatalf("Get nope = %v %v", ok, err)
			}
			tests := []struct {
				kind oplog.Kind
				n    int
				want []string
			}{
				{oplog.Publication, 10, []string{"p002", "p001", "p000"}},
				{oplog.Publication, 2, []string{"p002", "p001"}},
				{oplog.Rollout, 10, []string{"r1"}},
			}
			for _, tt := range tests {
				rec, err := st[1].Recent(ctx, tt.kind, tt.n)
				if err != nil || !slices.Equal(ids(rec), tt.want) {
					t.Fatalf("Recent(%s, %d) = %v %v, want %v", tt.kind, tt.n, ids(rec), err, tt.want)
				}
				for _, op := range rec {
					if op.Manifests != nil || op.Offers != nil || op.Site == "" || op.By == "" || op.At.IsZero() {
						t.Errorf("Recent(%s) lists %+v", tt.kind, op)
					}
				}
			}
		})
	}
}

// TestKeep: a store keeps the newest oplog.Keep operations of a kind;
// the other kind's are not counted against them.
func TestKeep(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			st := b.open(t, 1)[0]
			if err := st.Add(ctx, oplog.Op{ID: "r-old", Kind: oplog.Rollout, Site: "s", By: "a", At: t0.Add(-time.Hour), Version: "1"}); err != nil {
				t.Fatal(err)
			}
			for i := range oplog.Keep + 3 {
				if err := st.Add(ctx, pub(i)); err != nil {
					t.Fatal(err)
				}
			}
			rec, err := st.Recent(ctx, oplog.Publication, oplog.Keep+10)
			if err != nil || len(rec) != oplog.Keep || rec[0].ID != pub(oplog.Keep+2).ID || rec[len(rec)-1].ID != "p003" {
				t.Fatalf("Recent = %d ops (%v), want %d from %s to p003", len(rec), err, oplog.Keep, pub(oplog.Keep+2).ID)
			}
			if _, ok, err := st.Get(ctx, "p002"); ok || err != nil {
				t.Errorf("p002 is kept (%v), want deleted", err)
			}
			if _, ok, err := st.Get(ctx, "r-old"); !ok || err != nil {
				t.Errorf("the rollout was deleted by the publications (%v)", err)
			}
		})
	}
}
