// Package door is the hardware side of a door or a gate lane: a lock relay
// (and an optional second relay), a door contact, a request-to-exit (REX)
// input, fire and lockdown inputs, green and red indicators and a buzzer,
// all reached through periph.io's gpio interfaces.
//
// The first thing NewDoor does is drive every output to its safe state
// (relays locked, indicators and buzzer off), so a crash, restart or
// configuration reload never leaves a door open and never pulses it.
// Fail-secure (locked = relay de-energised) is the default; a fail-safe
// door (maglock: locked = energised) and active-low boards are configured,
// never guessed.
//
// A Grant unlocks for Config.PulseLength and relocks as soon as the door
// has opened and closed again; a grant whose door never opened is reported
// "not used". A REX unlocks for exit without a forced-open alarm; a door
// that opens while locked raises forced-open at once; a door standing open
// raises a pre-alarm and then a held-open alarm. Modes (normal, unlocked,
// locked down, first-person-in) come from SetMode and the lockdown input;
// an Interlock joins the doors of a mantrap. Every state change and alarm
// is a Change delivered to observers, with the door's name and its cause.
//
// All timing runs on the injected clock: inputs are sampled every
// Config.SampleInterval and debounced over Config.Debounce, and one timer
// at a time covers the door's next deadline, so tests drive every
// behaviour with gpiotest pins and a fake clock, deterministically.
//
// The package knows nothing of cards, decisions or HQ: it must not import
// reader, policy or sync (a test enforces it).
package door

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/tobira-ac/tobira/internal/clock"
)

// Errors of this package. Each is wrapped with the door's name and, where
// a pin is involved, the pin's name and the pin's own error.
var (
	// ErrRelay means a write to a relay pin failed.
	ErrRelay = errors.New("relay pin write failed")

	// ErrOutput means a write to an indicator or buzzer pin failed.
	ErrOutput = errors.New("indicator pin write failed")

	// ErrInput means an input pin could not be set up as an input.
	ErrInput = errors.New("input pin setup failed")

	// ErrClosed means a method that moves the door was called after Close.
	ErrClosed = errors.New("door is closed")

	// ErrConfig means NewDoor was given an unusable Config (no name, a
	// negative duration, a pre-alarm not shorter than the alarm, an unknown
	// mode) or no relay or clock. When the relay itself was usable it has
	// already been driven locked.
	ErrConfig = errors.New("invalid door configuration")

	// ErrLockedDown means Grant was refused because the door is locked
	// down; only AdminGrant unlocks it.
	ErrLockedDown = errors.New("door is locked down")

	// ErrInterlocked means a grant was refused because another door of the
	// door's Interlock is open or unlocked.
	ErrInterlocked = errors.New("refused by the interlock")

	// ErrUnknownMode means a mode name is not one of Modes.
	ErrUnknownMode = errors.New("unknown door mode")

	// ErrUnknownSignal means Indicate was given a signal it does not play.
	ErrUnknownSignal = errors.New("unknown indicator signal")
)

// Pins are a door's GPIO lines. Relay is required; every other pin is
// optional (nil). OpenPins opens them by name on a real machine; tests use
// gpiotest pins.
type Pins struct {
	// Relay drives the lock.
	Relay gpio.PinOut
	// Relay2 follows Relay (a turnstile's or gate's release, a second leaf).
	Relay2 gpio.PinOut
	// Green, Red and Buzzer are the indicators.
	Green, Red, Buzzer gpio.PinOut
	// Contact is the door contact; without it the door cannot tell
	// opened, forced, held open or not used.
	Contact gpio.PinIn
	// REX is the request-to-exit input.
	REX gpio.PinIn
	// Fire is the fire-panel release input.
	Fire gpio.PinIn
	// Lockdown is the local lockdown input.
	Lockdown gpio.PinIn
}

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

