package firmware

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// Defaults of the health gate.
const (
	DefaultMaxAttempts    = 3
	DefaultHealthDeadline = 5 * time.Minute
)

// GateOptions configures the health gate (Guard, Boot, Rollback).
type GateOptions struct {
	// Root is the update root.
	Root string
	// MaxAttempts is how many starts a release on trial gets; the next
	// start rolls it back. 0 means DefaultMaxAttempts.
	MaxAttempts int
	// HealthDeadline is how long after the switch a release may take to
	// report healthy. 0 means DefaultHealthDeadline; negative disables
	// the deadline (start attempts still bound the trial).
	HealthDeadline time.Duration
	// InvocationID identifies one start of the service (systemd's
	// $INVOCATION_ID), so that Guard in ExecStartPre and Boot in the binary
	// count that start once. "" counts every call.
	InvocationID string
	// Clock tells the time; nil means the system clock.
	Clock clock.Clock
	// Logger receives the gate's logs; nil means slog.Default().
	Logger *slog.Logger
}

func (o GateOptions) clock() clock.Clock {
	if o.Clock == nil {
		return clock.System{}
	}
	return o.Clock
}
func (o GateOptions) log() *slog.Logger       { return cmp.Or(o.Logger, slog.Default()) }
func (o GateOptions) maxAttempts() int        { return cmp.Or(o.MaxAttempts, DefaultMaxAttempts) }
func (o GateOptions) deadline() time.Duration { return cmp.Or(o.HealthDeadline, DefaultHealthDeadline) }

// GuardResult says what Guard found and did.
type GuardResult struct {
	// Running is the version current points at after Guard.
	Running string
	// Pending is the version on trial after Guard ("" if none).
	Pending string
	// Attempts is the pending release's start count, this start included.
	Attempts int
	// Ended is the trial that Guard ended (rollback or abort), if any.
	Ended *Result
}

// Guard runs before every start of the service (systemd ExecStartPre, with
// a binary that updates do not replace) and again inside Boot. For a
// release on trial it counts the start and rolls the release back when it
// has been started more than MaxAttempts times or its health deadline has
// passed; it also finishes a rollback or an activation that a power cut
// interrupted. After Guard, current points at the release to start.
func Guard(ctx context.Context, o GateOptions) (GuardResult, error) {
	l := layout{o.Root}
	unlock, err := l.lock(ctx, o.clock())
	if err != nil {
		return GuardResult{}, err
	}
	defer unlock()
	st, cur, err := l.load()
	if err != nil {
		return GuardResult{}, err
	}
	if st.Pending == "" {
		return GuardResult{Running: cur}, nil
	}
	now := o.clock().Now()
	if st.RollingBack != "" {
		return rollback(l, &st, cur, st.RollingBack, now, o.log())
	}
	if cur != st.Pending {
		res := Result{Version: st.Pending, From: st.Previous, Outcome: OutcomeAborted,
			Reason: "switch to the release did not complete", Attempts: st.BootAttempts, At: now}
		st.endTrial(&res)
		o.log().Warn("release activation did not complete; keeping the running version", "version", res.Version, "running", cur)
		if err := saveState(l.state(), st); err != nil {
			return GuardResult{}, err
		}
		return GuardResult{Running: cur, Ended: &res}, nil
	}
	if o.InvocationID == "" || st.LastInvocation != o.InvocationID {
		st.BootAttempts++
		st.LastInvocation = o.InvocationID
	}
	switch {
	case st.BootAttempts > o.maxAttempts():
		return rollback(l, &st, cur, ReasonCrashLoop, now, o.log())
	case o.deadline() > 0 && now.Sub(st.PendingSince) > o.deadline():
		return rollback(l, &st, cur, ReasonHealthDeadline, now, o.log())
	}
	if err := saveState(l.state(), st); err != nil {
		return GuardResult{}, err
	}
	o.log().Info("starting release on trial", "version", st.Pending, "attempt", st.BootAttempts, "max_attempts", o.maxAttempts())
	return GuardResult{Running: cur, Pending: st.Pending, Attempts: st.BootAttempts}, nil
}

