package e2e_test

// The edge killed with SIGKILL while it receives and applies a large full
// snapshot from HQ: a child process (this test binary, selected by
// environment) runs an Edge with a real policy.Store on a real mosquitto.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Environment of the snapshot child (see TestMain).
const (
	envSnapChild  = "TOBIRA_TEST_SNAP_CHILD"
	envSnapOutbox = "TOBIRA_TEST_SNAP_OUTBOX"
	envSnapPolicy = "TOBIRA_TEST_SNAP_POLICY"
	envSnapBroker = "TOBIRA_TEST_SNAP_BROKER"
	envSnapKey    = "TOBIRA_TEST_SNAP_KEY"
)

// policyPath is the name of the device's policy store in the snapshot tests.
const policyPath = "policy.db"

// fixtureCred returns credential i of the snapshot fixtures: one issuer,
// 4-byte serials in key order (as HQ sends them).
func fixtureCred(i uint32) credential.Credential {
	id := make([]byte, credential.KeyIDLen)
	id[0] = 0xC0
	return credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: id,
		Serial: binary.BigEndian.AppendUint32(nil, i|0x1000_0000)}
}

// fixtureRevoked returns revoked serial i (another serial range).
func fixtureRevoked(i uint32) policy.Revocation {
	c := fixtureCred(i)
	return policy.Revocation{IssuerKeyID: c.IssuerKeyID, Serial: binary.BigEndian.AppendUint32(nil, i|0x8000_0000)}
}

// writeFixtureSnapshot streams a full snapshot of version to w: n
// credentials and n revoked serials, 1000 people in group "staff", one door
// "gate". tag goes into every entry's person ID, so that two versions of
// the same size differ in content. It returns the content hash.
func writeFixtureSnapshot(w io.Writer, n int, version uint64, tag string) ([32]byte, error) {
	enc, err := policy.NewSnapshotEncoder(w, version)
	if err != nil {
		return [32]byte{}, err
	}
	items := []policy.Item{
		policy.Site{},
		policy.Schedule{ID: "always", Windows: []policy.Window{{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun", "holiday"}, Start: "00:00", End: "24:00"}}},
		policy.Door{ID: "gate", Groups: []string{"gates"}},
		policy.AccessLevel{ID: "staff-gates", Group: "staff", DoorGroup: "gates", Schedule: "always"},
	}
	for i := range 1000 {
		items = append(items, policy.Person{ID: tag + strconv.Itoa(i), Groups: []string{"staff"}})
	}
	for _, it := range items {
		if err := enc.Put(it); err != nil {
			return [32]byte{}, err
		}
	}
	for i := range uint32(n) {
		if err := enc.Put(policy.Entry{Credential: fixtureCred(i), Person: tag + strconv.Itoa(int(i%1000))}); err != nil {
			return [32]byte{}, err
		}
	}
	for i := range uint32(n) {
		if err := enc.Put(fixtureRevoked(i)); err != nil {
			return [32]byte{}, err
		}
	}
	return enc.Close()
}

// writeFixtureFile writes the fixture snapshot to path and returns its
// content hash.
func writeFixtureFile(t testing.TB, path string, n int, version uint64, tag string) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := writeFixtureSnapshot(f, n, version, tag)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatalf("write snapshot fixture %s: %v", path, err)
	}
	return h
}

// storeState opens the policy store at path and returns its version and
// content hash.
func storeState(t testing.TB, path string) (uint64, [32]byte) {
	t.Helper()
	s, err := policy.Open(path, discardLogger())
	if err != nil {
		t.Fatalf("open policy store after the kill: %v", err)
	}
	defer s.Close()
	v, err := s.Version()
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.ContentHash()
	if err != nil {
		t.Fatal(err)
	}
	return v, h
}

// storeStatus reports a policy store's version and content hash in status.
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
		return proto.Status{Version: "test", Snapshot: proto.SnapshotStatus{Version: v, Hash: hex.EncodeToString(h[:])}, ClockTrusted: true}, nil
	})
}

// snapChild is the edge process of TestSnapshotSurvivesSIGKILL: an Edge
// whose snapshot sink is the policy store, run until SIGTERM (exit 0) or
// SIGKILL.
func snapChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "snapshot child:", err); return 2 }
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	key, err := hex.DecodeString(os.Getenv(envSnapKey))
	if err != nil {
		return fail(err)
	}
	store, err := policy.Open(os.Getenv(envSnapPolicy), log)
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	ob, err := tsync.OpenOutbox(os.Getenv(envSnapOutbox))
	if err != nil {
		return fail(err)
	}
	defer ob.Close()
	e, err := tsync.NewEdge(tsync.EdgeConfig{
		Broker: os.Getenv(envSnapBroker), Site: "s1", Device: "d1",
		Keys: []ed25519.PublicKey{key}, Snapshots: store, Status: storeStatus(store),
		NeedInterval: 300 * time.Millisecond, StatusInterval: time.Second,
		ConnectRetry: 100 * time.Millisecond, MaxReconnect: 300 * time.Millisecond, Logger: log,
	}, ob)
	if err != nil {
		return fail(err)
	}
	if err := e.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// killPhase says what the child was doing when it was killed, from the
// files it leaves: building the new store aside (apply), holding staged
// chunks (transfer), or neither. It also returns how many chunks are
// staged.
func killPhase(t *testing.T, dir string) (string, int) {
	t.Helper()
	ob, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	transfer, have, chunks, err := ob.StagedTransfer()
	if cerr := ob.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, policyPath) + ".new"); err == nil {
		return "apply", have
	}
	switch {
	case transfer == "":
		return "idle", 0
	case have < chunks:
		return fmt.Sprintf("transfer (%d/%d chunks staged)", have, chunks), have
	}
	return fmt.Sprintf("before apply (%d/%d chunks staged)", have, chunks), have
}

