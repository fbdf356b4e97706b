package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/broker"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// TestServeAndEvents runs `tobira-hq serve` against the embedded broker, has
// an edge send three events through it, then lists them with `events`.
func TestServeAndEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	brk, err := broker.Start(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	dir := t.TempDir()
	db := filepath.Join(dir, "hq.db")

	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	var serveLog bytes.Buffer
	go func() {
		served <- run(serveCtx, []string{"serve", "--broker", brk.URL(), "--db", db}, &bytes.Buffer{}, &serveLog)
	}()

	ob, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	for i := range 3 {
		if _, err := ob.Append(proto.Event{Time: time.Now(), Type: "decision", Door: "front", Reason: "not_enrolled", DecisionUS: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	edge, err := tsync.NewEdge(tsync.EdgeConfig{Broker: brk.URL(), Site: "s1", Device: "d1"}, ob)
	if err != nil {
		t.Fatal(err)
	}
	edgeCtx, stopEdge := context.WithCancel(ctx)
	edgeDone := make(chan error, 1)
	go func() { edgeDone <- edge.Run(edgeCtx) }()
	if err := edge.WaitDrained(ctx); err != nil {
		t.Fatalf("events not acknowledged by tobira-hq: %v\n%s", err, &serveLog)
	}
	stopEdge()
	<-edgeDone
	stopServe()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("serve: %v", err)
	}

	var out bytes.Buffer
	if err := run(ctx, []string{"events", "--db", db, "--site", "s1", "--device", "d1"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	var seqs []uint64
	for sc.Scan() {
		var ev proto.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("events printed a non-JSON line %q: %v", sc.Text(), err)
		}
		seqs = append(seqs, ev.Seq)
	}
	if len(seqs) != 3 || seqs[0] != 1 || seqs[2] != 3 {
		t.Errorf("events listed seqs %v, want [1 2 3]", seqs)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"bogus"}, {"events", "--db", "x", "--granted", "maybe"},
		{"events", "--db", "x", "--from", "yesterday"}, {"events", "--format", "xml"}, {"keygen"},
		{"snapshot", "publish", "--file", "f"}, {"command", "send", "--site", "s1"}, {"fleet", "extra"}} {
		if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want usage error", args, err)
		}
	}
}

func TestReleaseUsage(t *testing.T) {
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"release"}, &bytes.Buffer{}, &errOut)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "no release command") {
		t.Errorf("release without a command: %v", err)
	}
}
