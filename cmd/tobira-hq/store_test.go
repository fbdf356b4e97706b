package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/oplog"
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
// status-less devices, results) and its spool (snapshot transfers, a
// lockdown in force, a release offer) into PostgreSQL, twice without
// doubling.
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
	spool, want := spoolToMigrate(t)
	for i := range 2 {
		out, err := runHQ(t, "migrate-store", "--db", db, "--store-url", url, "--spool", spool.dir)
		if err != nil {
			t.Fatalf("migrate-store run %d: %v\n%s", i+1, err, out)
		}
		for _, want := range [][]string{
			{"copied 7005 events (new 7005)", "copied spool " + spool.dir + ": 2 snapshot transfers (new 2), the latest of 1 devices and groups, the commands in force of 1 devices (new 1), 1 release offers (new 1)"},
			{"copied 7005 events (new 0)", "copied spool " + spool.dir + ": 2 snapshot transfers (new 0), the latest of 1 devices and groups, the commands in force of 1 devices (new 0), 1 release offers (new 0)"},
		}[i] {
			if !strings.Contains(out, want) {
				t.Fatalf("migrate-store run %d said %q, want %q", i+1, out, want)
			}
		}
	}
	if out, err := runHQ(t, "migrate-store", "--db", db, "--store-url", url, "--spool", spool.dir+"-typo"); err == nil || !strings.Contains(err.Error(), spool.dir+"-typo") {
		t.Fatalf("migrate-store of a missing spool = %v\n%s\nwant an error naming it", err, out)
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
	if got := spool.reads(t, pg.Spool()); got != want {
		t.Fatalf("the spool in PostgreSQL answers %s\nthe directory %s", got, want)
	}
}

// migratedSpool is a spool directory for migrate-store to copy.
type migratedSpool struct {
	dir      string
	transfer string // the latest transfer to s1/d1
}

// spoolToMigrate returns a spool directory holding two snapshot transfers
// to s1/d1, a lockdown in force on it and a release offer to it, and what
// it answers (reads).
func spoolToMigrate(t *testing.T) (migratedSpool, string) {
	sp := migratedSpool{dir: filepath.Join(t.TempDir(), "spool")}
	src, err := hq.NewFileSpool(sp.dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	for version := range uint64(2) {
		payload := bytes.Repeat([]byte{byte(version)}, 1500)
		sum := sha256.Sum256(payload)
		m := proto.Manifest{Transfer: proto.NewCommandID(), Site: "s1", Device: "d1", Type: proto.SnapshotFull, Version: version + 1,
			Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:]), ChunkSize: 1000, Chunks: 2, Issued: at}
		if err := src.PutTransfer(t.Context(), m, []byte("env "+m.Transfer), bytes.NewReader(payload)); err != nil {
			t.Fatal(err)
		}
		sp.transfer = m.Transfer
	}
	cmd := proto.Command{ID: proto.NewCommandID(), Site: "s1", Device: "d1", Action: proto.ActionLockdown, Issued: at, Expires: at.Add(time.Minute)}
	if err := src.PutCommand(t.Context(), hq.SpooledEnvelope[proto.Command]{Value: cmd, Envelope: []byte("env " + cmd.ID)}); err != nil {
		t.Fatal(err)
	}
	o := proto.ReleaseOffer{ID: proto.NewCommandID(), Site: "s1", Device: "d1", Issued: at, Expires: at.Add(time.Hour), ChunkSize: 1000, Manifest: []byte("m")}
	if err := src.PutOffer(t.Context(), hq.SpooledEnvelope[proto.ReleaseOffer]{Value: o, Envelope: []byte("env " + o.ID)}); err != nil {
		t.Fatal(err)
	}
	want := sp.reads(t, src)
	if !strings.Contains(want, sp.transfer) || !strings.Contains(want, cmd.ID) || !strings.Contains(want, o.ID) {
		t.Fatalf("the spool directory answers %s, want transfer %s, command %s, offer %s", want, sp.transfer, cmd.ID, o.ID)
	}
	return sp, want
}