// input is one sampled, debounced input.
type input struct {
	name   string
	pin    gpio.PinIn
	cfg    InputConfig
	active bool      // the debounced state
	since  time.Time // when a sample first differed from active; zero if none
	on     func(d *Door, at time.Time, active bool)
}

// Status is a snapshot of a door's state.
type Status struct {
	// Mode is the mode in force (ModeLockedDown while the lockdown input is
	// active, whatever was commanded).
	Mode Mode
	// Commanded is the mode last set by SetMode (or the start mode).
	Commanded Mode
	// Unlocked: the lock relay is driven unlocked (or its state is unknown
	// after a refused write, which counts as unlocked).
	Unlocked bool
	// Open: the door contact reports the door open.
	Open bool
	// ForcedOpen, HeldPreAlarm and HeldOpen are the standing alarms.
	ForcedOpen, HeldPreAlarm, HeldOpen bool
	// Fire and LockdownInput are the local inputs' states.
	Fire, LockdownInput bool
}

// Door is one door. It is safe for concurrent use.
type Door struct {
	cfg     Config
	pins    Pins
	clk     clock.Clock
	log     *slog.Logger
	locked  gpio.Level // the lock relay's locked level
	locked2 gpio.Level // Relay2's
	inputs  []*input
	contact *input

	hasIndicators bool

	mu         sync.Mutex
	closed     bool
	starting   bool // NewDoor is running: changes go to initial
	unlocked   bool
	retryAt    time.Time // a refused relay write is retried then
	mode       Mode      // as commanded
	lockdownIn bool
	fire       bool

	access       access
	accessEnd    time.Time
	accessOpened bool

	open                         bool
	forced, heldPre, held        bool
	heldSince, heldPreAt, heldAt time.Time

	nextSample time.Time

	transient, playing Signal
	stepNo             int
	stepAt             time.Time
	green, red, buzzer output

	timer     clock.Timer // the one pending timer, for timerAt
	timerAt   time.Time
	timerStop chan struct{}

	initial   []Change // the changes of the start, delivered to every observer first
	observers []*observer
	wg        sync.WaitGroup // timer goroutines
}

// New returns a door with only a lock relay: NewDoor(cfg, Pins{Relay:
// relay}, clk, log).
func New(cfg Config, relay gpio.PinOut, clk clock.Clock, log *slog.Logger) (*Door, error) {
	return NewDoor(cfg, Pins{Relay: relay}, clk, log)
}

