// Package door is the hardware side of a door or a gate lane: a lock relay
// (and an optional second relay), a door contact, a request-to-exit (REX)
// input, fire, lockdown and tamper inputs, green and red indicators and a buzzer,
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
// an Interlock joins the doors of a mantrap. A tamper input is reported
// (tamper, tamper cleared) and never moves the lock. Every state change and alarm
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
	// Tamper is the tamper switch of the reader or the enclosure.
	Tamper gpio.PinIn
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
	// Tamper: the tamper input is active (a standing alarm that never
	// moves the lock).
	Tamper bool
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
	tamper     bool

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
	ind, err := driveSafe(cfg, pins)
	if err != nil {
		return nil, err
	}
	cfg, err = cfg.withDefaults()
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
	d := &Door{cfg: cfg, pins: pins, clk: clk, locked: cfg.LockedLevel(), locked2: cfg.Relay2.LockedLevel(),
		log:   log.With("door", cfg.Name),
		green: ind[0], red: ind[1], buzzer: ind[2], mode: cfg.Mode, starting: true,
		hasIndicators: pins.Green != nil || pins.Red != nil || pins.Buzzer != nil}
	if err := d.setupInputs(); err != nil {
		return nil, err
	}
	d.start()
	return d, nil
}

// driveSafe drives the relays locked and the indicators (green, red,
// buzzer, returned in that order) off: the first thing NewDoor does, before
// it checks the rest of cfg.
func driveSafe(cfg Config, pins Pins) ([3]output, error) {
	ind := [3]output{
		{name: "green", pin: pins.Green, cfg: cfg.Green},
		{name: "red", pin: pins.Red, cfg: cfg.Red},
		{name: "buzzer", pin: pins.Buzzer, cfg: cfg.Buzzer},
	}
	if pins.Relay == nil {
		return ind, fmt.Errorf("door %q: %w: no relay pin", cfg.Name, ErrConfig)
	}
	locked := cfg.LockedLevel()
	if err := pins.Relay.Out(locked); err != nil {
		return ind, fmt.Errorf("door %q: drive relay %s locked (%s) at start: %w: %w", cfg.Name, pins.Relay, locked, ErrRelay, err)
	}
	if pins.Relay2 != nil {
		locked2 := cfg.Relay2.LockedLevel()
		if err := pins.Relay2.Out(locked2); err != nil {
			return ind, fmt.Errorf("door %q: drive relay2 %s locked (%s) at start: %w: %w", cfg.Name, pins.Relay2, locked2, ErrRelay, err)
		}
	}
	for i := range ind {
		if err := ind[i].set(false); err != nil {
			return ind, fmt.Errorf("door %q: at start: %w", cfg.Name, err)
		}
	}
	return ind, nil
}

// start takes the state the inputs show at start (an open door, fire,
// lockdown), reports it and the locked drive as the initial changes,
// applies the start mode and arms the first timer.
func (d *Door) start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clk.Now()
	d.emit(now, KindLocked, CauseStart)
	d.log.Info("outputs driven to their safe state", "relay", d.pins.Relay.String(), "level", d.locked,
		"fail_safe", d.cfg.FailSafe, "active_low", d.cfg.ActiveLow, "pulse", d.cfg.PulseLength, "inputs", len(d.inputs))
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
		case "tamper":
			d.tamper = true
			d.log.Warn("tamper input active at start")
			d.emit(now, KindTamper, CauseStart)
		}
	}
	if eff := d.effectiveMode(); eff != ModeNormal {
		d.emitMode(now, CauseStart)
	}
	if il := d.cfg.Interlock; il != nil {
		il.join(d, d.cfg.Name, false, d.open)
	}
	if err := d.settle(now, CauseStart); err != nil {
		d.log.Error("start: unlock for the start mode or fire input failed", "err", err)
	}
	d.updateHeld(now, CauseStart)
	if len(d.inputs) > 0 {
		d.nextSample = now.Add(d.cfg.SampleInterval)
	}
	if err := d.refreshSignal(now, true); err != nil {
		d.log.Warn("indicator write failed", "err", err)
	}
	d.starting = false
	d.rearm()
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
		ForcedOpen: d.forced, HeldPreAlarm: d.heldPre, HeldOpen: d.held, Fire: d.fire, LockdownInput: d.lockdownIn,
		Tamper: d.tamper}
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
