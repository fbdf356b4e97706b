package door

import (
	"errors"
	"fmt"
	"time"
)

// access is why the door is in an unlock window.
type access int

const (
	accessNone access = iota
	accessGrant
	accessAdmin
	accessREX
)

// cause returns the Change cause of an access.
func (a access) cause() string {
	switch a {
	case accessGrant:
		return CauseGrant
	case accessAdmin:
		return CauseAdminGrant
	case accessREX:
		return CauseREX
	}
	return ""
}

// interlock asks the door's interlock for leave to unlock; a locked door
// refused reports KindInterlocked. d.mu must be held.
func (d *Door) interlock(at time.Time, cause string) error {
	il := d.cfg.Interlock
	if il == nil || d.unlocked {
		return nil
	}
	who := il.acquire(d)
	if who == "" {
		return nil
	}
	d.log.Warn("unlock refused by the interlock", "interlock", il.String(), "because", who, "cause", cause)
	d.emit(at, KindInterlocked, cause)
	return fmt.Errorf("door %q: %s: %w %s: %s", d.cfg.Name, cause, ErrInterlocked, il, who)
}

// modeChanged makes the relay, the held-open timing and the indicators
// follow a change of the mode in force. d.mu must be held.
func (d *Door) modeChanged(at time.Time, cause string) error {
	if d.effectiveMode() == ModeLockedDown && d.access == accessGrant {
		d.access, d.accessEnd = accessNone, time.Time{}
	}
	err := d.settle(at, cause)
	d.updateHeld(at, cause)
	if serr := d.refreshSignal(at, false); serr != nil {
		d.log.Warn("indicator write failed", "err", serr)
	}
	return err
}

// firstPersonIn ends a first-person-in wait: the scheduled unlock begins.
// d.mu must be held.
func (d *Door) firstPersonIn(at time.Time) {
	d.mode = ModeUnlocked
	d.log.Info("first person in: scheduled unlock begins")
	d.emitMode(at, CauseFirstPersonIn)
	if err := d.modeChanged(at, CauseFirstPersonIn); err != nil {
		d.log.Error("first person in: unlock failed", "err", err)
	}
}

// effectiveMode is the mode in force. d.mu must be held.
func (d *Door) effectiveMode() Mode {
	if d.lockdownIn {
		return ModeLockedDown
	}
	return d.mode
}

// wantUnlocked is the relay state the door's state calls for. d.mu must be
// held.
func (d *Door) wantUnlocked() bool {
	switch {
	case d.fire:
		return true
	case d.effectiveMode() == ModeLockedDown:
		return d.access == accessAdmin || d.access == accessREX
	case d.effectiveMode() == ModeUnlocked:
		return true
	}
	return d.access != accessNone
}

// settle drives the relay to the state the door's state calls for, if it
// is not there (or its last write was refused). d.mu must be held.
func (d *Door) settle(at time.Time, cause string) error {
	want := d.wantUnlocked()
	if want == d.unlocked && d.retryAt.IsZero() {
		return nil
	}
	if want {
		return d.driveUnlocked(at, cause)
	}
	return d.driveLocked(at, cause)
}

// driveUnlocked unlocks the relays. When the lock relay refuses, the
// unlock window is dropped and the relay driven locked again; when it
// refuses that too, the door assumes the worse (unlocked) and retries the
// locked level every RetryInterval. d.mu must be held.
func (d *Door) driveUnlocked(at time.Time, cause string) error {
	unlock := !d.locked
	if err := d.pins.Relay.Out(unlock); err != nil {
		err = fmt.Errorf("door %q: drive relay %s unlocked (%s): %w: %w", d.cfg.Name, d.pins.Relay, unlock, ErrRelay, err)
		d.access, d.accessEnd = accessNone, time.Time{}
		if lerr := d.pins.Relay.Out(d.locked); lerr != nil {
			d.log.Error("relay refused both levels; retrying the locked level", "err", err,
				"relock_err", lerr, "retry_in", RetryInterval)
			d.unlocked = true
			d.retryAt = d.clk.Now().Add(RetryInterval)
			d.reportInterlock()
			return errors.Join(err, fmt.Errorf("door %q: drive relay %s locked (%s) after the failed %s: %w: %w",
				d.cfg.Name, d.pins.Relay, d.locked, cause, ErrRelay, lerr))
		}
		d.log.Error("unlock failed; relay driven locked", "err", err, "cause", cause)
		d.unlocked, d.retryAt = false, time.Time{}
		d.reportInterlock()
		d.emit(at, KindLocked, CauseFault)
		return err
	}
	d.unlocked, d.retryAt = true, time.Time{}
	var err error
	if d.pins.Relay2 != nil {
		if werr := d.pins.Relay2.Out(!d.locked2); werr != nil {
			err = fmt.Errorf("door %q: drive relay2 %s unlocked (%s): %w: %w", d.cfg.Name, d.pins.Relay2, !d.locked2, ErrRelay, werr)
			d.log.Error("second relay refused the unlock", "err", err)
		}
	}
	d.log.Info("unlocked", "cause", cause)
	d.reportInterlock()
	d.emit(at, KindUnlocked, cause)
	return err
}

// driveLocked locks the relays; when the lock relay refuses, the door
// stays (believed) unlocked and retries every RetryInterval. d.mu must be
// held.
func (d *Door) driveLocked(at time.Time, cause string) error {
	if err := d.pins.Relay.Out(d.locked); err != nil {
		d.log.Error("relay refused the locked level; retrying", "level", d.locked, "retry_in", RetryInterval, "err", err)
		d.unlocked = true
		d.retryAt = d.clk.Now().Add(RetryInterval)
		return fmt.Errorf("door %q: drive relay %s locked (%s): %w: %w", d.cfg.Name, d.pins.Relay, d.locked, ErrRelay, err)
	}
	var err error
	if d.pins.Relay2 != nil {
		if werr := d.pins.Relay2.Out(d.locked2); werr != nil {
			err = fmt.Errorf("door %q: drive relay2 %s locked (%s): %w: %w", d.cfg.Name, d.pins.Relay2, d.locked2, ErrRelay, werr)
			d.log.Error("second relay refused the locked level", "err", err)
		}
	}
	d.unlocked, d.retryAt = false, time.Time{}
	d.log.Info("locked", "cause", cause)
	d.reportInterlock()
	d.emit(at, KindLocked, cause)
	return err
}

// reportInterlock tells the interlock the door's state. d.mu must be held.
func (d *Door) reportInterlock() {
	if il := d.cfg.Interlock; il != nil {
		il.report(d, d.unlocked, d.open)
	}
}
