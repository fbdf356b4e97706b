package door

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
)

var (
	discard = slog.New(slog.NewTextHandler(io.Discard, nil))
	t0      = time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC)
	errPin  = errors.New("gpio line busy")
)

// relayPin is a gpiotest.Pin that records every write attempt and refuses
// the writes it is told to.
type relayPin struct {
	*gpiotest.Pin
	mu       sync.Mutex
	attempts []gpio.Level
	refuse   map[gpio.Level]int // level -> how many upcoming writes of it fail
	outs     chan gpio.Level    // one value per attempt
}

func newRelayPin(initial gpio.Level) *relayPin {
	return &relayPin{
		Pin:    &gpiotest.Pin{N: "GPIO17", Num: 17, L: initial},
		refuse: map[gpio.Level]int{},
		outs:   make(chan gpio.Level, 64),
	}
}

func (p *relayPin) Out(l gpio.Level) error {
	p.mu.Lock()
	p.attempts = append(p.attempts, l)
	fail := p.refuse[l] > 0
	if fail {
		p.refuse[l]--
	}
	p.mu.Unlock()
	p.outs <- l
	if fail {
		return errPin
	}
	return p.Pin.Out(l)
}

func (p *relayPin) refuseNext(l gpio.Level, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse[l] = n
}

func (p *relayPin) writes() []gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]gpio.Level(nil), p.attempts...)
}

// watch registers an observer on d and returns the channel it feeds.
func watch(d *Door) <-chan Change {
	ch := make(chan Change, 32)
	d.Observe(func(c Change) { ch <- c })
	return ch
}

// expectChanges reads len(want) changes and compares door, state, cause and
// time.
func expectChanges(t *testing.T, ch <-chan Change, want ...Change) {
	t.Helper()
	for i, w := range want {
		if w.Kind == "" { // a relay move: its kind follows from the state
			w.Kind = KindLocked
			if w.Unlocked {
				w.Kind = KindUnlocked
			}
		}
		got := <-ch
		if got != w {
			t.Errorf("change %d = %+v, want %+v", i, got, w)
		}
	}
}

// newDoor makes a fail-secure, active-high door with a 5s pulse on a fresh
// pin, closed at the end of the test.
func newDoor(t *testing.T) (*Door, *relayPin, *clocktest.Fake) {
	t.Helper()
	pin := newRelayPin(gpio.Low)
	clk := clocktest.New(t0)
	d, err := New(Config{Name: "front", PulseLength: 5 * time.Second}, pin, clk, discard)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d, pin, clk
}

func TestNewDrivesLockedLevel(t *testing.T) {
	tests := []struct {
		name                string
		activeLow, failSafe bool
		wantLocked          gpio.Level
	}{
		{"fail-secure, active-high: locked = de-energised = low", false, false, gpio.Low},
		{"fail-secure, active-low: locked = de-energised = high", true, false, gpio.High},
		{"fail-safe, active-high: locked = energised = high", false, true, gpio.High},
		{"fail-safe, active-low: locked = energised = low", true, true, gpio.Low},
	}
	for _, tt := range tests {
		cfg := Config{Name: "front", ActiveLow: tt.activeLow, FailSafe: tt.failSafe}
		if got := cfg.LockedLevel(); got != tt.wantLocked {
			t.Errorf("%s: LockedLevel() = %s, want %s", tt.name, got, tt.wantLocked)
		}
		// Whatever a crash left on the pin, New ends locked with exactly one
		// write: it never pulses.
		for _, left := range []gpio.Level{tt.wantLocked, !tt.wantLocked} {
			t.Run(tt.name+", pin left "+left.String(), func(t *testing.T) {
				pin := newRelayPin(left)
				clk := clocktest.New(t0)
				d, err := New(cfg, pin, clk, discard)
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if got := pin.Read(); got != tt.wantLocked {
					t.Errorf("after New the pin is %s, want %s", got, tt.wantLocked)
				}
				if got := pin.writes(); len(got) != 1 || got[0] != tt.wantLocked {
					t.Errorf("New wrote %v, want exactly [%s]", got, tt.wantLocked)
				}
				if d.Unlocked() {
					t.Error("Unlocked() = true after New")
				}
				changes := watch(d)
				if err := d.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				// Changes are ordered: an unlock would show up before "close".
				expectChanges(t, changes,
					Change{Door: "front", Time: t0, Unlocked: false, Cause: CauseStart},
					Change{Door: "front", Time: t0, Unlocked: false, Cause: CauseClose})
				if clk.Pending() != 0 {
					t.Errorf("New/Close left %d timers pending", clk.Pending())
				}
			})
		}
	}
}

