package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestSweepDir: sweepDir removes only a directory whose owner lock is
// free and whose postmaster, if any, is gone.
func TestSweepDir(t *testing.T) {
	const noProcess = 1 << 30 // above any pid_max
	for _, tc := range []struct {
		name    string
		owner   string // "": none, "free", "held"
		pid     int    // postmaster.pid's; 0: none
		removed bool
		err     bool
	}{
		{name: "no owner file (being made, or an older pgtest's)", owner: ""},
		{name: "owner alive", owner: "held"},
		{name: "owner alive, postmaster gone", owner: "held", pid: noProcess},
		{name: "owner dead, no server", owner: "free", removed: true},
		{name: "owner dead, postmaster gone", owner: "free", pid: noProcess, removed: true},
		{name: "owner dead, postmaster running", owner: "free", pid: os.Getpid(), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tempPattern+"x")
			if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
				t.Fatal(err)
			}
			switch tc.owner {
			case "free":
				f, err := lockOwner(dir)
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
			case "held":
				f, err := lockOwner(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
			}
			if tc.pid != 0 {
				// The format of PostgreSQL 15; no segment has id -1.
				pidFile := fmt.Sprintf("%d\n%s\n1700000000\n5432\n%s\n127.0.0.1\n        1        -1\nready   \n", tc.pid, dir, dir)
				if err := os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte(pidFile), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			removed, err := sweepDir(dir)
			if removed != tc.removed || (err != nil) != tc.err {
				t.Fatalf("sweepDir = %v, %v; want removed %v, an error %v", removed, err, tc.removed, tc.err)
			}
			_, statErr := os.Stat(dir)
			if gone := os.IsNotExist(statErr); gone != tc.removed {
				t.Fatalf("directory gone %v (%v), want %v", gone, statErr, tc.removed)
			}
		})
	}
}
