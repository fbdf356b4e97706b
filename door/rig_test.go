package door

import (
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
)

// armClock is a clocktest.Fake that counts the timers made, so a test can
// wait until the door has handled a deadline: a door with inputs always
// arms its next sample after handling one.
type armClock struct {
	*clocktest.Fake
	doors int // doors with inputs on this clock: each re-arms once per tick
	mu    sync.Mutex
	cond  *sync.Cond
	armed int
}

func newArmClock() *armClock {
	c := &armClock{Fake: clocktest.New(t0), doors: 1}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *armClock) NewTimer(d time.Duration) clock.Timer {
	t := c.Fake.NewTimer(d)
	c.mu.Lock()
	c.armed++
	c.cond.Broadcast()
	c.mu.Unlock()
	return t
}

func (c *armClock) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armed
}

func (c *armClock) waitAbove(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.armed <= n {
		c.cond.Wait()
	}
}

// Test timings: a sample every 10ms, debounce over 30ms.
const (
	tick     = 10 * time.Millisecond
	debounce = 30 * time.Millisecond
)

// rig is a door on gpiotest pins with every input and output wired.
type rig struct {
	t       testing.TB
	clk     *armClock
	d       *Door
	pins    map[string]*gpiotest.Pin
	changes chan Change
}

// rigConfig is the configuration rig uses unless a test changes it:
// fail-secure, active-high everywhere, a 5s pulse, pre-alarm 20s, alarm
// 30s, inputs left as wired (no pull change).
func rigConfig(name string) Config {
	return Config{Name: name, PulseLength: 5 * time.Second, Debounce: debounce, SampleInterval: tick,
		HeldPreAlarm: 20 * time.Second, HeldAlarm: 30 * time.Second}
}

var pinNames = []string{"relay", "relay2", "green", "red", "buzzer", "contact", "rex", "fire", "lockdown", "tamper"}

// newRig starts a door; levels gives the pins' levels before the start
// (default Low: relays de-energised, door closed, inputs inactive); omit
// drops pins.
func newRig(t testing.TB, cfg Config, clk *armClock, levels map[string]gpio.Level, omit ...string) *rig {
	t.Helper()
	if clk == nil {
		clk = newArmClock()
	}
	r := &rig{t: t, clk: clk, pins: map[string]*gpiotest.Pin{}, changes: make(chan Change, 256)}
	for i, n := range pinNames {
		r.pins[n] = &gpiotest.Pin{N: n, Num: i, L: levels[n]}
	}
	for _, n := range omit {
		delete(r.pins, n)
	}
	out := func(n string) gpio.PinOut {
		if p, ok := r.pins[n]; ok {
			return p
		}
		return nil
	}
	in := func(n string) gpio.PinIn {
		if p, ok := r.pins[n]; ok {
			return p
		}
		return nil
	}
	d, err := NewDoor(cfg, Pins{Relay: out("relay"), Relay2: out("relay2"), Green: out("green"), Red: out("red"),
		Buzzer: out("buzzer"), Contact: in("contact"), REX: in("rex"), Fire: in("fire"), Lockdown: in("lockdown"),
		Tamper: in("tamper")},
		clk, discard)
	if err != nil {
		t.Fatalf("NewDoor: %v", err)
	}
	r.d = d
	d.Observe(func(c Change) { r.changes <- c })
	t.Cleanup(func() { _ = d.Close() })
	return r
}

// set puts an input pin at a level (the door sees it at its next samples).
func (r *rig) set(pin string, l gpio.Level) {
	r.t.Helper()
	if err := r.pins[pin].Out(l); err != nil {
		r.t.Fatal(err)
	}
}

// level reads a pin.
func (r *rig) level(pin string) gpio.Level { return r.pins[pin].Read() }

// run lets d pass, one sample at a time, waiting after each until the
// door (every door on the clock) has handled it. d must be a multiple of tick.
func (r *rig) run(d time.Duration) {
	r.t.Helper()
	if d%tick != 0 {
		r.t.Fatalf("run(%s): not a multiple of %s", d, tick)
	}
	for range d / tick {
		n := r.clk.count()
		r.clk.Advance(tick)
		r.clk.waitAbove(n + r.clk.doors - 1)
	}
}

// now is the fake time.
func (r *rig) now() time.Time { return r.clk.Now() }

// want is an expected change: kind and cause, optionally the time.
type want struct {
	kind  Kind
	cause string
	at    time.Duration // since t0; -1: any time
}

// expect reads len(ws) changes and compares them.
func (r *rig) expect(ws ...want) {
	r.t.Helper()
	for i, w := range ws {
		got := <-r.changes
		if got.Kind != w.kind || got.Cause != w.cause || (w.at >= 0 && !got.Time.Equal(t0.Add(w.at))) {
			r.t.Fatalf("change %d = %s/%s at +%s (%+v), want %s/%s at +%s", i, got.Kind, got.Cause, got.Time.Sub(t0), got, w.kind, w.cause, w.at)
		}
		if got.Door != r.d.Name() {
			r.t.Errorf("change %d names door %q, want %q", i, got.Door, r.d.Name())
		}
	}
}

// expectEnd closes the door and checks that the next change is Close's:
// nothing else happened since the last expected change.
func (r *rig) expectEnd() {
	r.t.Helper()
	if err := r.d.Close(); err != nil {
		r.t.Fatalf("Close: %v", err)
	}
	r.expect(want{KindLocked, CauseClose, -1})
}

// anyTime matches any time.
const anyTime = -1

// lag is how long after an input changes the door acts on it: the next
// sample sees it, and it must hold for the debounce.
const lag = tick + debounce
