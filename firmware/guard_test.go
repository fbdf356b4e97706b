package firmware

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
)

// TestGuardStates: Guard finishes what a power cut interrupted and counts
// starts once per invocation.
func TestGuardStates(t *testing.T) {
	since := testNow.Add(-time.Minute)
	trial := State{Committed: "1.0.0", Previous: "1.0.0", Pending: "2.0.0", PendingSince: since}
	with := func(f func(*State)) State { s := trial; f(&s); return s }
	for _, tc := range []struct {
		name       string
		current    string
		st         State
		invocation string
		now        time.Time
		want       Status
		wantEnded  Outcome
	}{
		{"no trial", "1.0.0", State{Committed: "1.0.0"}, "a", testNow,
			Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0"}, ""},
		{"first start of a trial", "2.0.0", trial, "a", testNow,
			Status{Running: "2.0.0", Committed: "1.0.0", Pending: "2.0.0", Previous: "1.0.0", Attempts: 1}, ""},
		{"same invocation counted once", "2.0.0", with(func(s *State) { s.BootAttempts, s.LastInvocation = 1, "a" }), "a", testNow,
			Status{Running: "2.0.0", Committed: "1.0.0", Pending: "2.0.0", Previous: "1.0.0", Attempts: 1}, ""},
		{"new invocation counted", "2.0.0", with(func(s *State) { s.BootAttempts, s.LastInvocation = 1, "a" }), "b", testNow,
			Status{Running: "2.0.0", Committed: "1.0.0", Pending: "2.0.0", Previous: "1.0.0", Attempts: 2}, ""},
		{"attempts exhausted", "2.0.0", with(func(s *State) { s.BootAttempts = 3 }), "", testNow,
			Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"}}, OutcomeRolledBack},
		{"deadline passed before the start", "2.0.0", trial, "", since.Add(DefaultHealthDeadline + time.Second),
			Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"}}, OutcomeRolledBack},
		{"clock behind the switch (no RTC)", "2.0.0", trial, "", since.Add(-24 * time.Hour),
			Status{Running: "2.0.0", Committed: "1.0.0", Pending: "2.0.0", Previous: "1.0.0", Attempts: 1}, ""},
		{"activation cut before the switch", "1.0.0", trial, "", testNow,
			Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0"}, OutcomeAborted},
		{"rollback cut before the switch", "2.0.0", with(func(s *State) { s.RollingBack = ReasonCrashLoop }), "", testNow,
			Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"}}, OutcomeRolledBack},
		{"rollback cut after the switch", "1.0.0", with(func(s *State) { s.RollingBack = ReasonCrashLoop }), "", testNow,
			Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"}}, OutcomeRolledBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.current, "1.0.0", tc.st, "2.0.0")
			g, err := Guard(context.Background(), GateOptions{Root: root, InvocationID: tc.invocation, Clock: clocktest.New(tc.now)})
			if err != nil {
				t.Fatal(err)
			}
			if (g.Ended == nil) != (tc.wantEnded == "") || (g.Ended != nil && g.Ended.Outcome != tc.wantEnded) {
				t.Errorf("ended %+v, want outcome %q", g.Ended, tc.wantEnded)
			}
			st, err := ReadStatus(root)
			if err != nil {
				t.Fatal(err)
			}
			st.Last = nil
			checkStatus(t, st, tc.want)
			if g.Running != tc.want.Running {
				t.Errorf("guard says running %s, want %s", g.Running, tc.want.Running)
			}
		})
	}
}

// TestSuperviseAndCommit: with a fake clock, ReportHealthy before the
// deadline commits and raises the floor; the deadline rolls back.
func TestSuperviseAndCommit(t *testing.T) {
	for _, healthy := range []bool{true, false} {
		t.Run(map[bool]string{true: "healthy", false: "deadline"}[healthy], func(t *testing.T) {
			st := State{Committed: "1.0.0", Previous: "1.0.0", Pending: "2.0.0", PendingFloor: "1.5.0", PendingSince: testNow, Floor: "1.0.0"}
			root := fakeRoot(t, "2.0.0", "1.0.0", st, "2.0.0")
			clk := clocktest.New(testNow)
			opts := GateOptions{Root: root, Clock: clk, HealthDeadline: time.Minute}
			trial, err := Boot(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !trial.Pending() || trial.Version() != "2.0.0" || !trial.Deadline().Equal(testNow.Add(time.Minute)) {
				t.Fatalf("trial %+v", trial)
			}
			done := make(chan error, 1)
			go func() { done <- trial.Supervise(context.Background()) }()
			for clk.Pending() == 0 {
				time.Sleep(time.Millisecond)
			}
			want := Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Floor: "1.0.0", Bad: []string{"2.0.0"}}
			if healthy {
				clk.Advance(59 * time.Second)
				res, err := trial.ReportHealthy(context.Background())
				if err != nil || res.Outcome != OutcomeCommitted {
					t.Fatalf("ReportHealthy: %+v, %v", res, err)
				}
				if err := <-done; err != nil {
					t.Fatalf("Supervise after commit: %v", err)
				}
				want = Status{Running: "2.0.0", Committed: "2.0.0", Previous: "1.0.0", Floor: "1.5.0"}
			} else {
				clk.Advance(time.Minute)
				if err := <-done; !errors.Is(err, ErrHealthDeadline) {
					t.Fatalf("Supervise at the deadline: %v", err)
				}
				if _, err := trial.ReportHealthy(context.Background()); !errors.Is(err, ErrRolledBack) {
					t.Errorf("ReportHealthy after rollback: %v, want ErrRolledBack", err)
				}
			}
			st2, err := ReadStatus(root)
			if err != nil {
				t.Fatal(err)
			}
			st2.Last = nil
			checkStatus(t, st2, want)
		})
	}
}

// TestManualRollback: an admin switches back to previous without a trial.
func TestManualRollback(t *testing.T) {
	root := fakeRoot(t, "2.0.0", "1.0.0", State{Committed: "2.0.0"}, "2.0.0")
	res, err := Rollback(context.Background(), GateOptions{Root: root})
	if err != nil || res.Outcome != OutcomeRolledBack || res.Reason != ReasonManual || res.Version != "2.0.0" {
		t.Fatalf("Rollback: %+v, %v", res, err)
	}
	st, err := ReadStatus(root)
	if err != nil {
		t.Fatal(err)
	}
	st.Last = nil
	checkStatus(t, st, Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"}})
	if _, err := Rollback(context.Background(), GateOptions{Root: root}); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("second Rollback: %v, want ErrNotInstalled", err)
	}
}
