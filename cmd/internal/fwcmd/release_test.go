package fwcmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
)

// lockedBuffer is an output the test reads while watchRollout writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write implements io.Writer.
func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written.
func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWatchRollout watches a release on trial until its device commits
// it: one line per interval, then the end.
func TestWatchRollout(t *testing.T) {
	dir := t.TempDir()
	report := func(st firmware.Status) {
		b, err := json.Marshal(firmware.Report{Device: "door-1", Status: st})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "door-1.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	report(firmware.Status{Running: "2.0.0", Committed: "1.0.0", Pending: "2.0.0"})
	clk := clocktest.New(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- watchRollout(t.Context(), clk, dir, "2.0.0", 10*time.Second, &out) }()
	for clk.Pending() == 0 {
		time.Sleep(time.Millisecond) // until the first round waits on its timer
	}
	report(firmware.Status{Running: "2.0.0", Committed: "2.0.0"})
	clk.Advance(10 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "2026-04-01T00:00:00Z release 2.0.0: 0 committed, 1 on trial, 0 rolled back, 0 not yet\n" +
		"2026-04-01T00:00:10Z release 2.0.0: 1 committed, 0 on trial, 0 rolled back, 0 not yet\n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}
