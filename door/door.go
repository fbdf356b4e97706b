// Package door drives a door's lock relay through a periph.io GPIO output.
//
// The first thing New does is drive the relay to the locked level, so a
// crash or restart never leaves a door open and never pulses it. A Grant
// unlocks for a pulse and relocks on the injected clock's timer; a grant
// while unlocked extends the pulse. Fail-secure (locked = relay
// de-energised) is the default; a fail-safe door (maglock: locked =
// energised) and active-low relay boards are configured, never guessed.
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

// DefaultPulseLength is how long a grant unlocks when Config.PulseLength is
// zero.
const DefaultPulseLength = 5 * time.Second

// RetryInterval is how long the door waits before it tries again to drive
// the locked level after the relay pin refused it at the end of a pulse.
const RetryInterval = time.Second

// Errors of this package. Each is wrapped with the door's and the pin's name.
var (
	// ErrRelay means a write to the relay pin failed. The underlying error
	// from the pin is wrapped too.
	ErrRelay = errors.New("relay pin write failed")

	// ErrClosed means Grant was called on a Door after Close.
	ErrClosed = errors.New("door is closed")

	// ErrConfig means New was given an unusable Config (no name, a negative
	// pulse) or a nil relay or clock. When the relay itself was usable it has
	// already been driven locked.
	ErrConfig = errors.New("invalid door configuration")
)

// Config is one door's relay setup.
type Config struct {
	// Name names the door in changes, logs and errors. Required.
	Name string
	// ActiveLow: the relay is energised by a low output (many relay boards).
	ActiveLow bool
	// FailSafe: locked = energised (maglocks), so a power cut opens the door.
	// The default, fail-secure, is locked = de-energised.
	FailSafe bool
	// PulseLength is how long a grant unlocks; zero means
	// DefaultPulseLength. Negative is refused.
	PulseLength time.Duration
}

// LockedLevel returns the pin level that keeps the door locked.
func (c Config) LockedLevel() gpio.Level {
	energised := gpio.Level(!c.ActiveLow) // High energises unless active-low
	if c.FailSafe {
		return energised
	}
	return !energised
}

// Causes of a Change.
const (
	// CauseStart: New drove the relay locked as the process started.
	CauseStart = "start"
	// CauseGrant: Grant unlocked the door.
	CauseGrant = "grant"
	// CauseRelock: the pulse ended and the door locked again.
	CauseRelock = "relock"
	// CauseFault: a pin write during Grant failed and the door was driven
	// locked again.
	CauseFault = "fault"
	// CauseClose: Close drove the relay locked.
	CauseClose = "close"
)

// Change is one drive of the relay, reported to an observer.
type Change struct {
	// Door is Config.Name.
	Door string
	// Time is the injected clock's time of the drive.
	Time time.Time
	// Unlocked is the state the relay was driven to.
	Unlocked bool
	// Cause is one of the Cause constants.
	Cause string
}

// Door is one door's relay. It is safe for concurrent use.
type Door struct {
	cfg    Config
	relay  gpio.PinOut
	clk    clock.Clock
	log    *slog.Logger
	locked gpio.Level

	mu        sync.Mutex
	unlocked  bool
	closed    bool
	cancel    chan struct{} // closed to end the pending relock goroutine
	timer     clock.Timer   // the pending relock timer, nil when locked
	start     Change
	observers []*observer
	wg        sync.WaitGroup // relock goroutines
}

// New drives the relay to the locked level first, before it looks at the
// rest of cfg, then returns the door. It never pulses: a relay left
// unlocked (by a crash) ends locked without ever being reported unlocked.
// A nil log means slog.Default().
func New(cfg Config, relay gpio.PinOut, clk clock.Clock, log *slog.Logger) (*Door, error) {
	if relay == nil {
		return nil, fmt.Errorf("door %q: %w: no relay pin", cfg.Name, ErrConfig)
	}
	locked := cfg.LockedLevel()
	if err := relay.Out(locked); err != nil {
		return nil, fmt.Errorf("door %q: drive relay %s locked (%s) at start: %w: %w", cfg.Name, relay, locked, ErrRelay, err)
	}
	if cfg.Name == "" {
		return nil, fmt.Errorf("door on relay %s: %w: no name", relay, ErrConfig)
	}
	if cfg.PulseLength < 0 {
		return nil, fmt.Errorf("door %q: %w: pulse length %s is negative", cfg.Name, ErrConfig, cfg.PulseLength)
	}
	if cfg.PulseLength == 0 {
		cfg.PulseLength = DefaultPulseLength
	}
	if clk == nil {
		return nil, fmt.Errorf("door %q: %w: no clock", cfg.Name, ErrConfig)
	}
	if log == nil {
		log = slog.Default()
	}
	d := &Door{cfg: cfg, relay: relay, clk: clk, locked: locked,
		log: log.With("door", cfg.Name, "relay", relay.String())}
	d.start = Change{Door: cfg.Name, Time: clk.Now(), Unlocked: false, Cause: CauseStart}
	d.log.Info("relay driven locked", "level", locked, "fail_safe", cfg.FailSafe,
		"active_low", cfg.ActiveLow, "pulse", cfg.PulseLength)
	return d, nil
}

// Observe registers fn to be called with every later Change, in the order
// the relay was driven; the first call reports the start (the locked drive
// New made). Calls come from one goroutine per observer, without the door's
// lock held, so fn may call the Door's methods; a slow fn delays only its
// own later calls, never the relay. Changes made before Close returns are
// still delivered after it.
func (d *Door) Observe(fn func(Change)) {
	o := newObserver(fn)
	d.mu.Lock()
	defer d.mu.Unlock()
	o.push(d.start)
	if d.closed {
		o.finish()
		return
	}
	d.observers = append(d.observers, o)
}

