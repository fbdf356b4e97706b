package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/broker"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/jpkitest"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// cliDeadline bounds waits on the embedded broker in these tests.
const cliDeadline = time.Minute

// writeCSV writes a CSV file into dir.
func writeCSV(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// storeStatus reports a policy store's snapshot in the device status, as
// the controller does.
func storeStatus(s *policy.Store) tsync.StatusSource {
	return tsync.StatusFunc(func(context.Context) (proto.Status, error) {
		v, err := s.Version()
		if err != nil {
			return proto.Status{}, err
		}
		h, err := s.ContentHash()
		if err != nil {
			return proto.Status{}, err
		}
		return proto.Status{Snapshot: proto.SnapshotStatus{Version: v, Hash: hex.EncodeToString(h[:])}, ClockTrusted: true}, nil
	})
}

// writeKit makes a test JPKI kit valid at now and writes it to dir/pki
// (ca.pem, other-ca.pem, ...).
func writeKit(t *testing.T, dir string, now time.Time) *jpkitest.Kit {
	t.Helper()
	kit, err := jpkitest.NewKit(now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kit.WriteDir(filepath.Join(dir, "pki")); err != nil {
		t.Fatal(err)
	}
	return kit
}

// enrollmentRecord makes a verified enrollment record of the kit's card-1,
// as the edge does in mode enroll.
func enrollmentRecord(t *testing.T, kit *jpkitest.Kit, now time.Time) (credential.Credential, []byte) {
	t.Helper()
	card, _ := kit.Card("card-1")
	kid, err := jpkitest.KeyID(kit.CA.Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cred := credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: kid, Serial: big.NewInt(int64(card.Serial)).Bytes()}
	challenge := make([]byte, reader.ChallengeLen)
	_, _ = rand.Read(challenge)
	sum := sha256.Sum256(challenge)
	sig, err := rsa.SignPKCS1v15(rand.Reader, kit.CardKey, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	rec := reader.EnrollmentRecord{Credential: cred, Token: "", Certificate: card.DER, Challenge: challenge, Signature: sig, PINVerified: true, Time: now}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return cred, b
}

// TestRegistryToDevice walks the admin path end to end on the embedded
// broker: CSV imports (a bad file applies nothing), a full snapshot from the
// registry to a device with a real policy store, a revocation sent as a
// delta, an enrollment from the device approved and sent as a delta, and
// the fleet view without drift.
func TestRegistryToDevice(t *testing.T) {
	ctx, brk := startBroker(t)
	dir := t.TempDir()
	reg, db, spool, prefix := filepath.Join(dir, "registry.db"), filepath.Join(dir, "hq.db"), filepath.Join(dir, "spool"), filepath.Join(dir, "hq")
	var out bytes.Buffer
	cli := func(args ...string) error {
		out.Reset()
		return run(ctx, args, &out, &out)
	}
	if err := cli("keygen", "--out", prefix); err != nil {
		t.Fatal(err)
	}
	pub, err := signed.ReadPublicKey(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	kidHex := strings.Repeat("a1", 20)
	people := writeCSV(t, dir, "people.csv", "person,groups\np-1,staff\np-2,staff\n")
	creds := writeCSV(t, dir, "credentials.csv", "type,issuer_key_id,serial,person\ncert,"+kidHex+",0f4240,p-1\ncert,"+kidHex+",0f4241,p-2\n")
	bad := writeCSV(t, dir, "bad.csv", "type,issuer_key_id,serial,person\ncert,"+kidHex+",0f4242,p-1\ncert,xyz,0f4243,p-2\n")
	for _, table := range []struct{ name, file string }{{"people", people}, {"credentials", creds}} {
		if err := cli("import", table.name, "--registry", reg, "--site", "s1", "--csv", table.file); err != nil {
			t.Fatalf("import %s: %v\n%s", table.name, err, out.String())
		}
	}
	err = cli("import", "credentials", "--registry", reg, "--site", "s1", "--csv", bad)
	if err == nil || !strings.Contains(err.Error(), "bad.csv:3: issuer_key_id:") {
		t.Fatalf("import of a bad file: %v, want bad.csv:3: issuer_key_id", err)
	}

	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- run(serveCtx, []string{"serve", "--broker", brk.URL(), "--db", db, "--spool", spool, "--registry", reg,
			"--key", prefix + ".key"}, io.Discard, io.Discard)
	}()

	store, err := policy.Open(filepath.Join(dir, "policy.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ob, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	edge, err := tsync.NewEdge(tsync.EdgeConfig{Broker: brk.URL(), Site: "s1", Device: "d1", Keys: []ed25519.PublicKey{pub},
		Snapshots: store, Status: storeStatus(store), ConnectRetry: 100 * time.Millisecond, AckTimeout: time.Second,
		Logger: slog.New(slog.DiscardHandler)}, ob)
	if err != nil {
		t.Fatal(err)
	}
	edgeCtx, stopEdge := context.WithCancel(ctx)
	edged := make(chan error, 1)
	go func() { edged <- edge.Run(edgeCtx) }()

	// The retained status must be on the broker before publishing.
	priv, err := signed.ReadPrivateKey(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := hq.DialSender(ctx, hq.Config{Broker: brk.URL(), Logger: slog.New(slog.DiscardHandler)}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	waitFor(t, "device status on the broker", func() bool {
		st, err := sender.DeviceStatuses(ctx, "s1", 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := st["d1"]
		return ok
	})

	publish := func(mode string) {
		t.Helper()
		if err := cli("snapshot", "publish", "--broker", brk.URL(), "--key", prefix+".key", "--registry", reg, mode,
			"--site", "s1", "--spool", spool, "--wait", "30s", "--status-wait", "300ms"); err != nil {
			t.Fatalf("snapshot publish %s: %v\n%s", mode, err, out.String())
		}
	}
	publish("--full")
	if !strings.Contains(out.String(), "published full snapshot version 2") || !strings.Contains(out.String(), `"status":"done"`) {
		t.Fatalf("publish --full said:\n%s", out.String())
	}
	c1 := credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: bytes.Repeat([]byte{0xa1}, 20), Serial: []byte{0x0f, 0x42, 0x40}}
	if d := store.Decide(c1); d.Reason != policy.ReasonEnrolled {
		t.Fatalf("after the full snapshot: %s, want enrolled", d.Reason)
	}

	key1, _ := c1.Key()
	if err := cli("revoke", "--registry", reg, "--site", "s1", "--credential", hex.EncodeToString(key1)); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out.String())
	}
	edge.PublishStatus()
	publish("--delta")
	if !strings.Contains(out.String(), "published delta snapshot version 3 (from 2)") {
		t.Fatalf("publish --delta after revoke said:\n%s", out.String())
	}
	if d := store.Decide(c1); d.Reason != policy.ReasonRevoked {
		t.Fatalf("after the revocation delta: %s, want revoked", d.Reason)
	}

	// Enrollment from the device, approved by the admin, sent as a delta.
	now := time.Now()
	kit := writeKit(t, dir, now)
	enrolled, rec := enrollmentRecord(t, kit, now)
	if _, err := ob.AppendEnrollment(rec); err != nil {
		t.Fatal(err)
	}
	edge.Notify()
	var id string
	waitFor(t, "pending enrollment in the registry", func() bool {
		if err := cli("enroll", "list", "--registry", reg); err != nil {
			return false
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) < 2 {
			return false
		}
		id = strings.Fields(lines[1])[0]
		return true
	})
	anchors := filepath.Join(dir, "pki", "ca.pem")
	if err := cli("enroll", "approve", "--registry", reg, "--id", id, "--person", "p-9", "--anchors", filepath.Join(dir, "pki", "other-ca.pem")); err == nil {
		t.Fatal("approve against an untrusted CA succeeded")
	}
	if err := cli("enroll", "approve", "--registry", reg, "--id", id, "--person", "p-9", "--anchors", anchors); err != nil {
		t.Fatalf("enroll approve: %v\n%s", err, out.String())
	}
	if err := cli("enroll", "approve", "--registry", reg, "--id", id, "--person", "p-9", "--anchors", anchors); err == nil {
		t.Fatal("approving the same enrollment twice succeeded")
	}
	edge.PublishStatus()
	publish("--delta")
	if d := store.Decide(enrolled); d.Reason != policy.ReasonEnrolled || d.Person != "p-9" {
		t.Fatalf("enrolled card after the delta: %+v, want enrolled for p-9", d)
	}
	edge.PublishStatus()
	// Nothing changed since: a delta publish has nothing to send.
	waitFor(t, "status with version 4", func() bool {
		if err := cli("snapshot", "publish", "--broker", brk.URL(), "--key", prefix+".key", "--registry", reg, "--delta",
			"--site", "s1", "--status-wait", "300ms"); err != nil {
			t.Fatalf("publish with nothing new: %v\n%s", err, out.String())
		}
		return strings.Contains(out.String(), "at version 4 already")
	})

	stopEdge()
	<-edged
	stopServe()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if err := cli("fleet", "--db", db, "--spool", spool, "--format", "json"); err != nil {
		t.Fatal(err)
	}
	var dev hq.DeviceInfo
	if err := json.Unmarshal(out.Bytes(), &dev); err != nil {
		t.Fatalf("fleet json: %v\n%s", err, out.String())
	}
	if dev.ExpectedVersion != 4 || dev.ExpectedHash == "" || dev.Published.IsZero() || dev.Drift || dev.Status.Snapshot.Hash != dev.ExpectedHash {
		t.Errorf("fleet entry %+v, want version 4 with the expected hash, its publication time and no drift", dev)
	}
	// Whether the device's "offline" status reached HQ before serve stopped
	// is a race in this test, so Online is not asserted here (sync's status
	// tests cover the last will and the clean-stop message).
}

// startBroker starts the embedded broker for one test, with a context
// that ends after cliDeadline; both end with the test.
func startBroker(t *testing.T) (context.Context, *broker.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliDeadline)
	t.Cleanup(cancel)
	brk, err := broker.Start(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brk.Close() })
	return ctx, brk
}

// waitFor polls cond (an integration wait on other goroutines' network
// work) until it holds or cliDeadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(cliDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, cliDeadline)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
