package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// Outcome says how a release trial ended.
type Outcome string

// Outcomes of a trial, as reported to HQ.
const (
	// OutcomeCommitted: the release reported healthy and is now committed.
	OutcomeCommitted Outcome = "committed"
	// OutcomeRolledBack: the release failed its health gate; the previous
	// version runs again.
	OutcomeRolledBack Outcome = "rolled_back"
	// OutcomeAborted: the switch to the release did not complete (power cut
	// or kill during Activate); the previous version kept running.
	OutcomeAborted Outcome = "aborted"
)

// Reasons of a rollback (Result.Reason).
const (
	// ReasonCrashLoop: the release was started more than MaxAttempts times
	// without reporting healthy (exit at start, crash loop, watchdog kill).
	ReasonCrashLoop = "crash_loop"
	// ReasonHealthDeadline: the release did not report healthy within the
	// health deadline after the switch.
	ReasonHealthDeadline = "health_deadline"
	// ReasonManual: an admin asked for the rollback.
	ReasonManual = "manual"
)

// Result records the end of one release trial. The controller sends it to
// HQ so that a rollout can be watched; it names versions only.
type Result struct {
	// Version is the release that was on trial.
	Version string `json:"version"`
	// From is the version that ran before it.
	From string `json:"from,omitempty"`
	// Outcome says how the trial ended.
	Outcome Outcome `json:"outcome"`
	// Reason explains a rollback or an abort (Reason* constants).
	Reason string `json:"reason,omitempty"`
	// Attempts is how many times the release was started.
	Attempts int `json:"attempts"`
	// At is when the trial ended, by the device's clock.
	At time.Time `json:"at"`
}

// State is the persistent state of an update root (state.json).
type State struct {
	// Committed is the last version that reported healthy.
	Committed string `json:"committed,omitempty"`
	// Previous is the version to roll back to while a trial runs.
	Previous string `json:"previous,omitempty"`
	// Pending is the version on trial, "" if none.
	Pending string `json:"pending,omitempty"`
	// PendingFloor is the floor the pending release raises on commit.
	PendingFloor string `json:"pending_floor,omitempty"`
	// PendingSince is when current was switched to Pending.
	PendingSince time.Time `json:"pending_since,omitzero"`
	// BootAttempts counts the starts of Pending.
	BootAttempts int `json:"boot_attempts,omitempty"`
	// LastInvocation is the systemd INVOCATION_ID of the last counted
	// start, so that Guard and Boot in one start count it once.
	LastInvocation string `json:"last_invocation,omitempty"`
	// RollingBack is the reason of a rollback that has begun but not yet
	// finished (current may still point at Pending).
	RollingBack string `json:"rolling_back,omitempty"`
	// Floor is the anti-rollback floor: older releases are refused.
	Floor string `json:"floor,omitempty"`
	// Bad lists versions rolled back on this device (newest last).
	Bad []string `json:"bad,omitempty"`
	// Last is the result of the last trial.
	Last *Result `json:"last_result,omitempty"`
}

// maxBad bounds State.Bad.
const maxBad = 16

// loadState reads state.json; a missing file is the empty State.
func loadState(path string) (State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("read update state %s: %w", path, err)
	}
	return parseState(data, path)
}

// load reads the root's state and the version current points at.
func (l layout) load() (st State, current string, err error) {
	if st, err = loadState(l.state()); err != nil {
		return State{}, "", err
	}
	if current, err = l.linkVersion(currentLink); err != nil {
		return State{}, "", err
	}
	return st, current, nil
}

// parseState decodes and checks a state file.
func parseState(data []byte, path string) (State, error) {
	var st State
	if err := strictUnmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("%w: update state %s: %w", ErrMalformed, path, err)
	}
	for _, f := range []struct{ name, v string }{
		{"committed", st.Committed}, {"previous", st.Previous}, {"pending", st.Pending},
		{"pending_floor", st.PendingFloor}, {"floor", st.Floor},
	} {
		if _, err := optVersion(f.name, f.v); err != nil {
			return State{}, fmt.Errorf("update state %s: %w", path, err)
		}
	}
	if st.BootAttempts < 0 {
		return State{}, fmt.Errorf("%w: update state %s: boot_attempts %d", ErrMalformed, path, st.BootAttempts)
	}
	return st, nil
}

// saveState writes state.json atomically.
func saveState(path string, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode update state: %w", err)
	}
	return writeFileAtomic(path, append(data, '\n'), 0o644)
}

// markBad records v as rolled back on this device, keeping the newest
// maxBad versions.
func (st *State) markBad(v string) {
	if st.isBad(v) {
		return
	}
	st.Bad = append(st.Bad, v)
	if len(st.Bad) > maxBad {
		st.Bad = st.Bad[len(st.Bad)-maxBad:]
	}
}

// isBad reports whether v was rolled back on this device.
func (st *State) isBad(v string) bool { return slices.Contains(st.Bad, v) }
