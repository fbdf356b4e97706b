package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/export"
	"github.com/tobira-ac/tobira/internal/signed"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// sink is a SnapshotSink in memory.
type sink struct {
	mu      sync.Mutex
	version uint64
	content []byte
}

func (s *sink) Version() (uint64, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.version, nil }
func (s *sink) ApplyFullStream(_ context.Context, v uint64, r io.Reader) error {
	b, err := io.ReadAll(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version, s.content = v, b
	return err
}
func (s *sink) ApplyDeltaStream(context.Context, uint64, uint64, io.Reader) error {
	return errors.New("no deltas here")
}
func (s *sink) ContentHash() ([32]byte, error) { return [32]byte{}, nil }

// TestAdminCommands runs keygen, serve with a spool, snapshot publish,
// command send, events (CSV) and fleet against an edge on the embedded
// broker.
func TestAdminCommands(t *testing.T) {
	ctx, brk := startBroker(t)
	dir := t.TempDir()
	db, spool, prefix := filepath.Join(dir, "hq.db"), filepath.Join(dir, "spool"), filepath.Join(dir, "hq")
	var out bytes.Buffer
	if err := run(ctx, []string{"keygen", "--out", prefix}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	pub, err := signed.ReadPublicKey(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	var serveLog lockedLog
	go func() {
		served <- run(serveCtx, []string{"serve", "--broker", brk.URL(), "--db", db, "--spool", spool}, io.Discard, &serveLog)
	}()

	ob, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	for _, door := range []string{"front", "back", "front"} {
		if _, err := ob.Append(proto.Event{Time: time.Now(), Type: "decision", Door: door, Reason: "enrolled", Granted: true}); err != nil {
			t.Fatal(err)
		}
	}
	var unlocked []string
	var mu sync.Mutex
	sk := &sink{}
	edge, err := tsync.NewEdge(tsync.EdgeConfig{Broker: brk.URL(), Site: "s1", Device: "d1", Keys: []ed25519.PublicKey{pub},
		Snapshots: sk, NeedInterval: 200 * time.Millisecond,
		Commands: tsync.CommandFunc(func(_ context.Context, c proto.Command) error {
			mu.Lock()
			defer mu.Unlock()
			unlocked = append(unlocked, c.Door)
			return nil
		}),
		Status: tsync.StatusFunc(func(context.Context) (proto.Status, error) {
			v, _ := sk.Version()
			return proto.Status{Version: "edge-test", Snapshot: proto.SnapshotStatus{Version: v}}, nil
		}),
	}, ob)
	if err != nil {
		t.Fatal(err)
	}
	edgeCtx, stopEdge := context.WithCancel(ctx)
	edgeDone := make(chan error, 1)
	go func() { edgeDone <- edge.Run(edgeCtx) }()
	if err := edge.WaitDrained(ctx); err != nil {
		t.Fatalf("events not acknowledged: %v\n%s", err, serveLog.String())
	}

	payload := filepath.Join(dir, "v7.snap")
	os.WriteFile(payload, bytes.Repeat([]byte("policy"), 50000), 0o600)
	out.Reset()
	if err := run(ctx, []string{"snapshot", "publish", "--broker", brk.URL(), "--key", prefix + ".key", "--file", payload,
		"--version", "7", "--site", "s1", "--device", "d1", "--spool", spool, "--chunk-size", "65536", "--wait", "30s"}, &out, &out); err != nil {
		t.Fatalf("snapshot publish: %v\n%s", err, &out)
	}
	if v, _ := sk.Version(); v != 7 || !strings.Contains(out.String(), `"status":"done"`) {
		t.Fatalf("after publish the device holds version %d; output:\n%s", v, &out)
	}
	out.Reset()
	if err := run(ctx, []string{"command", "send", "--broker", brk.URL(), "--key", prefix + ".key", "--site", "s1", "--device", "d1",
		"--action", "unlock", "--door", "front"}, &out, &out); err != nil {
		t.Fatalf("command send: %v\n%s", err, &out)
	}
	mu.Lock()
	if len(unlocked) != 1 || unlocked[0] != "front" {
		t.Fatalf("edge carried out %v, want one unlock of front", unlocked)
	}
	mu.Unlock()
	stopEdge()
	<-edgeDone
	// The edge said "offline" before it returned; let HQ store it before
	// stopping (an integration deadline on the broker's delivery).
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(serveLog.String(), `msg="device offline" site=s1 device=d1`); {
		if time.Now().After(deadline) {
			t.Fatalf("HQ never stored the edge's offline status:\n%s", serveLog.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopServe()
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}

	out.Reset()
	if err := run(ctx, []string{"events", "--db", db, "--door", "front", "--format", "csv"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(export.CSVHeader, ",") || rows[1][2] != "1" || rows[2][2] != "3" {
		t.Fatalf("events CSV = %v, want the header and seqs 1 and 3", rows)
	}
	out.Reset()
	if err := run(ctx, []string{"fleet", "--db", db, "--spool", spool, "--format", "json"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var d hq.DeviceInfo
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("fleet output %q: %v", &out, err)
	}
	if d.Site != "s1" || d.Device != "d1" || d.Online || d.Acked != 3 || d.ExpectedVersion != 7 || d.Status.Version != "" && d.Drift {
		t.Fatalf("fleet entry %+v; want s1/d1 offline after its clean stop, acked 3, expected version 7", d)
	}
}

// lockedLog is a log writer that the test may read while the service
// writes.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
