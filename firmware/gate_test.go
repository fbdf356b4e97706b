package firmware

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHealthGate installs real binaries and drives restart cycles: a good
// release commits; one that exits at start, one that crash-loops and one
// that never reports healthy all roll back to the previous release.
func TestHealthGate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		release  string
		guard    bool     // ExecStartPre guard in the simulated unit
		env      []string // for the fake binaries
		wantRuns []string // what each start printed
		want     Status
	}{
		{
			name: "good release commits", release: "v2", guard: true,
			wantRuns: []string{"2.0.0 healthy healthy"},
			want: Status{Running: "2.0.0", Committed: "2.0.0", Previous: "1.0.0",
				Last: &Result{Version: "2.0.0", From: "1.0.0", Outcome: OutcomeCommitted, Attempts: 1}},
		},
		{
			name: "good release commits without guard", release: "v2",
			wantRuns: []string{"2.0.0 healthy healthy"},
			want: Status{Running: "2.0.0", Committed: "2.0.0", Previous: "1.0.0",
				Last: &Result{Version: "2.0.0", From: "1.0.0", Outcome: OutcomeCommitted, Attempts: 1}},
		},
		{
			name: "exit at start rolls back", release: "v2-exit", guard: true,
			wantRuns: []string{"2.0.0 exit-at-start exit", "2.0.0 exit-at-start exit", "2.0.0 exit-at-start exit", "1.0.0 healthy healthy"},
			want: Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"},
				Last: &Result{Version: "2.0.0", From: "1.0.0", Outcome: OutcomeRolledBack, Reason: ReasonCrashLoop, Attempts: 4}},
		},
		{
			name: "crash loop rolls back through the guard", release: "v2-crash", guard: true,
			wantRuns: []string{"2.0.0 crash crash", "2.0.0 crash crash", "2.0.0 crash crash", "1.0.0 healthy healthy"},
			want: Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"},
				Last: &Result{Version: "2.0.0", From: "1.0.0", Outcome: OutcomeRolledBack, Reason: ReasonCrashLoop, Attempts: 4}},
		},
		{
			name: "crash loop rolls back through Boot alone", release: "v2-crash",
			wantRuns: []string{"2.0.0 crash crash", "2.0.0 crash crash", "2.0.0 crash crash", "2.0.0 crash rolled-back", "1.0.0 healthy healthy"},
			want: Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"},
				Last: &Result{Version: "2.0.0", From: "1.0.0", Outcome: OutcomeRolledBack, Reason: ReasonCrashLoop, Attempts: 4}},
		},
		{
			name: "never healthy rolls back at the deadline", release: "v2-neverhealthy", guard: true,
			env:      []string{"FW_DEADLINE=300ms"},
			wantRuns: []string{"2.0.0 never-healthy supervise-ended", "1.0.0 healthy healthy"},
			want: Status{Running: "1.0.0", Committed: "1.0.0", Previous: "1.0.0", Bad: []string{"2.0.0"},
				Last: &Result{Version: "2.0.0", From: "1.0.0", Outcome: OutcomeRolledBack, Reason: ReasonHealthDeadline, Attempts: 1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			u := newUpdater(t, root)
			installFile(t, u, "1.0.0", "v1")
			installFile(t, u, "2.0.0", tc.release)
			if st, err := ReadStatus(root); err != nil || st.Pending != "2.0.0" || st.Running != "2.0.0" {
				t.Fatalf("after activate: %+v, %v; want 2.0.0 pending and current", st, err)
			}
			runs := systemd(t, root, tc.guard, 8, tc.env...)
			var got []string
			for _, r := range runs {
				got = append(got, r.out)
			}
			if !slices.Equal(got, tc.wantRuns) {
				t.Errorf("starts printed\n%q\nwant\n%q", got, tc.wantRuns)
			}
			st, err := ReadStatus(root)
			if err != nil {
				t.Fatal(err)
			}
			checkStatus(t, st, tc.want)
			if _, err := os.Stat(filepath.Join(root, currentLink, BinaryName)); err != nil {
				t.Errorf("current binary: %v", err)
			}
		})
	}
}

func checkStatus(t *testing.T, got, want Status) {
	t.Helper()
	if got.Running != want.Running || got.Committed != want.Committed || got.Pending != want.Pending ||
		got.Previous != want.Previous || !slices.Equal(got.Bad, want.Bad) || got.Floor != want.Floor {
		t.Errorf("status %+v\nwant   %+v", got, want)
	}
	switch {
	case want.Last == nil && got.Last != nil:
		t.Errorf("last result %+v, want none", *got.Last)
	case want.Last != nil && got.Last == nil:
		t.Errorf("no last result, want %+v", *want.Last)
	case want.Last != nil:
		g := *got.Last
		if g.At.IsZero() {
			t.Errorf("last result without time: %+v", g)
		}
		g.At = want.Last.At
		if g != *want.Last {
			t.Errorf("last result %+v\nwant        %+v", g, *want.Last)
		}
	}
}

// TestRolledBackReleaseRefused: a release that rolled back is not
// installed again, and the next release can be.
func TestRolledBackReleaseRefused(t *testing.T) {
	root := t.TempDir()
	u := newUpdater(t, root)
	installFile(t, u, "1.0.0", "v1")
	installFile(t, u, "2.0.0", "v2-crash")
	systemd(t, root, true, 8)
	m := manifestFor(t, "2.0.0", fw["v2-crash"])
	if _, err := u.Install(context.Background(), sign(t, m, testKey("release")), FileFetcher{Path: fw["v2-crash"]}); !errors.Is(err, ErrKnownBad) {
		t.Fatalf("reinstall of a rolled-back release: %v, want ErrKnownBad", err)
	}
	installFile(t, u, "2.0.1", "v2")
	runs := systemd(t, root, true, 8)
	if len(runs) != 1 || !strings.HasSuffix(runs[0].out, "healthy") {
		t.Fatalf("runs %v", runs)
	}
	st, err := ReadStatus(root)
	if err != nil || st.Committed != "2.0.1" {
		t.Fatalf("status %+v, %v; want 2.0.1 committed", st, err)
	}
	// Commit pruned every slot but current and previous.
	entries, err := os.ReadDir(filepath.Join(root, releasesDir))
	if err != nil {
		t.Fatal(err)
	}
	var slots []string
	for _, e := range entries {
		slots = append(slots, e.Name())
	}
	if !slices.Equal(slots, []string{"1.0.0", "2.0.1"}) {
		t.Errorf("slots after commit %v, want [1.0.0 2.0.1]", slots)
	}
}