// Unlocked reports whether the relay is driven to the unlocked level.
func (d *Door) Unlocked() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unlocked
}

// Grant unlocks now and relocks after PulseLength, timed by the injected
// clock; a Grant while unlocked extends the unlock to now+PulseLength (and
// reports no new Change, as the relay does not move). If the pin write
// fails, Grant drives the locked level again and returns an error wrapping
// ErrRelay that names the door and the pin.
func (d *Door) Grant(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("door %q: grant: %w", d.cfg.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("door %q: grant: %w", d.cfg.Name, ErrClosed)
	}
	unlock := !d.locked
	if err := d.relay.Out(unlock); err != nil {
		err = fmt.Errorf("door %q: drive relay %s unlocked (%s): %w: %w", d.cfg.Name, d.relay, unlock, ErrRelay, err)
		d.stopTimer()
		if lerr := d.relay.Out(d.locked); lerr != nil {
			// The relay state is unknown: believe the worse one and keep
			// trying to lock it every RetryInterval.
			d.log.Error("relay refused both levels; retrying the locked level", "err", err,
				"relock_err", lerr, "retry_in", RetryInterval)
			d.unlocked = true
			d.armRelock(RetryInterval)
			return errors.Join(err, fmt.Errorf("door %q: drive relay %s locked (%s) after the failed grant: %w: %w",
				d.cfg.Name, d.relay, d.locked, ErrRelay, lerr))
		}
		d.log.Error("grant failed; relay driven locked", "err", err)
		d.unlocked = false
		d.emit(false, CauseFault)
		return err
	}
	moved := !d.unlocked
	d.unlocked = true
	d.stopTimer()
	d.armRelock(d.cfg.PulseLength)
	if moved {
		d.log.Info("unlocked", "pulse", d.cfg.PulseLength)
		d.emit(true, CauseGrant)
	} else {
		d.log.Info("unlock extended", "pulse", d.cfg.PulseLength)
	}
	return nil
}

// armRelock starts a timer and a goroutine that relocks when it fires.
// d.mu must be held and no relock may be pending.
func (d *Door) armRelock(after time.Duration) {
	t := d.clk.NewTimer(after)
	cancel := make(chan struct{})
	d.timer, d.cancel = t, cancel
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-t.C():
			d.relock(cancel)
		case <-cancel:
		}
	}()
}

// stopTimer cancels the pending relock, if any. d.mu must be held.
func (d *Door) stopTimer() {
	if d.timer == nil {
		return
	}
	d.timer.Stop()
	close(d.cancel)
	d.timer, d.cancel = nil, nil
}

// relock ends a pulse, unless the pulse it belongs to (cancel) was replaced
// or cancelled meanwhile. When the pin refuses, it tries again after
// RetryInterval.
func (d *Door) relock(cancel chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != cancel { // extended, closed or replaced after the timer fired
		return
	}
	d.timer, d.cancel = nil, nil
	if err := d.relay.Out(d.locked); err != nil {
		d.log.Error("relay refused the locked level; retrying", "level", d.locked, "retry_in", RetryInterval, "err", err)
		d.armRelock(RetryInterval)
		return
	}
	d.unlocked = false
	d.log.Info("relocked")
	d.emit(false, CauseRelock)
}

// Close relocks, stops the pending relock and waits for its goroutine. Later
// Grants fail with ErrClosed. Close is idempotent: only the first call
// drives the relay; it reports a pin failure wrapping ErrRelay.
func (d *Door) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.stopTimer()
	var err error
	if werr := d.relay.Out(d.locked); werr != nil {
		err = fmt.Errorf("door %q: drive relay %s locked (%s) at close: %w: %w", d.cfg.Name, d.relay, d.locked, ErrRelay, werr)
		d.log.Error("close: relay refused the locked level", "err", err)
	} else {
		d.unlocked = false
		d.log.Info("closed; relay driven locked")
	}
	if err == nil {
		d.emit(false, CauseClose)
	}
	for _, o := range d.observers {
		o.finish()
	}
	d.observers = nil
	d.mu.Unlock()
	d.wg.Wait()
	return err
}

// emit queues a Change for every observer. d.mu must be held, which orders
// the changes as the relay moved.
func (d *Door) emit(unlocked bool, cause string) {
	c := Change{Door: d.cfg.Name, Time: d.clk.Now(), Unlocked: unlocked, Cause: cause}
	for _, o := range d.observers {
		o.push(c)
	}
}

// observer delivers changes to one callback from its own goroutine, in
// order, so the door never waits for a callback.
type observer struct {
	mu    sync.Mutex
	queue []Change
	done  bool
	wake  chan struct{} // capacity 1: "queue or done changed"
	fn    func(Change)
}

func newObserver(fn func(Change)) *observer {
	o := &observer{fn: fn, wake: make(chan struct{}, 1)}
	go o.run()
	return o
}

func (o *observer) push(c Change) {
	o.mu.Lock()
	o.queue = append(o.queue, c)
	o.mu.Unlock()
	o.signal()
}

// finish lets the goroutine end once the queue is delivered.
func (o *observer) finish() {
	o.mu.Lock()
	o.done = true
	o.mu.Unlock()
	o.signal()
}

func (o *observer) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *observer) run() {
	for range o.wake {
		for {
			o.mu.Lock()
			if len(o.queue) == 0 {
				done := o.done
				o.mu.Unlock()
				if done {
					return
				}
				break
			}
			c := o.queue[0]
			o.queue = o.queue[1:]
			o.mu.Unlock()
			o.fn(c)
		}
	}
}