// rollback ends the trial of st.Pending: it records the reason first, then
// switches current back to st.Previous, then clears the trial. A crash in
// between is finished by the next Guard.
func rollback(l layout, st *State, cur, reason string, now time.Time, log *slog.Logger) (GuardResult, error) {
	if st.Previous == "" {
		return GuardResult{}, fmt.Errorf("roll back %s: %w: no previous release recorded", st.Pending, ErrNotInstalled)
	}
	if st.RollingBack == "" {
		st.RollingBack = reason
		if err := saveState(l.state(), *st); err != nil {
			return GuardResult{}, err
		}
	}
	if cur != st.Previous {
		if err := l.switchLink(currentLink, st.Previous); err != nil {
			return GuardResult{}, err
		}
	}
	res := Result{Version: st.Pending, From: st.Previous, Outcome: OutcomeRolledBack, Reason: reason, Attempts: st.BootAttempts, At: now}
	st.markBad(st.Pending)
	st.endTrial(&res)
	if err := saveState(l.state(), *st); err != nil {
		return GuardResult{}, err
	}
	log.Error("release rolled back", "version", res.Version, "to", res.From, "reason", reason, "attempts", res.Attempts)
	return GuardResult{Running: res.From, Ended: &res}, nil
}

// endTrial clears the trial fields and records res.
func (st *State) endTrial(res *Result) {
	st.Pending, st.PendingFloor, st.PendingSince = "", "", time.Time{}
	st.BootAttempts, st.LastInvocation, st.RollingBack = 0, "", ""
	st.Last = res
}

// Trial is the health gate of the running process, returned by Boot. When
// the running release is not on trial every method is a no-op.
type Trial struct {
	opts     GateOptions
	version  string
	deadline time.Time
	once     sync.Once
	healthy  chan struct{}
}

// Boot is the first call of the edge binary's main. It runs Guard; if Guard
// rolled the release back the process is the bad release and Boot returns
// ErrRolledBack: main must exit non-zero at once so that systemd starts the
// previous release. Otherwise it returns the Trial of the running release.
// A root without state (development, tests) gives a no-op Trial.
func Boot(ctx context.Context, o GateOptions) (*Trial, error) {
	g, err := Guard(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("firmware boot guard: %w", err)
	}
	if g.Ended != nil && g.Ended.Outcome == OutcomeRolledBack {
		if self := runningSlot(); self != "" && self == g.Running {
			// ExecStartPre already switched and the previous release is
			// what runs: nothing to do.
			return &Trial{opts: o, healthy: make(chan struct{})}, nil
		}
		return nil, fmt.Errorf("%w: %s (%s, %d starts); previous release %s restored",
			ErrRolledBack, g.Ended.Version, g.Ended.Reason, g.Ended.Attempts, g.Ended.From)
	}
	t := &Trial{opts: o, healthy: make(chan struct{})}
	if g.Pending != "" {
		st, err := loadState(layout{o.Root}.state())
		if err != nil {
			return nil, err
		}
		t.version = g.Pending
		if o.deadline() > 0 {
			t.deadline = st.PendingSince.Add(o.deadline())
		}
	}
	return t, nil
}

// runningSlot returns the release slot the running executable lives in,
// "" if it does not live in one.
func runningSlot() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	v := filepath.Base(filepath.Dir(exe))
	if _, err := ParseVersion(v); err != nil {
		return ""
	}
	return v
}

// Pending reports whether the running release is on trial.
func (t *Trial) Pending() bool { return t.version != "" }

// Version returns the version on trial ("" if none).
func (t *Trial) Version() string { return t.version }

// Deadline returns when the trial fails if ReportHealthy has not been
// called (zero if there is no trial or no deadline).
func (t *Trial) Deadline() time.Time { return t.deadline }