func TestGrantPulse(t *testing.T) {
	d, pin, clk := newDoor(t)
	changes := watch(d)
	expectChanges(t, changes, Change{Door: "front", Time: t0, Cause: CauseStart})

	if err := d.Grant(context.Background()); err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if got := pin.Read(); got != gpio.High || !d.Unlocked() {
		t.Fatalf("after Grant pin=%s Unlocked()=%v, want High, true", got, d.Unlocked())
	}
	expectChanges(t, changes, Change{Door: "front", Time: t0, Unlocked: true, Cause: CauseGrant})

	clk.Advance(5*time.Second - time.Nanosecond)
	if clk.Pending() != 1 {
		t.Fatalf("1ns before the pulse ends, %d timers pending, want the relock timer", clk.Pending())
	}
	if got := pin.Read(); got != gpio.High || !d.Unlocked() {
		t.Errorf("1ns before the pulse ends pin=%s Unlocked()=%v, want High, true", got, d.Unlocked())
	}

	clk.Advance(time.Nanosecond)
	expectChanges(t, changes, Change{Door: "front", Time: t0.Add(5 * time.Second), Unlocked: false, Cause: CauseRelock})
	if got := pin.Read(); got != gpio.Low || d.Unlocked() {
		t.Errorf("after the pulse pin=%s Unlocked()=%v, want Low, false", got, d.Unlocked())
	}
	if clk.Pending() != 0 {
		t.Errorf("after the pulse %d timers pending, want 0", clk.Pending())
	}
}