// NewDoor drives every output to its safe state first (relays locked,
// indicators off), before it looks at the rest of cfg, then sets up the
// inputs and returns the running door. It never pulses: a relay left
// unlocked (by a crash) ends locked without ever being reported unlocked.
// The door unlocks at once only if the fire input is active or cfg.Mode is
// ModeUnlocked. A nil log means slog.Default().
func NewDoor(cfg Config, pins Pins, clk clock.Clock, log *slog.Logger) (*Door, error) {
	if pins.Relay == nil {
		return nil, fmt.Errorf("door %q: %w: no relay pin", cfg.Name, ErrConfig)
	}
	locked := cfg.LockedLevel()
	if err := pins.Relay.Out(locked); err != nil {
		return nil, fmt.Errorf("door %q: drive relay %s locked (%s) at start: %w: %w", cfg.Name, pins.Relay, locked, ErrRelay, err)
	}
	locked2 := cfg.Relay2.LockedLevel()
	if pins.Relay2 != nil {
		if err := pins.Relay2.Out(locked2); err != nil {
			return nil, fmt.Errorf("door %q: drive relay2 %s locked (%s) at start: %w: %w", cfg.Name, pins.Relay2, locked2, ErrRelay, err)
		}
	}
	green := output{name: "green", pin: pins.Green, cfg: cfg.Green}
	red := output{name: "red", pin: pins.Red, cfg: cfg.Red}
	buzzer := output{name: "buzzer", pin: pins.Buzzer, cfg: cfg.Buzzer}
	for _, o := range []*output{&green, &red, &buzzer} {
		if err := o.set(false); err != nil {
			return nil, fmt.Errorf("door %q: at start: %w", cfg.Name, err)
		}
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		if cfg.Name == "" {
			return nil, fmt.Errorf("door on relay %s: %w", pins.Relay, err)
		}
		return nil, fmt.Errorf("door %q: %w", cfg.Name, err)
	}
	if clk == nil {
		return nil, fmt.Errorf("door %q: %w: no clock", cfg.Name, ErrConfig)
	}
	if log == nil {
		log = slog.Default()
	}
	d := &Door{cfg: cfg, pins: pins, clk: clk, locked: locked, locked2: locked2,
		log:   log.With("door", cfg.Name),
		green: green, red: red, buzzer: buzzer, mode: cfg.Mode, starting: true,
		hasIndicators: pins.Green != nil || pins.Red != nil || pins.Buzzer != nil}
	for _, in := range []*input{
		{name: "contact", pin: pins.Contact, cfg: cfg.Contact, on: (*Door).onContact},
		{name: "rex", pin: pins.REX, cfg: cfg.REX, on: (*Door).onREX},
		{name: "fire", pin: pins.Fire, cfg: cfg.Fire, on: (*Door).onFire},
		{name: "lockdown", pin: pins.Lockdown, cfg: cfg.Lockdown, on: (*Door).onLockdown},
	} {
		if in.pin == nil {
			continue
		}
		if err := in.pin.In(in.cfg.Pull, gpio.NoEdge); err != nil {
			return nil, fmt.Errorf("door %q: set up %s input %s (pull %s): %w: %w", cfg.Name, in.name, in.pin, in.cfg.Pull, ErrInput, err)
		}
		in.active = in.cfg.active(in.pin.Read())
		d.inputs = append(d.inputs, in)
		if in.name == "contact" {
			d.contact = in
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	now := clk.Now()
	d.emit(now, KindLocked, CauseStart)
	d.log.Info("outputs driven to their safe state", "relay", pins.Relay.String(), "level", locked,
		"fail_safe", cfg.FailSafe, "active_low", cfg.ActiveLow, "pulse", cfg.PulseLength, "inputs", len(d.inputs))
	for _, in := range d.inputs {
		if !in.active {
			continue
		}
		switch in.name {
		case "contact":
			d.open = true
			d.emit(now, KindOpened, CauseStart)
		case "fire":
			d.fire = true
			d.emit(now, KindFireRelease, CauseStart)
		case "lockdown":
			d.lockdownIn = true
		}
	}
	if eff := d.effectiveMode(); eff != ModeNormal {
		d.emitMode(now, CauseStart)
	}
	if il := cfg.Interlock; il != nil {
		il.join(d, cfg.Name, false, d.open)
	}
	if err := d.settle(now, CauseStart); err != nil {
		d.log.Error("start: unlock for the start mode or fire input failed", "err", err)
	}
	d.updateHeld(now, CauseStart)
	if len(d.inputs) > 0 {
		d.nextSample = now.Add(cfg.SampleInterval)
	}
	if err := d.refreshSignal(now, true); err != nil {
		d.log.Warn("indicator write failed", "err", err)
	}
	d.starting = false
	d.rearm()
	return d, nil
}

// Observe registers fn to be called with every later Change, in order; the
// first calls report the start (the locked drive NewDoor made, and an open
// door, fire or lockdown found then). Calls come from one goroutine per
// observer, without the door's lock held, so fn may call the Door's
// methods (but not Close); a slow fn delays only its own later calls, never
// the door. Close returns once every change, its own included, has been
// delivered.
func (d *Door) Observe(fn func(Change)) {
	o := newObserver(fn)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.initial {
		o.push(c)
	}
	if d.closed {
		o.finish()
		return
	}
	d.observers = append(d.observers, o)
}

// Name returns Config.Name.
func (d *Door) Name() string { return d.cfg.Name }

// Unlocked reports whether the relay is driven to the unlocked level.
func (d *Door) Unlocked() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unlocked
}

// Status returns a snapshot of the door's state.
func (d *Door) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Status{Mode: d.effectiveMode(), Commanded: d.mode, Unlocked: d.unlocked, Open: d.open,
		ForcedOpen: d.forced, HeldPreAlarm: d.heldPre, HeldOpen: d.held, Fire: d.fire, LockdownInput: d.lockdownIn}
}