// ReportHealthy commits the release on trial: it becomes the committed
// version, its floor is raised into the anti-rollback floor, and release
// slots other than current and previous are removed. It returns the
// Result to send to HQ (zero Result when there was no trial). The caller
// decides what healthy means (database open, pins safe, reader stack up,
// HQ reachable or not required) before calling it.
func (t *Trial) ReportHealthy(ctx context.Context) (Result, error) {
	if t.version == "" {
		return Result{}, nil
	}
	l := layout{t.opts.Root}
	unlock, err := l.lock(ctx, t.opts.clock())
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	st, err := loadState(l.state())
	if err != nil {
		return Result{}, err
	}
	if st.Pending != t.version {
		return Result{}, fmt.Errorf("commit %s: %w: the trial ended (pending %q, last result %+v)", t.version, ErrRolledBack, st.Pending, st.Last)
	}
	res := Result{Version: st.Pending, From: st.Previous, Outcome: OutcomeCommitted, Attempts: st.BootAttempts, At: t.opts.clock().Now()}
	st.Committed = st.Pending
	st.Floor = maxVersion(st.Floor, st.PendingFloor)
	st.endTrial(&res)
	if err := saveState(l.state(), st); err != nil {
		return Result{}, err
	}
	t.once.Do(func() { close(t.healthy) })
	t.opts.log().Info("release committed", "version", res.Version, "from", res.From, "attempts", res.Attempts, "floor", st.Floor)
	pruneSlots(l, t.opts.log())
	return res, nil
}

// Supervise waits until ReportHealthy commits the trial (nil) or the
// health deadline passes; then it rolls the release back and returns
// ErrHealthDeadline, and the process must exit non-zero so that systemd
// starts the previous release. Without a trial or a deadline it waits for
// ctx and returns nil.
func (t *Trial) Supervise(ctx context.Context) error {
	if t.version == "" || t.deadline.IsZero() {
		select {
		case <-ctx.Done():
		case <-t.healthy:
		}
		return nil
	}
	timer := t.opts.clock().NewTimer(t.deadline.Sub(t.opts.clock().Now()))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-t.healthy:
		return nil
	case <-timer.C():
	}
	l := layout{t.opts.Root}
	unlock, err := l.lock(ctx, t.opts.clock())
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(l.state())
	if err != nil {
		return err
	}
	if st.Pending != t.version {
		return nil // committed or ended meanwhile
	}
	cur, err := l.linkVersion(currentLink)
	if err != nil {
		return err
	}
	if _, err := rollback(l, &st, cur, ReasonHealthDeadline, t.opts.clock().Now(), t.opts.log()); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s by %s; previous release %s restored", ErrHealthDeadline, t.version, t.deadline.UTC().Format(time.RFC3339), st.Previous)
}

// Rollback ends the trial of the pending release by an admin's decision
// (reason ReasonManual), or, without a trial, switches current back to
// previous. The caller restarts the service afterwards.
func Rollback(ctx context.Context, o GateOptions) (Result, error) {
	l := layout{o.Root}
	unlock, err := l.lock(ctx, o.clock())
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	st, cur, err := l.load()
	if err != nil {
		return Result{}, err
	}
	if st.Pending == "" {
		prev, err := l.linkVersion(previousLink)
		if err != nil {
			return Result{}, err
		}
		if prev == "" || prev == cur {
			return Result{}, fmt.Errorf("roll back %s: %w: no previous release", cur, ErrNotInstalled)
		}
		st.Pending, st.Previous = cur, prev
	}
	g, err := rollback(l, &st, cur, ReasonManual, o.clock().Now(), o.log())
	if err != nil {
		return Result{}, err
	}
	if st.Committed == g.Ended.Version {
		st.Committed = g.Running
		if err := saveState(l.state(), st); err != nil {
			return Result{}, err
		}
	}
	return *g.Ended, nil
}

// pruneSlots removes release slots other than current and previous, and
// leftover downloads. Failures are logged: they only cost disk space.
func pruneSlots(l layout, log *slog.Logger) {
	keep := map[string]bool{}
	for _, n := range []string{currentLink, previousLink} {
		if v, err := l.linkVersion(n); err == nil && v != "" {
			keep[v] = true
		}
	}
	entries, err := os.ReadDir(l.path(releasesDir))
	if err != nil {
		log.Warn("cannot list release slots", "err", err)
		return
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(l.slot(e.Name())); err != nil {
			log.Warn("cannot remove old release slot", "slot", e.Name(), "err", err)
		}
	}
	if err := os.RemoveAll(l.path(downloadsDir)); err != nil {
		log.Warn("cannot remove leftover downloads", "err", err)
	}
}
