package door

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Signal is a pattern shown on the green and red indicators and the
// buzzer.
type Signal string

// Signals. SignalGranted plays by itself on every grant, SignalPreAlarm and
// SignalAlarm play by themselves while the door is in that state; the
// controller plays SignalDenied and SignalPINWanted with Indicate.
const (
	// SignalIdle: no pattern; green shows the relay unlocked, red shows a
	// lockdown.
	SignalIdle Signal = "idle"
	// SignalGranted: green with one short beep (then green while unlocked).
	SignalGranted Signal = "granted"
	// SignalDenied: three short red flashes with beeps.
	SignalDenied Signal = "denied"
	// SignalPINWanted: green blinking with a chirp each second, until the
	// next Indicate, Grant or AdminGrant.
	SignalPINWanted Signal = "pin_wanted"
	// SignalPreAlarm: red with an intermittent beep, while the held-open
	// pre-alarm stands.
	SignalPreAlarm Signal = "prealarm"
	// SignalAlarm: red with a steady buzzer, while a forced-open or
	// held-open alarm stands.
	SignalAlarm Signal = "alarm"
)

// step is one state of the indicator outputs held for d (d == 0: held
// until the pattern changes).
type step struct {
	green, red, buzzer bool
	d                  time.Duration
}

// pattern is a sequence of steps, played once or repeated.
type pattern struct {
	steps  []step
	repeat bool
}

// patterns defines every Signal but SignalIdle.
var patterns = map[Signal]pattern{
	SignalGranted: {steps: []step{{green: true, buzzer: true, d: 200 * time.Millisecond}}},
	SignalDenied: {steps: []step{
		{red: true, buzzer: true, d: 150 * time.Millisecond}, {d: 100 * time.Millisecond},
		{red: true, buzzer: true, d: 150 * time.Millisecond}, {d: 100 * time.Millisecond},
		{red: true, buzzer: true, d: 150 * time.Millisecond}}},
	SignalPINWanted: {repeat: true, steps: []step{
		{green: true, buzzer: true, d: 50 * time.Millisecond}, {green: true, d: 450 * time.Millisecond},
		{d: 500 * time.Millisecond}}},
	SignalPreAlarm: {repeat: true, steps: []step{
		{red: true, buzzer: true, d: 250 * time.Millisecond}, {red: true, d: 750 * time.Millisecond}}},
	SignalAlarm: {steps: []step{{red: true, buzzer: true}}},
}

// Indicate plays s on the indicators: SignalDenied or SignalGranted once,
// SignalPINWanted until the next Indicate or grant, SignalIdle stops a
// playing pattern. The alarm patterns play by themselves and are refused
// here. A write failure is returned wrapping ErrOutput; the pattern still
// plays on the outputs that work.
func (d *Door) Indicate(ctx context.Context, s Signal) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("door %q: indicate %s: %w", d.cfg.Name, s, err)
	}
	switch s {
	case SignalIdle, SignalGranted, SignalDenied, SignalPINWanted:
	default:
		return fmt.Errorf("door %q: indicate: %w %q", d.cfg.Name, ErrUnknownSignal, s)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("door %q: indicate %s: %w", d.cfg.Name, s, ErrClosed)
	}
	d.transient = s
	if s == SignalIdle {
		d.transient = ""
	}
	err := d.refreshSignal(d.clk.Now(), true)
	d.rearm()
	return err
}

// currentSignal is what the indicators should play now, by priority: a
// transient pattern, then an alarm, then the pre-alarm, else idle.
func (d *Door) currentSignal() Signal {
	switch {
	case d.transient != "":
		return d.transient
	case d.forced || d.held:
		return SignalAlarm
	case d.heldPre:
		return SignalPreAlarm
	}
	return SignalIdle
}

// refreshSignal starts the pattern that should play, if it changed (or
// restart is set), and writes the outputs. d.mu must be held.
func (d *Door) refreshSignal(at time.Time, restart bool) error {
	if !d.hasIndicators {
		return nil
	}
	cur := d.currentSignal()
	if cur != d.playing || restart {
		d.playing, d.stepNo = cur, 0
		d.stepAt = time.Time{}
		if p, ok := patterns[cur]; ok && p.steps[0].d > 0 {
			d.stepAt = at.Add(p.steps[0].d)
		}
	}
	return d.writeIndicators()
}

// nextStep advances the playing pattern at its step deadline. d.mu must be
// held.
func (d *Door) nextStep(at time.Time) {
	p := patterns[d.playing]
	d.stepNo++
	if d.stepNo >= len(p.steps) {
		if !p.repeat {
			// A one-shot transient pattern ended: fall back.
			d.transient = ""
			if err := d.refreshSignal(at, true); err != nil {
				d.log.Warn("indicator write failed", "err", err)
			}
			return
		}
		d.stepNo = 0
	}
	d.stepAt = at.Add(p.steps[d.stepNo].d)
	if err := d.writeIndicators(); err != nil {
		d.log.Warn("indicator write failed", "err", err)
	}
}

// writeIndicators drives the indicator outputs to the playing step, or to
// the idle state, writing only the outputs whose level changes. d.mu must
// be held.
func (d *Door) writeIndicators() error {
	s := step{green: d.unlocked, red: d.effectiveMode() == ModeLockedDown}
	if p, ok := patterns[d.playing]; ok {
		s = p.steps[d.stepNo]
	}
	var errs []error
	for _, o := range []struct {
		out *output
		on  bool
	}{{&d.green, s.green}, {&d.red, s.red}, {&d.buzzer, s.buzzer}} {
		if err := o.out.set(o.on); err != nil {
			errs = append(errs, fmt.Errorf("door %q: %w", d.cfg.Name, err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// output is one indicator pin and the level last written to it.
type output struct {
	name    string
	pin     gpio.PinOut
	cfg     OutputConfig
	on      bool
	written bool
}

// set drives the output on or off if that changes its level.
func (o *output) set(on bool) error {
	if o.pin == nil || (o.written && o.on == on) {
		return nil
	}
	l := o.cfg.Level(on)
	if err := o.pin.Out(l); err != nil {
		o.written = false // unknown: try again next time
		return fmt.Errorf("drive %s output %s %s: %w: %w", o.name, o.pin, l, ErrOutput, err)
	}
	o.on, o.written = on, true
	return nil
}
