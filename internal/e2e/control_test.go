package e2e_test

// Integration test of the HQ -> device direction and of status on a real
// mosquitto: signed commands with results, chunked snapshots resumed after
// a network outage, the retained status and the last will.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/faultproxy"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// memSink is a SnapshotSink in memory: full replaces, delta appends.
type memSink struct {
	mu      sync.Mutex
	version uint64
	content []byte
}

func (s *memSink) Version() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, nil
}

func (s *memSink) ApplyFullStream(_ context.Context, v uint64, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version, s.content = v, b
	return nil
}

func (s *memSink) ApplyDeltaStream(_ context.Context, from, to uint64, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if from != s.version {
		return errors.New("delta does not fit")
	}
	s.version, s.content = to, append(s.content, b...)
	return nil
}

func (s *memSink) ContentHash() ([32]byte, error) { return [32]byte{}, nil }

// fleetEntry returns HQ's fleet view of s1/d1.
func fleetEntry(t *testing.T, h *hq.Service) hq.DeviceInfo {
	t.Helper()
	fl, err := h.Fleet()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range fl {
		if d.Site == "s1" && d.Device == "d1" {
			return d
		}
	}
	return hq.DeviceInfo{}
}

// writeFile writes b to a new file in dir.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// unlockDone sends s1/d1 an unlock of main-gate through s and waits for
// its done result.
func unlockDone(ctx context.Context, t *testing.T, s *hq.Sender) proto.Command {
	t.Helper()
	c, err := s.SendCommand(ctx, proto.Command{Site: "s1", Device: "d1", Action: proto.ActionUnlock, Door: "main-gate"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.WaitResult(ctx, c.ID); err != nil || r.Status != proto.ResultDone {
		t.Fatalf("unlock result %+v, %v; want done", r, err)
	}
	return c
}

func TestCommandsSnapshotsAndStatus(t *testing.T) {
	m := mosquittotest.Start(t)
	p, err := faultproxy.Start(t.Context(), faultproxy.Config{Target: m.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	_, oldPub := func() (ed25519.PrivateKey, ed25519.PublicKey) { // a second pinned key, as during a rotation
		_, k, _ := signed.GenerateKey()
		return k, k.Public().(ed25519.PublicKey)
	}()
	spool := t.TempDir()

	h, err := hq.Open(hq.Config{Broker: m.URL(), Path: filepath.Join(t.TempDir(), "hq.db"), Spool: spool,
		ClientID: "hq", ConnectRetry: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(context.Background())
	hdone := make(chan error, 1)
	go func() { hdone <- h.Run(hctx) }()
	t.Cleanup(func() { hcancel(); <-hdone; h.Close() })

	var cmdMu sync.Mutex
	var got []proto.Command
	sink := &memSink{}
	ob := newOutbox(t)
	e, err := tsync.NewEdge(tsync.EdgeConfig{
		Broker: p.URL("tcp"), Site: "s1", Device: "d1", Keys: []ed25519.PublicKey{oldPub, pub},
		Commands: tsync.CommandFunc(func(_ context.Context, c proto.Command) error {
			cmdMu.Lock()
			defer cmdMu.Unlock()
			got = append(got, c)
			return nil
		}),
		Snapshots: sink,
		Status: tsync.StatusFunc(func(context.Context) (proto.Status, error) {
			v, _ := sink.Version()
			return proto.Status{Version: "test-1", Snapshot: proto.SnapshotStatus{Version: v},
				Doors: []proto.DoorStatus{{Name: "main-gate", State: "locked", Mode: "normal"}}, ClockTrusted: true}, nil
		}),
		NeedInterval: 300 * time.Millisecond, ConnectRetry: 100 * time.Millisecond, MaxReconnect: 200 * time.Millisecond,
		Logger: testLogger(t),
	}, ob)
	if err != nil {
		t.Fatal(err)
	}
	ectx, ecancel := context.WithCancel(context.Background())
	edone := make(chan error, 1)
	go func() { edone <- e.Run(ectx) }()
	t.Cleanup(func() { ecancel(); <-edone })

	waitFor(t, "HQ to see the device online", func() bool {
		d := fleetEntry(t, h)
		return d.Online && d.Status.Version == "test-1" && d.Status.ClockTrusted && len(d.Status.Doors) == 1
	})

	ctx, cancel := context.WithTimeout(t.Context(), linkDeadline)
	defer cancel()
	s, err := hq.DialSender(ctx, hq.Config{Broker: m.URL(), Spool: spool, Logger: testLogger(t)}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// A command is carried out once; its replay is refused.
	c := unlockDone(ctx, t, s)
	if _, err := s.SendCommand(ctx, c); err != nil { // the same ID again
		t.Fatal(err)
	}
	waitFor(t, "HQ to store the refusal of the replay", func() bool {
		r, ok, _ := h.Result(c.ID)
		return ok && r.Status == proto.ResultRefused
	})
	cmdMu.Lock()
	if len(got) != 1 || got[0].ID != c.ID || got[0].Door != "main-gate" {
		t.Fatalf("handler got %+v, want the unlock once", got)
	}
	cmdMu.Unlock()

	// A full snapshot in many chunks.
	v1 := make([]byte, 300<<10)
	rand.Read(v1)
	man, err := s.PublishSnapshot(ctx, hq.SnapshotOffer{Site: "s1", Device: "d1", Version: 1,
		Path: writeFile(t, t.TempDir(), "v1.snap", v1), ChunkSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.WaitResult(ctx, man.Transfer); err != nil || r.Status != proto.ResultDone || r.Version != 1 {
		t.Fatalf("snapshot v1 result %+v, %v; want done at version 1", r, err)
	}
	if sink.version != 1 || !bytes.Equal(sink.content, v1) {
		t.Fatal("sink does not hold snapshot v1")
	}

	// A delta published while the device is offline: the retained
	// manifest reaches it on reconnection, the chunks do not; the device
	// asks, and HQ re-sends them from its spool.
	p.SetDown(true)
	waitFor(t, "the last will to mark the device offline", func() bool { return !fleetEntry(t, h).Online })
	delta := bytes.Repeat([]byte("delta!"), 10000)
	man2, err := s.PublishSnapshot(ctx, hq.SnapshotOffer{Site: "s1", Device: "d1", Version: 2, From: 1,
		Path: writeFile(t, t.TempDir(), "v2.delta", delta), ChunkSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if d := fleetEntry(t, h); !d.Drift || d.ExpectedVersion != 2 {
		t.Fatalf("fleet %+v, want drift towards version 2 while the device is offline", d)
	}
	p.SetDown(false)
	if r, err := s.WaitResult(ctx, man2.Transfer); err != nil || r.Status != proto.ResultDone || r.Version != 2 {
		t.Fatalf("delta result %+v, %v; want done at version 2", r, err)
	}
	if !bytes.Equal(sink.content, append(append([]byte(nil), v1...), delta...)) {
		t.Fatal("sink does not hold v1 + delta")
	}
	waitFor(t, "the status to show version 2 without drift", func() bool {
		d := fleetEntry(t, h)
		return d.Online && !d.Drift && d.Status.Snapshot.Version == 2
	})

	// A clean stop says offline too.
	ecancel()
	if err := <-edone; err != nil {
		t.Fatal(err)
	}
	edone <- nil // for Cleanup
	waitFor(t, "the offline status after a clean stop", func() bool { return !fleetEntry(t, h).Online })
}