// Mode returns the mode in force.
func (d *Door) Mode() Mode {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.effectiveMode()
}

// AllowGrant tells whether a grant would be accepted now: false while
// locked down unless admin is set, and after Close. The controller asks it
// before it records a decision, so a refused grant is recorded as refused.
// (The interlock is checked by Grant itself, at the moment of the unlock.)
func (d *Door) AllowGrant(admin bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.closed && (admin || d.effectiveMode() != ModeLockedDown)
}

// Grant unlocks now and relocks after PulseLength, or as soon as the door
// has opened and closed again, timed by the injected clock; a Grant while
// unlocked extends the unlock to now+PulseLength (and reports no new
// Change, as the relay does not move). It plays SignalGranted. It fails
// with ErrLockedDown in lockdown and with ErrInterlocked (reporting
// KindInterlocked) when the door's interlock forbids it. If the pin write
// fails, Grant drives the locked level again and returns an error wrapping
// ErrRelay that names the door and the pin.
func (d *Door) Grant(ctx context.Context) error { return d.grant(ctx, accessGrant) }

// AdminGrant is Grant for an admin credential: it unlocks in lockdown too.
func (d *Door) AdminGrant(ctx context.Context) error { return d.grant(ctx, accessAdmin) }

func (d *Door) grant(ctx context.Context, a access) error {
	cause := a.cause()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("door %q: %s: %w", d.cfg.Name, cause, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("door %q: %s: %w", d.cfg.Name, cause, ErrClosed)
	}
	now := d.clk.Now()
	if a != accessAdmin && d.effectiveMode() == ModeLockedDown {
		d.log.Info("grant refused: locked down")
		return fmt.Errorf("door %q: %s: %w", d.cfg.Name, cause, ErrLockedDown)
	}
	if err := d.interlock(now, cause); err != nil {
		return err
	}
	defer d.rearm()
	if d.access != accessAdmin {
		d.access = a
	}
	d.accessEnd = now.Add(d.cfg.PulseLength)
	d.accessOpened = false
	d.transient = SignalGranted
	var err error
	if d.unlocked && d.retryAt.IsZero() {
		d.log.Info("unlock extended", "pulse", d.cfg.PulseLength, "cause", cause)
	} else {
		err = d.driveUnlocked(now, cause)
	}
	if err != nil {
		d.transient = ""
	} else if d.mode == ModeFirstPersonIn && d.contact == nil && d.effectiveMode() == ModeFirstPersonIn {
		d.firstPersonIn(now)
	}
	if serr := d.refreshSignal(now, true); serr != nil {
		d.log.Warn("indicator write failed", "err", serr)
	}
	return err
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

// SetMode sets the door's mode (from an HQ command or a schedule) and
// reports KindModeChanged with the given cause; the relay follows at once
// (entering ModeUnlocked unlocks, entering ModeLockedDown ends a running
// grant's unlock). Setting the mode already commanded does nothing. While
// the lockdown input is active the door stays locked down whatever is
// commanded.
func (d *Door) SetMode(ctx context.Context, m Mode, cause string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("door %q: set mode %s: %w", d.cfg.Name, m, err)
	}
	if _, err := ParseMode(string(m)); err != nil {
		return fmt.Errorf("door %q: set mode: %w", d.cfg.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("door %q: set mode %s: %w", d.cfg.Name, m, ErrClosed)
	}
	if m == d.mode {
		return nil
	}
	defer d.rearm()
	now := d.clk.Now()
	d.mode = m
	d.log.Info("mode set", "mode", m, "in_force", d.effectiveMode(), "cause", cause)
	d.emitMode(now, cause)
	return d.modeChanged(now, cause)
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
	if active {
		d.log.Warn("fire input active: door released")
		d.emit(at, KindFireRelease, CauseFire)
	} else {
		d.log.Info("fire input cleared")
		d.emit(at, KindFireCleared, CauseFire)
	}
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
		case dueRetry:
			d.retryAt = time.Time{}
			d.unlocked = !d.wantUnlocked() // force settle to write again
			if err := d.settle(at, CauseRelock); err != nil {
				d.log.Error("relay retry failed", "err", err)
			}
		case dueHeldPre:
			d.heldPreAt = time.Time{}
			d.heldPre = true
			d.log.Warn("door held open: pre-alarm", "open_for", at.Sub(d.heldSince))
			d.emit(at, KindHeldPreAlarm, CauseHeldTimer)
			if err := d.refreshSignal(at, false); err != nil {
				d.log.Warn("indicator write failed", "err", err)
			}
		case dueHeld:
			d.heldAt = time.Time{}
			d.held = true
			d.log.Warn("door held open: alarm", "open_for", at.Sub(d.heldSince))
			d.emit(at, KindHeldOpen, CauseHeldTimer)
			if err := d.refreshSignal(at, false); err != nil {
				d.log.Warn("indicator write failed", "err", err)
			}
		case dueStep:
			d.stepAt = time.Time{}
			d.nextStep(at)
		}
	}
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

