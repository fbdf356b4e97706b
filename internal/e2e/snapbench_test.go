package e2e_test

// Snapshot performance on a real mosquitto: a big full snapshot pushed to
// one device, and a delta pushed to many devices, each applied into a real
// policy.Store. They run small by default; TOBIRA_BENCH_SCALE=full runs
// the sizes of docs/PERFORMANCE.md (10 million credentials; 10,000 changes
// to 100 devices). Figures go to docs/PERFORMANCE.md.

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// cachedFixture returns the path and content hash of the fixture snapshot
// of n credentials (version 2, tag "new-"). Big ones are built once and
// cached under os.TempDir() (a hash file next to the stream marks a
// complete build); small ones go to a test directory.
func cachedFixture(t *testing.T, n int) (string, [32]byte) {
	t.Helper()
	if n < 1000000 {
		p := filepath.Join(t.TempDir(), "snapshot")
		return p, writeFixtureFile(t, p, n, 2, "new-")
	}
	p := filepath.Join(os.TempDir(), fmt.Sprintf("tobira-sync-bench-snapshot-n%d.tbr", n))
	var h [32]byte
	if b, err := os.ReadFile(p + ".hash"); err == nil && hex.DecodedLen(len(b)) == len(h) {
		if _, err := hex.Decode(h[:], b); err == nil {
			return p, h
		}
	}
	start := time.Now()
	h = writeFixtureFile(t, p+".building", n, 2, "new-")
	if err := os.Rename(p+".building", p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".hash", []byte(hex.EncodeToString(h[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("built snapshot fixture %s in %v", p, time.Since(start).Round(time.Millisecond))
	return p, h
}

// benchEdge runs an Edge named device whose snapshot sink is a new policy
// store in a temporary directory (a copy of base when base is not empty),
// until the test ends.
func benchEdge(t *testing.T, url, device, base string, key ed25519.PublicKey) *policy.Store {
	t.Helper()
	store, _ := policyEdge(t, url, device, base, key, nil)
	return store
}

// policyEdge is benchEdge with tune, which may change the Edge's
// configuration (given the Edge's outbox) before it starts; it returns the
// outbox too.
func policyEdge(t *testing.T, url, device, base string, key ed25519.PublicKey, tune func(*tsync.EdgeConfig, *tsync.Outbox)) (*policy.Store, *tsync.Outbox) {
	t.Helper()
	dir := t.TempDir()
	if base != "" {
		b, err := os.ReadFile(base)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, policyPath), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	store, err := policy.Open(filepath.Join(dir, policyPath), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ob, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := tsync.EdgeConfig{
		Broker: url, Site: "s1", Device: device, Keys: []ed25519.PublicKey{key}, Snapshots: store,
		Status: storeStatus(store), StatusInterval: time.Hour, NeedInterval: time.Second,
		ConnectRetry: 200 * time.Millisecond, MaxReconnect: 500 * time.Millisecond, Logger: discardLogger(),
	}
	if tune != nil {
		tune(&cfg, ob)
	}
	e, err := tsync.NewEdge(cfg, ob)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, e.Run, func(err error) {
		if err != nil {
			t.Errorf("Edge %s Run: %v", device, err)
		}
		ob.Close()
		store.Close()
	})
	return store, ob
}

// waitVersion waits until HQ's fleet shows every device of devs with
// snapshot version v (their status, published after the apply).
func waitVersion(t *testing.T, h *hq.Service, v uint64, devs int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d devices online at version %d", devs, v), func() bool {
		fl, err := h.Fleet()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range fl {
			if d.Online && d.Status.Snapshot.Version == v {
				n++
			}
		}
		return n >= devs
	})
}

func TestPerfFullSnapshotPush(t *testing.T) {
	n := scale(100000, 10000000) // credentials, and as many revoked serials
	path, hash := cachedFixture(t, n)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	m := mosquittotest.Start(t)
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	h := runHQWith(t, m.URL(), hq.Config{Spool: spool})
	store := benchEdge(t, m.URL(), "d1", "", pub)
	waitVersion(t, h, 0, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	snd, err := hq.DialSender(ctx, hq.Config{Broker: m.URL(), Spool: spool, Logger: discardLogger()}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()

	start := time.Now()
	man, err := snd.PublishSnapshot(ctx, hq.SnapshotOffer{Site: "s1", Device: "d1", Version: 2, Path: path, ContentHash: hash})
	if err != nil {
		t.Fatal(err)
	}
	published := time.Since(start)
	r, err := snd.WaitResult(ctx, man.Transfer)
	if err != nil {
		t.Fatal(err)
	}
	applied := time.Since(start)
	if r.Status != proto.ResultDone || r.Version != 2 {
		t.Fatalf("result %+v, want done at version 2", r)
	}
	if got, err := store.ContentHash(); err != nil || got != hash {
		t.Fatalf("device content hash %x, %v; want %x", got, err, hash)
	}
	t.Logf("full snapshot: %d credentials + %d revoked serials, %.1f MB, %d chunks of %d KiB",
		n, n, float64(fi.Size())/1e6, man.Chunks, man.ChunkSize>>10)
	t.Logf("published (hash, spool copy, manifest, every chunk acked by the broker): %v", published.Round(time.Millisecond))
	t.Logf("publish to device's result done (chunks staged with fsync, verified, applied): %v (%.1f MB/s end to end)",
		applied.Round(time.Millisecond), float64(fi.Size())/1e6/applied.Seconds())
}

func TestPerfDeltaToManyDevices(t *testing.T) {
	devices := scale(10, 100)
	changes := scale(1000, 10000)
	const base = 10000 // credentials (and revoked serials) every device holds at version 1
	basePath, deltaPath, deltaSize := deltaFixture(t, base, changes)

	m := mosquittotest.Start(t)
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	h := runHQWith(t, m.URL(), hq.Config{Spool: spool})
	stores := make([]*policy.Store, devices)
	for i := range devices {
		stores[i] = benchEdge(t, m.URL(), fmt.Sprintf("d%03d", i), basePath, pub)
	}
	waitVersion(t, h, 1, devices)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	snd, err := hq.DialSender(ctx, hq.Config{Broker: m.URL(), Spool: spool, Logger: discardLogger()}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()

	start := time.Now()
	transfers := make([]string, devices)
	for i := range devices {
		man, err := snd.PublishSnapshot(ctx, hq.SnapshotOffer{Site: "s1", Device: fmt.Sprintf("d%03d", i), Version: 2, From: 1, Path: deltaPath})
		if err != nil {
			t.Fatal(err)
		}
		transfers[i] = man.Transfer
	}
	published := time.Since(start)
	for i, id := range transfers {
		r, err := snd.WaitResult(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != proto.ResultDone || r.Version != 2 {
			t.Fatalf("device %d: result %+v, want done at version 2", i, r)
		}
	}
	applied := time.Since(start)
	want, err := stores[0].ContentHash()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		if v, err := s.Version(); err != nil || v != 2 {
			t.Fatalf("device %d at version %d, %v; want 2", i, v, err)
		}
		if got, err := s.ContentHash(); err != nil || got != want {
			t.Fatalf("device %d content hash %x, %v; device 0 has %x", i, got, err, want)
		}
	}
	t.Logf("delta of %d changes (%.0f KB) to %d devices: published to all in %v, applied by all in %v",
		changes, float64(deltaSize)/1e3, devices, published.Round(time.Millisecond), applied.Round(time.Millisecond))
}

// deltaFixture writes a policy store at version 1 holding base credentials
// (and as many revoked serials), for every device to start from, and a
// delta of changes changes from it to version 2: half of them replace
// entries, a quarter add credentials, a quarter delete revoked serials. It
// returns their paths and the delta's size.
func deltaFixture(t *testing.T, base, changes int) (basePath, deltaPath string, deltaSize int64) {
	t.Helper()
	dir := t.TempDir()
	s, err := policy.Open(filepath.Join(dir, policyPath), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { _, err := writeFixtureSnapshot(pw, base, 1, "old-"); pw.CloseWithError(err) }()
	if err := s.ApplyFullStream(t.Context(), 1, pr); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	basePath = filepath.Join(dir, "base.db")
	if err := os.Rename(filepath.Join(dir, policyPath), basePath); err != nil {
		t.Fatal(err)
	}

	deltaPath = filepath.Join(dir, "delta")
	f, err := os.Create(deltaPath)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := policy.NewDeltaEncoder(f, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint32(changes / 2) {
		if err := enc.Put(policy.Entry{Credential: fixtureCred(i * 7919 % uint32(base)), Person: "old-" + strconv.Itoa(int(i%1000+1)%1000)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range uint32(changes / 4) {
		if err := enc.Put(policy.Entry{Credential: fixtureCred(uint32(base) + i), Person: "old-1"}); err != nil {
			t.Fatal(err)
		}
		if err := enc.Delete(fixtureRevoked(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(deltaPath)
	if err != nil {
		t.Fatal(err)
	}
	return basePath, deltaPath, fi.Size()
}