// reads returns what s answers for s1/d1: its latest transfer with its
// chunks, the commands in force, the release offers.
func (sp migratedSpool) reads(t *testing.T, s hq.Spool) string {
	l, err := s.Latest(t.Context(), "s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	for i := range l.Value.Chunks {
		c, err := s.Chunk(t.Context(), l.Value, i)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	cmds, err := s.Commands(t.Context(), "s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	offers, err := s.Offers(t.Context(), "s1", "d1", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal([]any{l, chunks, cmds, offers})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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

// TestMigrateStoreMarks: migrate-store copies hq-marks.db (marks with
// their sequence numbers and devices, reports) into PostgreSQL, and a
// second run copies nothing twice.
func TestMigrateStoreMarks(t *testing.T) {
	url := pgtest.DB(t)
	if out, err := runHQ(t, "migrate", "--store-url", url); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	db := filepath.Join(t.TempDir(), "hq.db")
	src, err := hq.OpenBoltMarks(hq.MarksPath(db), nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 9, 0, 0, 1, time.UTC)
	mark := func(ticket string, i int) proto.Mark {
		return proto.Mark{Ticket: []byte(ticket), Event: "ev", State: proto.MarkIn, At: at.Add(time.Duration(i) * time.Second), Door: "d1"}
	}
	refuse := func(_ []proto.Mark, m proto.Mark) hq.MarkVerdict {
		if string(m.Ticket) == "bad" {
			return hq.MarkVerdict{Refused: "no"}
		}
		return hq.MarkVerdict{}
	}
	for site, n := range map[string]int{"s1": 3, "s2": 2} {
		for i := range n {
			if _, err := src.Record(t.Context(), site, fmt.Sprintf("g%d", i), []proto.Mark{mark(fmt.Sprint("t", i), i), mark("bad", i)}, refuse); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, _, err := src.After(t.Context(), "s1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	for i, wantOut := range []string{"copied 5 ticket marks (new 5) and 5 reports (new 5) of 2 sites", "copied 5 ticket marks (new 0) and 5 reports (new 0) of 2 sites"} {
		out, err := runHQ(t, "migrate-store", "--db", db, "--store-url", url)
		if err != nil || !strings.Contains(out, wantOut) {
			t.Fatalf("migrate-store run %d: %v\n%s\nwant %q", i+1, err, out, wantOut)
		}
	}
	pg, err := pgstore.Open(context.Background(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	got, head, err := pg.Marks().After(t.Context(), "s1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if head != 3 || len(got) != len(want) {
		t.Fatalf("s1 in PostgreSQL: head %d, %d marks; want 3, %d", head, len(got), len(want))
	}
	for i := range want {
		if !got[i].Same(want[i]) || got[i].Seq != want[i].Seq || got[i].Device != want[i].Device {
			t.Errorf("mark %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	reps, err := pg.Marks().Reports(t.Context(), "s2")
	if err != nil || len(reps) != 2 || reps[0].Reason != "no" {
		t.Fatalf("s2's reports in PostgreSQL = %+v, %v; want 2 refusals", reps, err)
	}
	// The copy goes on numbering where the bbolt store stopped.
	res, err := pg.Marks().Record(t.Context(), "s1", "g9", []proto.Mark{mark("t9", 9)}, refuse)
	if err != nil || res.Head != 4 {
		t.Fatalf("a new mark after the copy: head %d, %v; want 4", res.Head, err)
	}
}

// TestServeSharesOnPostgres: with a PostgreSQL store, serve keeps the
// ticket marks, the console's audit log, its alarms and the publications
// and rollouts started from it in PostgreSQL, where another replica sees
// them.
func TestServeSharesOnPostgres(t *testing.T) {
	url := pgtest.DB(t)
	if _, err := pgstore.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	replica := func() *pgstore.Store {
		st, err := pgstore.Open(context.Background(), url, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := replica(), replica()
	if _, ok := marksOf(a).(*pgstore.Marks); !ok {
		t.Fatalf("marksOf a PostgreSQL store = %T, want *pgstore.Marks", marksOf(a))
	}
	if marksOf(nil) != nil {
		t.Fatal("marksOf no store is not nil (HQ would not open hq-marks.db)")
	}
	cs, err := openConsole(t.Context(), "127.0.0.1:0", filepath.Join(t.TempDir(), "console.db"), "", &consoleLoginFlags{}, hq.Config{Store: a}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.close()
	if _, err := cs.stores.Audit.Append(audit.Entry{Actor: "alice", Action: "login"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.stores.Alarms.SetOnline("s1", "g1", false, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, _, err := audit.NewLog(b.AuditChain(), nil).Verify(); err != nil || n != 1 {
		t.Errorf("the other replica's audit log: %d entries, %v; want the console's 1", n, err)
	}
	if all, err := alarm.NewList(b.Alarms()).All(); err != nil || len(all) != 1 || all[0].Kind != alarm.Offline {
		t.Errorf("the other replica's alarms = %+v, %v; want the offline alarm", all, err)
	}
	if cs.config(nil, slog.New(slog.DiscardHandler)).Ops != cs.stores.Ops {
		t.Error("the console is not given the stores' publications and rollouts")
	}
	op := oplog.Op{ID: "p1", Kind: oplog.Publication, Site: "s1", By: "alice", At: time.Now(), Snapshot: "full"}
	if err := cs.stores.Ops.Add(t.Context(), op); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := b.ConsoleOps().Get(t.Context(), "p1"); err != nil || !ok || got.By != "alice" {
		t.Errorf("the other replica's publication p1 = %+v %v %v; want alice's", got, ok, err)
	}
}

// TestMigrateStoreConsole: migrate-store copies the console's audit log
// (the same chain, so the head hash kept elsewhere still matches) and its
// alarms into PostgreSQL, twice without doubling; the console on
// PostgreSQL goes on with that chain.
func TestMigrateStoreConsole(t *testing.T) {
	url := pgtest.DB(t)
	if out, err := runHQ(t, "migrate", "--store-url", url); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	dir := t.TempDir()
	consoleDB := filepath.Join(dir, "console.db")
	src, err := console.OpenStores(consoleDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"login", "command", "logout"} {
		if _, err := src.Audit.Append(audit.Entry{Actor: "alice", Action: action}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Alarms.SetOnline("s1", "g1", false, time.Now()); err != nil {
		t.Fatal(err)
	}
	ro := oplog.Op{ID: "r1", Kind: oplog.Rollout, Site: "s1", Group: "gates", By: "alice", At: time.Now(), Version: "2.0.0", Offers: []string{"o1"}}
	if err := src.Ops.Add(t.Context(), ro); err != nil {
		t.Fatal(err)
	}
	_, head, err := src.Audit.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]string{
		{"copied 3 audit entries (new 3; the chain in PostgreSQL: 3 entries, head " + head + ") and 1 alarms (new 1)", "copied 1 publications and rollouts (new 1)"},
		{"copied 3 audit entries (new 0; the chain in PostgreSQL: 3 entries, head " + head + ") and 1 alarms (new 0)", "copied 1 publications and rollouts (new 0)"},
	} {
		out, err := runHQ(t, "migrate-store", "--db", filepath.Join(dir, "hq.db"), "--console-db", consoleDB, "--store-url", url)
		if err != nil || !strings.Contains(out, want[0]) || !strings.Contains(out, want[1]) {
			t.Fatalf("migrate-store run %d: %v\n%s\nwant %q", i+1, err, out, want)
		}
	}
	pg, err := pgstore.Open(context.Background(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if got, ok, err := pg.ConsoleOps().Get(t.Context(), "r1"); err != nil || !ok || !slices.Equal(got.Offers, ro.Offers) {
		t.Fatalf("the rollout in PostgreSQL = %+v %v %v", got, ok, err)
	}
	log := audit.NewLog(pg.AuditChain(), nil)
	if e, err := log.Append(audit.Entry{Actor: "bob", Action: "login"}); err != nil || e.Seq != 4 || e.Prev != head {
		t.Fatalf("the next entry in PostgreSQL = %+v, %v; want entry 4 after head %s", e, err, head)
	}
	if n, _, err := log.Verify(); err != nil || n != 4 {
		t.Fatalf("Verify in PostgreSQL = %d, %v; want 4 entries", n, err)
	}
	// A console.db whose log is not the one in PostgreSQL is refused.
	other := filepath.Join(t.TempDir(), "console.db")
	st, err := console.OpenStores(other, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Audit.Append(audit.Entry{Actor: "mallory", Action: "login"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	out, err := runHQ(t, "migrate-store", "--db", filepath.Join(dir, "hq.db"), "--console-db", other, "--store-url", url)
	if !errors.Is(err, pgstore.ErrAuditDiverged) {
		t.Fatalf("migrate-store of another audit log = %v\n%s\nwant ErrAuditDiverged", err, out)
	}
}
