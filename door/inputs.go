package door

import (
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// input is one sampled, debounced input.
type input struct {
	name   string
	pin    gpio.PinIn
	cfg    InputConfig
	active bool      // the debounced state
	since  time.Time // when a sample first differed from active; zero if none
	on     func(d *Door, at time.Time, active bool)
}

// setupInputs sets up the configured input pins with their pull, reads
// their level at start and lists them in d.inputs.
func (d *Door) setupInputs() error {
	cfg, pins := d.cfg, d.pins
	for _, in := range []*input{
		{name: "contact", pin: pins.Contact, cfg: cfg.Contact, on: (*Door).onContact},
		{name: "rex", pin: pins.REX, cfg: cfg.REX, on: (*Door).onREX},
		{name: "fire", pin: pins.Fire, cfg: cfg.Fire, on: (*Door).onFire},
		{name: "lockdown", pin: pins.Lockdown, cfg: cfg.Lockdown, on: (*Door).onLockdown},
		{name: "tamper", pin: pins.Tamper, cfg: cfg.Tamper, on: (*Door).onTamper},
	} {
		if in.pin == nil {
			continue
		}
		if err := in.pin.In(in.cfg.Pull, gpio.NoEdge); err != nil {
			return fmt.Errorf("door %q: set up %s input %s (pull %s): %w: %w", cfg.Name, in.name, in.pin, in.cfg.Pull, ErrInput, err)
		}
		in.active = in.cfg.active(in.pin.Read())
		d.inputs = append(d.inputs, in)
		if in.name == "contact" {
			d.contact = in
		}
	}
	return nil
}

// sample reads every input and acts on those that have held a new level
// for Config.Debounce. d.mu must be held.
func (d *Door) sample(at time.Time) {
	for _, in := range d.inputs {
		act := in.cfg.active(in.pin.Read())
		if act == in.active {
			in.since = time.Time{} // a bounce that came back
			continue
		}
		if in.since.IsZero() {
			in.since = at
		}
		if at.Sub(in.since) >= d.cfg.Debounce {
			in.active, in.since = act, time.Time{}
			in.on(d, at, act)
		}
	}
}

// onContact handles a debounced change of the door contact. d.mu is held.
func (d *Door) onContact(at time.Time, open bool) {
	d.open = open
	d.reportInterlock()
	if open {
		var cause string
		switch {
		case d.access != accessNone:
			cause = d.access.cause()
			d.accessOpened = true
		case d.fire:
			cause = CauseFire
		case d.unlocked:
			cause = CauseMode
		default:
			cause = CauseForced
		}
		d.emit(at, KindOpened, cause)
		if cause == CauseForced {
			d.forced = true
			d.log.Warn("door forced open")
			d.emit(at, KindForcedOpen, CauseForced)
		}
		if (d.access == accessGrant || d.access == accessAdmin) && d.effectiveMode() == ModeFirstPersonIn {
			d.firstPersonIn(at)
		}
	} else {
		d.emit(at, KindClosed, CauseContact)
		if d.forced {
			d.forced = false
			d.emit(at, KindForcedCleared, CauseContact)
		}
		if d.access != accessNone && d.accessOpened {
			// Opened and closed again: the unlock is used up.
			d.access, d.accessEnd = accessNone, time.Time{}
			if err := d.settle(at, CauseDoorClosed); err != nil {
				d.log.Error("relock after the door closed failed", "err", err)
			}
		}
	}
	d.updateHeld(at, CauseContact)
	if err := d.refreshSignal(at, false); err != nil {
		d.log.Warn("indicator write failed", "err", err)
	}
}

// onREX handles a debounced change of the REX input. d.mu is held.
func (d *Door) onREX(at time.Time, pressed bool) {
	if !pressed {
		return
	}
	d.emit(at, KindREX, CauseREX)
	if d.interlock(at, CauseREX) != nil {
		return
	}
	if d.access == accessNone {
		d.access = accessREX
		d.accessOpened = false
	}
	if end := at.Add(d.cfg.REXPulse); end.After(d.accessEnd) {
		d.accessEnd = end
	}
	if err := d.settle(at, CauseREX); err != nil {
		d.log.Error("unlock for REX failed", "err", err)
	}
	if err := d.refreshSignal(at, false); err != nil {
		d.log.Warn("indicator write failed", "err", err)
	}
}

// onFire handles a debounced change of the fire input. d.mu is held.
func (d *Door) onFire(at time.Time, active bool) {
	d.fire = active
	d.reportAlarmInput(at, active, "fire input active: door released", KindFireRelease, KindFireCleared, CauseFire)
	if err := d.modeChanged(at, CauseFire); err != nil {
		d.log.Error("relay did not follow the fire input", "err", err)
	}
}

// onLockdown handles a debounced change of the lockdown input. d.mu is
// held.
func (d *Door) onLockdown(at time.Time, active bool) {
	d.lockdownIn = active
	d.log.Warn("lockdown input changed", "active", active, "in_force", d.effectiveMode())
	d.emitMode(at, CauseLockdownInput)
	if err := d.modeChanged(at, CauseLockdownInput); err != nil {
		d.log.Error("relay did not follow the lockdown input", "err", err)
	}
}

// onTamper handles a debounced change of the tamper input: it is reported
// and logged, and nothing else changes (the lock, the mode and the
// indicators stay as they are). d.mu is held.
func (d *Door) onTamper(at time.Time, active bool) {
	d.tamper = active
	d.reportAlarmInput(at, active, "tamper input active: enclosure opened or reader removed", KindTamper, KindTamperCleared, CauseTamper)
}

// reportAlarmInput logs an alarm input's change (warning with msg when it
// becomes active) and reports it as kind on or, when it clears, kind off.
// d.mu is held.
func (d *Door) reportAlarmInput(at time.Time, active bool, msg string, on, off Kind, cause string) {
	if active {
		d.log.Warn(msg)
		d.emit(at, on, cause)
		return
	}
	d.log.Info("input cleared", "cause", cause)
	d.emit(at, off, cause)
}