func TestSnapshotSurvivesSIGKILL(t *testing.T) {
	n := 200000 // credentials, and as many revoked serials
	kills := scale(8, 20)
	dir := t.TempDir()
	storePath := filepath.Join(dir, policyPath)

	// The device holds version 1; HQ publishes version 2.
	s, err := policy.Open(storePath, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { _, err := writeFixtureSnapshot(pw, 1000, 1, "old-"); pw.CloseWithError(err) }()
	if err := s.ApplyFullStream(t.Context(), 1, pr); err != nil {
		t.Fatal(err)
	}
	oldHash, err := s.ContentHash()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	newPath := filepath.Join(t.TempDir(), "v2.snapshot")
	newHash := writeFixtureFile(t, newPath, n, 2, "new-")

	m := mosquittotest.Start(t)
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	h := runHQWith(t, m.URL(), hq.Config{Spool: spool})

	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, seed))
	t.Logf("kill seed %d", seed)
	logs := lockedBuffer{mu: &sync.Mutex{}, b: &bytes.Buffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			logs.mu.Lock()
			t.Logf("child output:\n%s", logs.b.String())
			logs.mu.Unlock()
		}
	})
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envSnapChild+"=1", envSnapOutbox+"="+filepath.Join(dir, "events.db"),
			envSnapPolicy+"="+storePath, envSnapBroker+"="+m.URL(), envSnapKey+"="+hex.EncodeToString(pub))
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd
	}
	checkStore := func(when string) bool {
		v, hash := storeState(t, storePath)
		switch {
		case v == 1 && hash == oldHash:
			return false
		case v == 2 && hash == newHash:
			return true
		}
		t.Fatalf("%s: the store holds version %d with hash %x, neither the old (1, %x) nor the new (2, %x)", when, v, hash, oldHash, newHash)
		return false
	}

	ctx, cancel := context.WithTimeout(t.Context(), linkDeadline)
	defer cancel()
	snd, err := hq.DialSender(ctx, hq.Config{Broker: m.URL(), Spool: spool, Logger: discardLogger()}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()

	lastStart := time.Now()
	cmd := child()
	// Small chunks make a long transfer, so that kills land in it; the
	// publication runs while the child is killed and restarted, and HQ
	// re-sends what the device asks for from its spool.
	published := make(chan error, 1)
	var man proto.Manifest
	go func() {
		var err error
		man, err = snd.PublishSnapshot(ctx, hq.SnapshotOffer{Site: "s1", Device: "d1", Version: 2, Path: newPath,
			ChunkSize: 16 << 10, ContentHash: newHash})
		published <- err
	}()
	phases := map[string]int{}
	staged := 0 // chunks staged at the last kill
	killed, applied := 0, false
	for ; killed < kills && !applied; killed++ {
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// A random moment of the child's life (sleeping picks the moment;
		// nothing waits on it for a result). The first kill comes soon
		// after the first chunks are staged, so that one surely lands in
		// the transfer.
		delay := time.Duration(50+rnd.IntN(1200)) * time.Millisecond
		if killed == 0 {
			waitFor(t, "the child to stage the transfer", func() bool {
				p, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.part"))
				return len(p) > 0
			})
			delay = time.Duration(rnd.IntN(200)) * time.Millisecond
		}
		select {
		case err := <-exited:
			t.Fatalf("child exited before its kill: %v", err)
		case <-time.After(delay):
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		phase, have := killPhase(t, dir)
		// Chunks on disk survive the kill: the next run resumes from
		// them, so the count never goes back while the transfer is staged.
		if have > 0 && have < staged {
			t.Fatalf("kill %d: %d chunks staged, fewer than the %d before: the transfer restarted", killed+1, have, staged)
		}
		staged = have
		phases[phase]++
		applied = checkStore(fmt.Sprintf("after kill %d (%s)", killed+1, phase))
		t.Logf("kill %d: %s; store holds the %s snapshot", killed+1, phase, map[bool]string{false: "old", true: "new"}[applied])
		lastStart = time.Now()
		cmd = child()
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	interrupted := 0
	for p, c := range phases {
		if p == "apply" || (len(p) > 8 && p[:8] == "transfer") {
			interrupted += c
		}
	}
	if interrupted == 0 {
		t.Fatalf("no kill interrupted the transfer or the apply (%v); the test proves nothing", phases)
	}

	// The last child finishes: HQ sees the new hash in a status the last
	// child made, and the transfer's result is done.
	waitFor(t, "HQ to see the new snapshot hash from the last child", func() bool {
		d := fleetEntry(t, h)
		return d.Online && d.Status.Time.After(lastStart) && d.Status.Snapshot.Version == 2 &&
			d.Status.Snapshot.Hash == hex.EncodeToString(newHash[:]) && !d.Drift
	})
	r, err := snd.WaitResult(ctx, man.Transfer)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != proto.ResultDone || r.Version != 2 {
		t.Fatalf("transfer result %+v, want done at version 2", r)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("last child after SIGTERM: %v", err)
	}
	if !checkStore("at the end") {
		t.Fatal("the store still holds the old snapshot")
	}
	t.Logf("%d kills (%v); %d chunks of %d bytes; the device reports the new hash %x", killed, phases, man.Chunks, man.ChunkSize, newHash[:8])
}
