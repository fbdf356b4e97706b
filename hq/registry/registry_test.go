package registry_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

var discard = slog.New(slog.DiscardHandler)

func openRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	r, err := registry.Open(filepath.Join(t.TempDir(), "registry.db"), registry.Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func openStore(t *testing.T) *policy.Store {
	t.Helper()
	s, err := policy.Open(filepath.Join(t.TempDir(), "policy.db"), discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func importFile(t *testing.T, r *registry.Registry, site, table string) registry.Applied {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", table+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := r.ImportCSV(context.Background(), site, table, f.Name(), f)
	if err != nil {
		t.Fatalf("import %s: %v", table, err)
	}
	return a
}

var kidA1 = bytes.Repeat([]byte{0xa1}, credential.KeyIDLen)

func cert(serial uint64) credential.Credential {
	return credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: kidA1, Serial: big.NewInt(int64(serial)).Bytes()}
}

func TestImportEveryTableThenPublishFull(t *testing.T) {
	eachBackend(t, testImportEveryTableThenPublishFull)
}

func testImportEveryTableThenPublishFull(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	for i, table := range registry.Tables {
		a := importFile(t, r, "venue", table)
		if a.Rev != uint64(i+1) || a.Put == 0 {
			t.Fatalf("import %s: %+v, want revision %d with puts", table, a, i+1)
		}
	}
	for _, c := range []struct {
		kind policy.RecordKind
		want int
	}{{policy.KindCredential, 4}, {policy.KindPerson, 2}, {policy.KindSchedule, 1}, {policy.KindDoor, 2}, {policy.KindRevoked, 1}} {
		if n, err := r.Count("venue", c.kind); err != nil || n != c.want {
			t.Errorf("Count(%s) = %d, %v; want %d", c.kind, n, err, c.want)
		}
	}
	it, ok, err := r.Get("venue", policy.Schedule{ID: "night"})
	if err != nil || !ok {
		t.Fatalf("Get(schedule night) = %v, %v", ok, err)
	}
	if s := it.(policy.Schedule); len(s.Windows) != 2 || len(s.Special) != 1 {
		t.Errorf("schedule night merged from 3 lines = %+v, want 2 windows and 1 special day", s)
	}

	var buf bytes.Buffer
	pub, err := r.WriteFull(ctx, "venue", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Version != uint64(len(registry.Tables)) {
		t.Errorf("full version %d, want %d", pub.Version, len(registry.Tables))
	}
	s := openStore(t)
	if err := s.ApplyFullStream(ctx, pub.Version, &buf); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.ContentHash(); h != pub.Hash {
		t.Errorf("store hash %x, registry says %x", h, pub.Hash)
	}
	if h, v, err := r.ContentHash(ctx, "venue"); err != nil || h != pub.Hash || v != pub.Version {
		t.Errorf("ContentHash = %x, %d, %v; want the published one", h, v, err)
	}
	for _, c := range []struct {
		cred credential.Credential
		want policy.Reason
	}{
		{cert(0x0f4240), policy.ReasonEnrolled},
		{cert(0x0f4241), policy.ReasonRevoked},
		{cert(0x0f4242), policy.ReasonNotEnrolled},
	} {
		if d := s.Decide(c.cred); d.Reason != c.want {
			t.Errorf("Decide(%v) = %s, want %s", c.cred, d.Reason, c.want)
		}
	}
	if _, err := r.WriteFull(ctx, "elsewhere", io.Discard); !errors.Is(err, registry.ErrUnknownSite) {
		t.Errorf("WriteFull of an unknown site: %v, want ErrUnknownSite", err)
	}
}

func TestImportBadLinesAppliesNothing(t *testing.T) { eachBackend(t, testImportBadLinesAppliesNothing) }

func testImportBadLinesAppliesNothing(t *testing.T, open opener) {
	r := open(t)
	importFile(t, r, "venue", "people")
	f, err := os.Open("testdata/credentials-bad.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = r.ImportCSV(context.Background(), "venue", "credentials", "credentials-bad.csv", f)
	if !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("import of a bad file: %v, want ErrInvalid", err)
	}
	for _, want := range []string{
		"credentials-bad.csv:3: issuer_key_id: \"a1a1\", want 40 hex digits",
		"credentials-bad.csv:4: serial: serial \"zz\" is not hex",
		"credentials-bad.csv:5: type: \"laser\", want cert or freearea",
		"credentials-bad.csv:6: person: required",
		"credentials-bad.csv:7: credential 01a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a10f4299 already on line 2",
		"credentials-bad.csv:8: ",
		"validity window",
		"credentials-bad.csv:9: valid_from: \"yesterday\", want RFC 3339",
		"7 bad lines",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var le *registry.LineError
	if !errors.As(err, &le) || le.Line != 3 || le.Column != "issuer_key_id" {
		t.Errorf("first LineError = %+v, want line 3 column issuer_key_id", le)
	}
	if rev, _ := r.Revision("venue"); rev != 1 {
		t.Errorf("revision after a refused import = %d, want 1 (nothing applied)", rev)
	}
	if n, _ := r.Count("venue", policy.KindCredential); n != 0 {
		t.Errorf("%d credentials stored from a refused import, want 0", n)
	}
}

func TestParseCSVHeaderErrors(t *testing.T) {
	for _, c := range []struct {
		name, table, in, want string
	}{
		{"unknown table", "robots", "a\n", `unknown table "robots"`},
		{"unknown column", "people", "person,shoe_size\n", "x.csv:1: shoe_size: unknown column"},
		{"missing column", "levels", "level,group\n", "x.csv:1: door_group: required column missing"},
		{"twice", "people", "person,person\n", "x.csv:1: person: column appears twice"},
		{"empty", "people", "", "x.csv:1: read header: EOF"},
		{"field count", "people", "person,groups\np-1\n", "x.csv:2: 1 fields, the header has 2"},
		{"action", "people", "person,action\np-1,zap\n", `x.csv:2: action: "zap", want put or delete`},
		{"bad quote", "people", "person\n\"p-1\n", "x.csv:"},
		{"policy rule", "areas", "area,passback\nhall,sideways\n", `x.csv:2: invalid snapshot: area "hall": unknown passback mode "sideways"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := registry.ParseCSV(c.table, "x.csv", strings.NewReader(c.in))
			if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ParseCSV = %v, want ErrInvalid with %q", err, c.want)
			}
		})
	}
}

// TestDeltaFromEveryVersionEqualsFull changes a site at random over many
// revisions (puts, replacements, deletes, keys deleted and created again)
// and checks that a delta from every earlier revision, applied to a store
// holding the full snapshot of that revision, gives the content hash of the
// full snapshot of the last one.
func TestDeltaFromEveryVersionEqualsFull(t *testing.T) {
	eachBackend(t, testDeltaFromEveryVersionEqualsFull)
}

func testDeltaFromEveryVersionEqualsFull(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	rng := mrand.New(mrand.NewPCG(1, 2))
	fulls := map[uint64][]byte{}
	live := map[uint64]bool{}
	for round := 0; round < 12; round++ {
		var ch registry.Change
		for range 30 {
			n := rng.Uint64N(40) + 1
			switch {
			case live[n] && rng.IntN(3) == 0:
				ch.Delete = append(ch.Delete, policy.Entry{Credential: cert(n)})
				delete(live, n)
			default:
				ch.Put = append(ch.Put, policy.Entry{Credential: cert(n), Person: fmt.Sprintf("p-%d-%d", n, round)})
				live[n] = true
			}
		}
		ch = dedupe(ch)
		a, err := r.Apply(ctx, "s", ch)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := r.WriteFull(ctx, "s", &buf); err != nil {
			t.Fatal(err)
		}
		fulls[a.Rev] = buf.Bytes()
	}
	final, rev, err := r.ContentHash(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	for from, full := range fulls {
		if from == rev {
			continue
		}
		s := openStore(t)
		if err := s.ApplyFullStream(ctx, from, bytes.NewReader(full)); err != nil {
			t.Fatal(err)
		}
		var d bytes.Buffer
		pub, err := r.WriteDelta(ctx, "s", from, &d)
		if err != nil {
			t.Fatalf("delta from %d: %v", from, err)
		}
		if err := s.ApplyDeltaStream(ctx, from, pub.Version, &d); err != nil {
			t.Fatalf("apply delta %d->%d: %v", from, pub.Version, err)
		}
		if h, _ := s.ContentHash(); h != final {
			t.Errorf("after delta %d->%d the hash is %x, full snapshot %x", from, rev, h, final)
		}
	}
	for _, from := range []uint64{0, rev, rev + 1} {
		if _, err := r.WriteDelta(ctx, "s", from, io.Discard); !errors.Is(err, registry.ErrNoDelta) {
			t.Errorf("WriteDelta from %d: %v, want ErrNoDelta", from, err)
		}
	}
}

// dedupe keeps the last operation on each key, as one Apply requires.
func dedupe(ch registry.Change) registry.Change {
	type op struct {
		it  policy.Item
		del bool
	}
	last := map[string]op{}
	var order []string
	for _, it := range ch.Put {
		k := string(it.(policy.Entry).Credential.Serial)
		if _, ok := last[k]; !ok {
			order = append(order, k)
		}
		last[k] = op{it, false}
	}
	for _, it := range ch.Delete {
		k := string(it.(policy.Entry).Credential.Serial)
		if _, ok := last[k]; !ok {
			order = append(order, k)
		}
		last[k] = op{it, true}
	}
	var out registry.Change
	for _, k := range order {
		if o := last[k]; o.del {
			out.Delete = append(out.Delete, o.it)
		} else {
			out.Put = append(out.Put, o.it)
		}
	}
	return out
}

func TestApplyUnchangedKeepsRevision(t *testing.T) { eachBackend(t, testApplyUnchangedKeepsRevision) }

func testApplyUnchangedKeepsRevision(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	ch := registry.Change{Put: []policy.Item{policy.Person{ID: "p-1"}}}
	a1, err := r.Apply(ctx, "s", ch)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := r.Apply(ctx, "s", ch)
	if err != nil || a2.Rev != a1.Rev || a2.Put != 0 {
		t.Errorf("same change again = %+v, %v; want revision %d, nothing put", a2, err, a1.Rev)
	}
	if _, err := r.Apply(ctx, "s", registry.Change{Put: []policy.Item{policy.Person{ID: ""}}}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("invalid person: %v, want ErrInvalid", err)
	}
	if _, err := r.Apply(ctx, "bad/site", ch); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("bad site name: %v, want ErrInvalid", err)
	}
}

func TestRevokeRemovesEntry(t *testing.T) { eachBackend(t, testRevokeRemovesEntry) }

func testRevokeRemovesEntry(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	importFile(t, r, "v", "credentials")
	c := cert(0x0f4240)
	a, err := r.Revoke(ctx, "v", policy.CertRef{IssuerKeyID: c.IssuerKeyID, Serial: c.Serial})
	if err != nil || a.Put != 1 || a.Deleted != 1 {
		t.Fatalf("Revoke = %+v, %v; want one put, one delete", a, err)
	}
	if _, ok, _ := r.Get("v", policy.Entry{Credential: c}); ok {
		t.Error("revoked credential still on the allowlist")
	}
	if _, ok, _ := r.Get("v", policy.Revocation{IssuerKeyID: c.IssuerKeyID, Serial: c.Serial}); !ok {
		t.Error("revocation not stored")
	}
}

func TestImportCRL(t *testing.T) { eachBackend(t, testImportCRL) }

func testImportCRL(t *testing.T, open opener) {
	ctx := context.Background()
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	ca, key := newCA(t, now)
	other, _ := newCA(t, now)
	crl := func(this, next time.Time, serials ...int64) []byte {
		var entries []x509.RevocationListEntry
		for _, s := range serials {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: this})
		}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: this, NextUpdate: next,
			RevokedCertificateEntries: entries}, ca, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	r := open(t)
	good := crl(now.Add(-time.Hour), now.Add(24*time.Hour), 5, 6, 7, 7)
	info, err := r.ImportCRL(ctx, "v", good, ca, now)
	if err != nil {
		t.Fatal(err)
	}
	if info.Applied.Put != 4 || info.New != 3 || !bytes.Equal(info.IssuerKeyID, ca.SubjectKeyId) {
		t.Errorf("ImportCRL = %+v, want 3 revocations and the site record under the CA's key ID", info)
	}
	it, ok, _ := r.Get("v", policy.Site{})
	if !ok || !it.(policy.Site).RevocationsAt.Equal(now.Add(-time.Hour)) {
		t.Errorf("site record %+v, want RevocationsAt = thisUpdate", it)
	}
	// The same CRL again: nothing new (the CLI printed "-1 new").
	if again, err := r.ImportCRL(ctx, "v", good, ca, now); err != nil || again.New != 0 || again.Applied.Put != 0 {
		t.Errorf("ImportCRL of the same CRL again = %+v, %v; want 0 new", again, err)
	}
	// A newer CRL listing one more serial: 1 new, and the site's
	// RevocationsAt moves.
	if next, err := r.ImportCRL(ctx, "v", crl(now.Add(-time.Minute), now.Add(24*time.Hour), 5, 6, 7, 9), ca, now); err != nil || next.New != 1 || next.Applied.Put != 2 {
		t.Errorf("ImportCRL of a newer CRL = %+v, %v; want 1 new", next, err)
	}
	for _, c := range []struct {
		name string
		der  []byte
		ca   *x509.Certificate
		want error
	}{
		{"wrong CA", good, other, registry.ErrCRLSignature},
		{"garbage", []byte("not a CRL"), ca, registry.ErrCRLSignature},
		{"expired", crl(now.Add(-48*time.Hour), now.Add(-time.Hour), 8), ca, registry.ErrCRLTime},
		{"not yet", crl(now.Add(time.Hour), now.Add(48*time.Hour), 8), ca, registry.ErrCRLTime},
	} {
		if _, err := r.ImportCRL(ctx, "v", c.der, c.ca, now); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func newCA(t *testing.T, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	skid := make([]byte, 20)
	_, _ = rand.Read(skid)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, SubjectKeyId: skid,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestPendingEnrollments(t *testing.T) { eachBackend(t, testPendingEnrollments) }

func testPendingEnrollments(t *testing.T, open opener) {
	r := open(t)
	p := registry.Pending{Site: "v", Device: "d1", Seq: 1, Received: time.Now().UTC(), Record: []byte(`{"x":1}`)}
	id, err := r.AddPending(p)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := r.AddPending(p); err != nil || again != id {
		t.Errorf("same (site, device, seq) again = %q, %v; want %q", again, err, id)
	}
	p.Seq = 2
	if other, _ := r.AddPending(p); other == id {
		t.Error("a new seq got the same ID")
	}
	list, err := r.PendingList()
	if err != nil || len(list) != 2 {
		t.Fatalf("PendingList = %d, %v; want 2", len(list), err)
	}
	got, err := r.PendingByID(id)
	if err != nil || got.Seq != 1 || string(got.Record) != `{"x":1}` {
		t.Errorf("PendingByID = %+v, %v", got, err)
	}
	if err := r.DeletePending(id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PendingByID(id); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("after delete: %v, want ErrNotFound", err)
	}
	if err := r.DeletePending(id); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
}

func TestOpenRejectsForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	s, err := policy.Open(path, discard)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := registry.Open(path, registry.Options{Logger: discard}); !errors.Is(err, registry.ErrBadFile) {
		t.Errorf("Open of a policy.db: %v, want ErrBadFile", err)
	}
}

func FuzzParseCSV(f *testing.F) {
	for _, table := range registry.Tables {
		b, err := os.ReadFile(filepath.Join("testdata", table+".csv"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(table, b)
	}
	bad, _ := os.ReadFile("testdata/credentials-bad.csv")
	f.Add("credentials", bad)
	f.Fuzz(func(t *testing.T, table string, in []byte) {
		ch, err := registry.ParseCSV(table, "f.csv", bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// Whatever parsed must be accepted by policy's encoder.
		enc, _ := policy.NewSnapshotEncoder(io.Discard, 1)
		for _, it := range ch.Put {
			if err := enc.Put(it); err != nil {
				t.Fatalf("parsed item %+v is invalid: %v", it, err)
			}
		}
	})
}