func TestGrantExtends(t *testing.T) {
	d, pin, clk := newDoor(t)
	changes := watch(d)
	if err := d.Grant(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(3 * time.Second)
	if err := d.Grant(context.Background()); err != nil {
		t.Fatal(err)
	}
	if clk.Pending() != 1 {
		t.Fatalf("after a re-grant %d timers pending, want exactly 1", clk.Pending())
	}
	clk.Advance(2 * time.Second) // the first pulse's end: t0+5s
	if clk.Pending() != 1 || pin.Read() != gpio.High {
		t.Fatalf("at the first pulse's end pending=%d pin=%s, want 1, High", clk.Pending(), pin.Read())
	}
	clk.Advance(3*time.Second - time.Nanosecond)
	if clk.Pending() != 1 || pin.Read() != gpio.High {
		t.Fatalf("1ns before the extended end pending=%d pin=%s, want 1, High", clk.Pending(), pin.Read())
	}
	clk.Advance(time.Nanosecond)
	// One grant and one relock: the extension does not move the relay.
	expectChanges(t, changes,
		Change{Door: "front", Time: t0, Cause: CauseStart},
		Change{Door: "front", Time: t0, Unlocked: true, Cause: CauseGrant},
		Change{Door: "front", Time: t0.Add(8 * time.Second), Cause: CauseRelock})
	if pin.Read() != gpio.Low || d.Unlocked() {
		t.Errorf("after the extended pulse pin=%s Unlocked()=%v, want Low, false", pin.Read(), d.Unlocked())
	}
}

func TestCloseRelocks(t *testing.T) {
	d, pin, clk := newDoor(t)
	changes := watch(d)
	if err := d.Grant(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if pin.Read() != gpio.Low || d.Unlocked() || clk.Pending() != 0 {
		t.Errorf("after Close pin=%s Unlocked()=%v pending=%d, want Low, false, 0", pin.Read(), d.Unlocked(), clk.Pending())
	}
	expectChanges(t, changes,
		Change{Door: "front", Time: t0, Cause: CauseStart},
		Change{Door: "front", Time: t0, Unlocked: true, Cause: CauseGrant},
		Change{Door: "front", Time: t0.Add(time.Second), Cause: CauseClose})

	n := len(pin.writes())
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := d.Grant(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Grant after Close = %v, want ErrClosed", err)
	}
	if got := pin.writes(); len(got) != n {
		t.Errorf("second Close or late Grant wrote the pin: %v", got[n:])
	}
}

func TestGrantCancelled(t *testing.T) {
	d, pin, clk := newDoor(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Grant(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Grant(cancelled) = %v, want context.Canceled", err)
	}
	if pin.Read() != gpio.Low || clk.Pending() != 0 {
		t.Errorf("Grant(cancelled) moved the relay: pin=%s pending=%d", pin.Read(), clk.Pending())
	}
}

func TestDefaultPulse(t *testing.T) {
	pin := newRelayPin(gpio.Low)
	clk := clocktest.New(t0)
	d, err := New(Config{Name: "front"}, pin, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	changes := watch(d)
	if err := d.Grant(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultPulseLength - time.Nanosecond)
	if clk.Pending() != 1 {
		t.Fatalf("1ns before the default pulse ends, %d timers pending, want 1", clk.Pending())
	}
	clk.Advance(time.Nanosecond)
	expectChanges(t, changes,
		Change{Door: "front", Time: t0, Cause: CauseStart},
		Change{Door: "front", Time: t0, Unlocked: true, Cause: CauseGrant},
		Change{Door: "front", Time: t0.Add(DefaultPulseLength), Cause: CauseRelock})
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		noClock bool
		refuse  bool // the pin refuses the locked level
		want    error
		wantMsg string
	}{
		{"no name", Config{}, false, false, ErrConfig, "door on relay GPIO17(17): invalid door configuration: no name"},
		{"negative pulse", Config{Name: "front", PulseLength: -time.Second}, false, false, ErrConfig, `door "front": invalid door configuration: pulse length -1s is negative`},
		{"no clock", Config{Name: "front"}, true, false, ErrConfig, `door "front": invalid door configuration: no clock`},
		{"pin refuses", Config{Name: "front"}, false, true, ErrRelay, `door "front": drive relay GPIO17(17) locked (Low) at start: relay pin write failed: gpio line busy`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin := newRelayPin(gpio.High) // left unlocked
			if tt.refuse {
				pin.refuseNext(gpio.Low, 1)
			}
			var clk *clocktest.Fake
			if !tt.noClock {
				clk = clocktest.New(t0)
			}
			var err error
			if clk == nil {
				_, err = New(tt.cfg, pin, nil, discard)
			} else {
				_, err = New(tt.cfg, pin, clk, discard)
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("New = %v, want %v containing %q", err, tt.want, tt.wantMsg)
			}
			if tt.refuse && !errors.Is(err, errPin) {
				t.Errorf("New = %v, does not wrap the pin's error", err)
			}
			if !tt.refuse && pin.Read() != gpio.Low {
				t.Errorf("a refused config left the relay at %s, want it driven locked (Low) first", pin.Read())
			}
		})
	}
	if _, err := New(Config{Name: "front"}, nil, clocktest.New(t0), discard); !errors.Is(err, ErrConfig) {
		t.Errorf("New(nil relay) = %v, want ErrConfig", err)
	}
}

func TestGrantPinFailure(t *testing.T) {
	d, pin, clk := newDoor(t)
	changes := watch(d)
	pin.refuseNext(gpio.High, 1)
	err := d.Grant(context.Background())
	if !errors.Is(err, ErrRelay) || !errors.Is(err, errPin) {
		t.Fatalf("Grant on a failing pin = %v, want ErrRelay wrapping the pin's error", err)
	}
	if want := `door "front": drive relay GPIO17(17) unlocked (High)`; !strings.Contains(err.Error(), want) {
		t.Errorf("Grant error %q does not contain %q", err, want)
	}
	if got, want := pin.writes(), []gpio.Level{gpio.Low, gpio.High, gpio.Low}; !slices.Equal(got, want) {
		t.Errorf("pin writes = %v, want %v (start, failed unlock, relock)", got, want)
	}
	if pin.Read() != gpio.Low || d.Unlocked() || clk.Pending() != 0 {
		t.Errorf("after a failed grant pin=%s Unlocked()=%v pending=%d, want Low, false, 0", pin.Read(), d.Unlocked(), clk.Pending())
	}
	expectChanges(t, changes,
		Change{Door: "front", Time: t0, Cause: CauseStart},
		Change{Door: "front", Time: t0, Cause: CauseFault})

	// The pin works again: the next grant unlocks.
	if err := d.Grant(context.Background()); err != nil {
		t.Fatalf("Grant after the pin recovered: %v", err)
	}
	expectChanges(t, changes, Change{Door: "front", Time: t0, Unlocked: true, Cause: CauseGrant})
}

func TestGrantPinRefusesBothLevels(t *testing.T) {
	d, pin, clk := newDoor(t)
	changes := watch(d)
	pin.refuseNext(gpio.High, 1)
	pin.refuseNext(gpio.Low, 1)
	err := d.Grant(context.Background())
	if !errors.Is(err, ErrRelay) || !strings.Contains(err.Error(), "locked (Low) after the failed grant") {
		t.Fatalf("Grant = %v, want ErrRelay naming both failed writes", err)
	}
	// The state is unknown, so the door assumes unlocked and retries.
	if !d.Unlocked() || clk.Pending() != 1 {
		t.Fatalf("after both writes failed Unlocked()=%v pending=%d, want true, 1", d.Unlocked(), clk.Pending())
	}
	clk.Advance(RetryInterval)
	expectChanges(t, changes,
		Change{Door: "front", Time: t0, Cause: CauseStart},
		Change{Door: "front", Time: t0.Add(RetryInterval), Cause: CauseRelock})
	if pin.Read() != gpio.Low || d.Unlocked() {
		t.Errorf("after the retry pin=%s Unlocked()=%v, want Low, false", pin.Read(), d.Unlocked())
	}
}

func TestRelockRetries(t *testing.T) {
	d, pin, clk := newDoor(t)
	changes := watch(d)
	if err := d.Grant(context.Background()); err != nil {
		t.Fatal(err)
	}
	expectChanges(t, changes,
		Change{Door: "front", Time: t0, Cause: CauseStart},
		Change{Door: "front", Time: t0, Unlocked: true, Cause: CauseGrant})
	for range 2 { // start and grant writes
		<-pin.outs
	}
	pin.refuseNext(gpio.Low, 2)
	for i := range 2 {
		clk.Advance(5 * time.Second)
		if got := <-pin.outs; got != gpio.Low {
			t.Fatalf("relock attempt %d wrote %s, want Low", i, got)
		}
		// Unlocked takes the door's lock, so the failed relock (and its
		// retry timer) is complete when it returns.
		if !d.Unlocked() || pin.Read() != gpio.High || clk.Pending() != 1 {
			t.Fatalf("after refused relock %d Unlocked()=%v pin=%s pending=%d, want true, High, 1", i, d.Unlocked(), pin.Read(), clk.Pending())
		}
	}
	clk.Advance(RetryInterval - time.Nanosecond)
	if clk.Pending() != 1 {
		t.Fatalf("1ns before the retry %d timers pending, want 1", clk.Pending())
	}
	clk.Advance(time.Nanosecond)
	expectChanges(t, changes, Change{Door: "front", Time: t0.Add(10*time.Second + RetryInterval), Cause: CauseRelock})
	if pin.Read() != gpio.Low || d.Unlocked() {
		t.Errorf("after the successful retry pin=%s Unlocked()=%v, want Low, false", pin.Read(), d.Unlocked())
	}
}

func TestClosePinFailure(t *testing.T) {
	d, pin, _ := newDoor(t)
	pin.refuseNext(gpio.Low, 1)
	err := d.Close()
	if !errors.Is(err, ErrRelay) || !strings.Contains(err.Error(), `door "front": drive relay GPIO17(17) locked (Low) at close`) {
		t.Errorf("Close on a failing pin = %v, want ErrRelay naming door and pin", err)
	}
}

// TestObserversInOrder checks that a slow observer neither blocks the relay
// nor sees changes out of order, and that an observer registered late
// starts with the start change.
func TestObserversInOrder(t *testing.T) {
	d, pin, clk := newDoor(t)
	release := make(chan struct{})
	slow := make(chan Change, 32)
	d.Observe(func(c Change) {
		<-release
		slow <- c
	})
	<-pin.outs // the start write
	for range 3 {
		if err := d.Grant(context.Background()); err != nil {
			t.Fatal(err)
		}
		clk.Advance(5 * time.Second)
		// Wait for the grant and relock writes, so the next grant is a new
		// pulse rather than an extension racing the relock.
		<-pin.outs
		<-pin.outs
	}
	late := watch(d)
	expectChanges(t, late, Change{Door: "front", Time: t0, Cause: CauseStart})
	close(release)
	var want []Change
	want = append(want, Change{Door: "front", Time: t0, Cause: CauseStart})
	for i := range 3 {
		at := t0.Add(time.Duration(i) * 5 * time.Second)
		want = append(want,
			Change{Door: "front", Time: at, Unlocked: true, Cause: CauseGrant},
			Change{Door: "front", Time: at.Add(5 * time.Second), Cause: CauseRelock})
	}
	expectChanges(t, slow, want...)
}
