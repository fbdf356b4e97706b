package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/cmd/internal/cli/clitest"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// TestServeAndEvents runs `tobira-hq serve` against the embedded broker, has
// an edge send three events through it, then lists them with `events`.
func TestServeAndEvents(t *testing.T) {
	ctx, brk := startBroker(t)
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
		{"snapshot", "publish", "--file", "f"}, {"command", "send", "--site", "s1"}, {"fleet", "extra"},
		{"snapshot"}, {"command"}, {"crl"}, {"import"}, {"enroll", "bogus"}, {"serve", "-db", "x"},
		{"release", "rollout"}, {"snapshot", "publish", "--file", "f", "--registry", "r.db", "--version", "1"}} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, cli.ErrUsage) || cli.ExitCode(err, io.Discard) != 2 {
			t.Errorf("run(%q) = %v, want usage error (exit status 2)", args, err)
		}
	}
}

func TestReleaseUsage(t *testing.T) {
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"release"}, &bytes.Buffer{}, &errOut)
	if !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "tobira-hq release: missing command") {
		t.Errorf("release without a command: %v", err)
	}
}

// TestHelp runs -h, --help and help for every command of the tree.
func TestHelp(t *testing.T) {
	src := settingsSource{lookupEnv: noEnv}
	clitest.CheckHelp(t, newRoot(src), func(args []string, stdout, stderr io.Writer) error {
		return cli.Execute(t.Context(), newRoot(src), args, stdout, stderr)
	})
}

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// TestCommandLine checks the examples on tobira-hq: help at every
// level exits 0, the listed groups exist, flags go after the subcommand,
// and errors name the full command.
func TestCommandLine(t *testing.T) {
	var lines []clitest.Line
	for _, l := range []struct {
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{[]string{"help"}, 0, "Usage:\n  tobira-hq [flags]\n  tobira-hq [command]", ""},
		{[]string{"-h"}, 0, "snapshot", ""},
		{[]string{"--help"}, 0, "release", ""},
		{[]string{"snapshot", "--help"}, 0, "tobira-hq snapshot [command]", ""},
		{[]string{"command", "-h"}, 0, "send", ""},
		{[]string{"enroll", "help"}, 0, "tobira-hq enroll [command]", ""},
		{[]string{"help", "release", "publish"}, 0, "--broker string", ""},
		{[]string{"snapshot"}, 2, "", "tobira-hq snapshot: missing command: want publish\nRun 'tobira-hq snapshot --help' for usage."},
		{[]string{"release", "publish", "--broker", "tcp://127.0.0.1:1", "--site", "s1", "--device", "d1", "r.json", "--key", "/nonexistent/hq.key"},
			1, "", "tobira-hq release publish: read key /nonexistent/hq.key"},
		{[]string{"release", "publish", "r.json", "--broker", "tcp://127.0.0.1:1"}, 2, "",
			"tobira-hq release publish: publish needs --key, --site, and a --device or --group"},
		{[]string{"release", "publish", "--bogus"}, 2, "", "tobira-hq release publish: unknown flag: --bogus"},
		{[]string{"release", "rollout"}, 2, "", `tobira-hq release rollout: required flag(s) "version" not set`},
		{[]string{"helpp"}, 2, "", `tobira-hq: unknown command "helpp"`},
		{[]string{"help", "snapshot", "bogus"}, 2, "", `tobira-hq help: unknown help topic "snapshot bogus"`},
	} {
		lines = append(lines, clitest.Line{Args: l.args, Code: l.wantCode, Out: l.wantOut, Err: l.wantErr})
	}
	clitest.CheckLines(t, func(args []string, stdout, stderr io.Writer) error {
		return cli.Execute(t.Context(), newRoot(settingsSource{lookupEnv: noEnv}), args, stdout, stderr)
	}, lines)
}