// Close drives every output to its safe state, stops the door's timer and
// waits for its goroutine, and leaves the interlock. Later Grants fail
// with ErrClosed. Close is idempotent: only the first call drives the
// pins; it reports a relay failure wrapping ErrRelay.
func (d *Door) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.stopTimer()
	var err error
	if werr := d.pins.Relay.Out(d.locked); werr != nil {
		err = fmt.Errorf("door %q: drive relay %s locked (%s) at close: %w: %w", d.cfg.Name, d.pins.Relay, d.locked, ErrRelay, werr)
		d.log.Error("close: relay refused the locked level", "err", err)
	} else {
		d.unlocked = false
	}
	if d.pins.Relay2 != nil {
		if werr := d.pins.Relay2.Out(d.locked2); werr != nil {
			d.log.Error("close: second relay refused the locked level", "err", werr)
		}
	}
	for _, o := range []*output{&d.green, &d.red, &d.buzzer} {
		if werr := o.set(false); werr != nil {
			d.log.Warn("close: indicator write failed", "err", werr)
		}
	}
	if il := d.cfg.Interlock; il != nil {
		il.leave(d)
	}
	if err == nil {
		d.log.Info("closed; relay driven locked")
		d.emit(d.clk.Now(), KindLocked, CauseClose)
	}
	observers := d.observers
	for _, o := range observers {
		o.finish()
	}
	d.observers = nil
	d.mu.Unlock()
	d.wg.Wait()
	// Every change, the closing one included, reaches its observers before
	// Close returns: whoever records them may close its store afterwards.
	for _, o := range observers {
		<-o.exited
	}
	return err
}

// emit reports a change to every observer (to initial while starting).
// d.mu must be held, which orders the changes as they happened.
func (d *Door) emit(at time.Time, k Kind, cause string) {
	d.push(Change{Door: d.cfg.Name, Time: at, Kind: k, Unlocked: d.unlocked, Cause: cause})
}

// emitMode reports KindModeChanged with the mode in force. d.mu must be
// held.
func (d *Door) emitMode(at time.Time, cause string) {
	d.push(Change{Door: d.cfg.Name, Time: at, Kind: KindModeChanged, Unlocked: d.unlocked, Cause: cause, Mode: d.effectiveMode()})
}

func (d *Door) push(c Change) {
	if d.starting {
		d.initial = append(d.initial, c)
		return
	}
	for _, o := range d.observers {
		o.push(c)
	}
}
