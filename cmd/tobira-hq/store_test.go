package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// runHQ runs a tobira-hq command line and returns its output.
func runHQ(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(t.Context(), append(args, "--config", ""), &out, &out)
	return out.String(), err
}

// TestMigrateStore: serve refuses a database without the schema, migrate
// applies it, and migrate-store copies a bbolt HQ (events with a gap,
// status-less devices, results) into PostgreSQL, twice without doubling.
func TestMigrateStore(t *testing.T) {
	url := pgtest.DB(t)
	if out, err := runHQ(t, "serve", "--store-url", url, "--broker", "tcp://127.0.0.1:1"); err == nil || !strings.Contains(out+err.Error(), "tobira-hq migrate") {
		t.Fatalf("serve on an empty database = %v\n%s\nwant an error naming tobira-hq migrate", err, out)
	}
	if out, err := runHQ(t, "migrate", "--store-url", url); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}

	db := filepath.Join(t.TempDir(), "hq.db")
	h, err := hq.Open(hq.Config{Path: db})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []struct {
		device      string
		first, last int
	}{{"d1", 1, 7000}, {"d2", 1, 3}, {"d2", 5, 6}} {
		for first := in.first; first <= in.last; first += 1000 {
			payload := prototest.BatchPayload(t, "s1", in.device, first, min(first+999, in.last))
			if _, err := h.Ingest(proto.EventsTopic("s1", in.device), payload); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		out, err := runHQ(t, "migrate-store", "--db", db, "--store-url", url)
		if err != nil {
			t.Fatalf("migrate-store run %d: %v\n%s", i+1, err, out)
		}
		want := []string{"copied 7005 events (new 7005)", "copied 7005 events (new 0)"}[i]
		if !strings.Contains(out, want) {
			t.Fatalf("migrate-store run %d said %q, want %q", i+1, out, want)
		}
	}
	pg, err := pgstore.Open(context.Background(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	for _, dev := range []struct {
		name string
		ack  uint64
		n    int
	}{{"d1", 7000, 7000}, {"d2", 3, 5}} {
		evs, err := pg.Events(t.Context(), "s1", dev.name)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := pg.Acked(t.Context(), "s1", dev.name)
		if err != nil || ack != dev.ack || len(evs) != dev.n {
			t.Fatalf("%s in PostgreSQL: ack %d, %d events, %v; want %d, %d", dev.name, ack, len(evs), err, dev.ack, dev.n)
		}
		if dev.name == "d2" && fmt.Sprint(prototest.Seqs(evs)) != "[1 2 3 5 6]" {
			t.Fatalf("d2 holds %v, want [1 2 3 5 6]", prototest.Seqs(evs))
		}
	}
}

// TestMigrateStoreCopiesRegistry: migrate-store copies the registry file
// into PostgreSQL (a second run copies nothing), the full snapshots
// written from both are equal byte for byte, and the admin commands then
// work on PostgreSQL, going on from the copied revision.
func TestMigrateStoreCopiesRegistry(t *testing.T) {
	url := pgtest.DB(t)
	if out, err := runHQ(t, "migrate", "--store-url", url); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.db")
	for _, table := range registry.Tables {
		csv := filepath.Join("..", "..", "hq", "registry", "testdata", table+".csv")
		if out, err := runHQ(t, "import", table, "--site", "venue", "--csv", csv, "--registry", reg); err != nil {
			t.Fatalf("import %s: %v\n%s", table, err, out)
		}
	}
	for i, want := range []string{"copied registry " + reg + ": 1 sites (0 there already)", ": 0 sites (1 there already), 0 records, 0 pending"} {
		out, err := runHQ(t, "migrate-store", "--db", filepath.Join(dir, "hq.db"), "--registry", reg, "--store-url", url)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("migrate-store run %d = %v\n%s\nwant %q", i+1, err, out, want)
		}
	}
	full := func(r *registry.Registry) []byte {
		var b bytes.Buffer
		if _, err := r.WriteFull(t.Context(), "venue", &b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	src, err := registry.Open(reg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := full(src)
	src.Close()
	dst, err := pgstore.OpenRegistry(t.Context(), url, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if got := full(dst); !bytes.Equal(got, want) {
		t.Fatalf("full snapshot from PostgreSQL (%d bytes) differs from the bbolt one (%d bytes)", len(got), len(want))
	}
	csv := filepath.Join(dir, "more.csv")
	if err := os.WriteFile(csv, []byte("person\np-new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantRev := fmt.Sprintf("revision %d", len(registry.Tables)+1)
	if out, err := runHQ(t, "import", "people", "--site", "venue", "--csv", csv, "--store-url", url); err != nil || !strings.Contains(out, wantRev) {
		t.Fatalf("import into PostgreSQL = %v\n%s\nwant %s", err, out, wantRev)
	}
	if out, err := runHQ(t, "enroll", "list", "--store-url", url); err != nil || !strings.Contains(out, "ID") {
		t.Fatalf("enroll list on PostgreSQL = %v\n%s", err, out)
	}
}
