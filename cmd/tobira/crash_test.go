package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// envRunChild makes the test binary run `tobira run --config <value>` as
// its whole life (TestMain): the process TestRunLockdownSurvivesSIGKILL
// kills.
const envRunChild = "TOBIRA_TEST_RUN_CONFIG"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(envRunChild); cfg != "" {
		testRelay() // the relay line, registered as in every test of run
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := run(ctx, []string{"run", "--config", cfg}, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "tobira run:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startRunChild runs `tobira run` in a child process writing to logs; the
// test kills it.
func startRunChild(t *testing.T, cfg string, logs *syncWriter) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRunChild+"="+cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestRunLockdownSurvivesSIGKILL (issue 12, item 4): HQ locks the door of
// a running `tobira run` down, the process is SIGKILLed and started again;
// it comes back locked down, says the mode came from HQ, refuses the card
// it granted before, and only HQ's release restores normal operation.
func TestRunLockdownSurvivesSIGKILL(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	hqDone := make(chan error, 1)
	r := newRunRig(t, ctx, hqDone)
	logs := &syncWriter{w: &bytes.Buffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tobira run output:\n%s", logs.w.String())
		}
	})
	front := func() proto.DoorStatus {
		if d := r.device(); d.Online && len(d.Status.Doors) == 1 {
			return d.Status.Doors[0]
		}
		return proto.DoorStatus{}
	}
	// waitStarted waits for the status of a run started at since.
	waitStarted := func(since time.Time) proto.DoorStatus {
		t.Helper()
		waitFor(t, "the device's status at HQ", 30*time.Second, func() bool {
			d := r.device()
			return d.Online && d.Status.Time.After(since) && len(d.Status.Doors) == 1
		})
		return front()
	}

	first := startRunChild(t, r.cfg, logs)
	if st := waitStarted(time.Now().Add(-time.Second)); st.Mode != "normal" || st.ModeSource != proto.ModeSourceDefault {
		t.Fatalf("front door at start = %+v, want normal from default", st)
	}
	r.pushSnapshot(ctx, logs.w)
	if d := r.tap(1); !d.Granted {
		t.Fatalf("first tap = %+v, want granted", d)
	}
	r.command(ctx, proto.ActionLockdown)
	waitFor(t, "the lockdown in the status", 10*time.Second, func() bool { return front().Mode == "locked_down" })

	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	restarted := time.Now()
	startRunChild(t, r.cfg, logs)
	if st := waitStarted(restarted); st.Mode != "locked_down" || st.ModeSource != proto.ModeSourceHQ {
		t.Fatalf("front door after SIGKILL and restart = %+v, want locked_down from hq", st)
	}
	if d := r.tap(2); d.Granted || d.Reason != "locked_down" {
		t.Fatalf("tap after the restart = %+v, want refused: locked_down", d)
	}

	r.command(ctx, proto.ActionRelease)
	waitFor(t, "the release in the status", 10*time.Second, func() bool {
		st := front()
		return st.Mode == "normal" && st.ModeSource == proto.ModeSourceHQ
	})
	if d := r.tap(3); !d.Granted {
		t.Fatalf("tap after HQ's release = %+v, want granted", d)
	}
}
