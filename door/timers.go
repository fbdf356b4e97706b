package door

import (
	"time"
)

// Deadlines, in the order ties are handled: inputs first, so an opening
// sampled at the instant an unlock ends counts as a use.
const (
	dueNone = iota
	dueSample
	dueAccess
	dueRetry
	dueHeldPre
	dueHeld
	dueStep
)

// deadlines returns the door's deadlines in tie order. d.mu must be held.
func (d *Door) deadlines() [dueStep + 1]time.Time {
	return [...]time.Time{dueSample: d.nextSample, dueAccess: d.accessEnd, dueRetry: d.retryAt,
		dueHeldPre: d.heldPreAt, dueHeld: d.heldAt, dueStep: d.stepAt}
}

// next returns the earliest deadline and which it is (dueNone if none).
func (d *Door) next() (time.Time, int) {
	var at time.Time
	which := dueNone
	for i, t := range d.deadlines() {
		if !t.IsZero() && (which == dueNone || t.Before(at)) {
			at, which = t, i
		}
	}
	return at, which
}

// runDue handles every deadline that has passed, earliest first. d.mu must
// be held.
func (d *Door) runDue() {
	now := d.clk.Now()
	for {
		at, which := d.next()
		if which == dueNone || at.After(now) {
			return
		}
		switch which {
		case dueSample:
			d.nextSample = time.Time{}
			d.sample(at)
			next := at.Add(d.cfg.SampleInterval)
			if !next.After(now) {
				next = now // fell behind: sample once more now, then on the interval
			}
			d.nextSample = next
		case dueAccess:
			d.accessEnded(at)
		case dueRetry:
			d.retryRelay(at)
		case dueHeldPre:
			d.heldPreAt = time.Time{}
			d.heldPre = true
			d.raiseHeld(at, "door held open: pre-alarm", KindHeldPreAlarm)
		case dueHeld:
			d.heldAt = time.Time{}
			d.held = true
			d.raiseHeld(at, "door held open: alarm", KindHeldOpen)
		case dueStep:
			d.stepAt = time.Time{}
			d.nextStep(at)
		}
	}
}

// accessEnded relocks at the end of an unlock window and reports a grant
// whose door never opened as not used. d.mu must be held.
func (d *Door) accessEnded(at time.Time) {
	d.accessEnd = time.Time{}
	a, used := d.access, d.accessOpened
	d.access = accessNone
	if err := d.settle(at, CauseRelock); err != nil {
		d.log.Error("relock at the end of the unlock failed", "err", err)
	}
	if (a == accessGrant || a == accessAdmin) && !used && d.contact != nil && !d.open {
		d.log.Info("grant not used")
		d.emit(at, KindNotUsed, a.cause())
	}
	if err := d.refreshSignal(at, false); err != nil {
		d.log.Warn("indicator write failed", "err", err)
	}
}

// retryRelay writes the relay level again after a refused write. d.mu must
// be held.
func (d *Door) retryRelay(at time.Time) {
	d.retryAt = time.Time{}
	d.unlocked = !d.wantUnlocked() // force settle to write again
	if err := d.settle(at, CauseRelock); err != nil {
		d.log.Error("relay retry failed", "err", err)
	}
}

// raiseHeld reports a held-open pre-alarm or alarm (k) whose flag the
// caller has set, and lets the indicators show it. d.mu must be held.
func (d *Door) raiseHeld(at time.Time, msg string, k Kind) {
	d.log.Warn(msg, "open_for", at.Sub(d.heldSince))
	d.emit(at, k, CauseHeldTimer)
	if err := d.refreshSignal(at, false); err != nil {
		d.log.Warn("indicator write failed", "err", err)
	}
}

// rearm makes the one pending timer cover the earliest deadline. d.mu must
// be held.
func (d *Door) rearm() {
	at, which := d.next()
	if which != dueNone && d.timer != nil && at.Equal(d.timerAt) {
		return
	}
	d.stopTimer()
	if which == dueNone || d.closed {
		return
	}
	t := d.clk.NewTimer(at.Sub(d.clk.Now()))
	stop := make(chan struct{})
	d.timer, d.timerAt, d.timerStop = t, at, stop
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-t.C():
		case <-stop:
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.timerStop != stop { // replaced or stopped after it fired
			return
		}
		d.timer, d.timerAt, d.timerStop = nil, time.Time{}, nil
		d.runDue()
		d.rearm()
	}()
}

// stopTimer cancels the pending timer, if any. d.mu must be held.
func (d *Door) stopTimer() {
	if d.timer == nil {
		return
	}
	d.timer.Stop()
	close(d.timerStop)
	d.timer, d.timerAt, d.timerStop = nil, time.Time{}, nil
}

// updateHeld starts or stops the held-open timing: it runs while the door
// stands open and may not (not released by fire, not in ModeUnlocked).
// Stopping it clears a raised pre-alarm or alarm. d.mu must be held.
func (d *Door) updateHeld(at time.Time, cause string) {
	timing := d.open && !d.fire && d.effectiveMode() != ModeUnlocked
	if timing {
		if d.heldSince.IsZero() {
			d.heldSince = at
			d.heldPreAt, d.heldAt = at.Add(d.cfg.HeldPreAlarm), at.Add(d.cfg.HeldAlarm)
		}
		return
	}
	raised := d.heldPre || d.held
	d.heldSince, d.heldPreAt, d.heldAt = time.Time{}, time.Time{}, time.Time{}
	d.heldPre, d.held = false, false
	if raised {
		d.emit(at, KindHeldCleared, cause)
	}
}
