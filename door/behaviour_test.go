package door

import (
	"context"
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

var ctx = context.Background()

const (
	open   = gpio.High // the contact is active-high in rigConfig: High = open
	closed = gpio.Low
)

func TestGrantRelocksWhenDoorClosesAgain(t *testing.T) {
	r := newRig(t, rigConfig("front"), nil, nil)
	r.expect(want{KindLocked, CauseStart, 0})
	if err := r.d.Grant(ctx); err != nil {
		t.Fatal(err)
	}
	r.expect(want{KindUnlocked, CauseGrant, 0})
	if r.level("relay") != gpio.High || r.level("relay2") != gpio.High {
		t.Fatalf("after Grant relay=%s relay2=%s, want both High (unlocked)", r.level("relay"), r.level("relay2"))
	}
	r.run(time.Second)
	r.set("contact", open)
	r.run(time.Second)
	r.expect(want{KindOpened, CauseGrant, time.Second + lag})
	r.set("contact", closed)
	r.run(time.Second)
	// Relocked at once, 3s before the pulse would have ended: a held or
	// re-opened door does not get a second passage.
	r.expect(want{KindClosed, CauseContact, 2*time.Second + lag},
		want{KindLocked, CauseDoorClosed, 2*time.Second + lag})
	if r.level("relay") != gpio.Low || r.level("relay2") != gpio.Low || r.d.Unlocked() {
		t.Fatalf("after the door closed relay=%s relay2=%s Unlocked=%v, want locked", r.level("relay"), r.level("relay2"), r.d.Unlocked())
	}
	r.run(5 * time.Second) // past the original pulse end: no "not used", no relock
	r.expectEnd()
}

func TestGrantNotUsed(t *testing.T) {
	r := newRig(t, rigConfig("front"), nil, nil)
	r.expect(want{KindLocked, CauseStart, 0})
	r.run(100 * time.Millisecond)
	if err := r.d.Grant(ctx); err != nil {
		t.Fatal(err)
	}
	r.run(5 * time.Second)
	r.expect(want{KindUnlocked, CauseGrant, 100 * time.Millisecond},
		want{KindLocked, CauseRelock, 5100 * time.Millisecond},
		want{KindNotUsed, CauseGrant, 5100 * time.Millisecond})
	r.expectEnd()
}

func TestGrantWithoutContactIsNeverNotUsed(t *testing.T) {
	r := newRig(t, rigConfig("front"), nil, nil, "contact")
	r.expect(want{KindLocked, CauseStart, 0})
	if err := r.d.Grant(ctx); err != nil {
		t.Fatal(err)
	}
	r.run(5 * time.Second)
	r.expect(want{KindUnlocked, CauseGrant, 0}, want{KindLocked, CauseRelock, 5 * time.Second})
	r.expectEnd()
}

func TestHeldOpen(t *testing.T) {
	r := newRig(t, rigConfig("front"), nil, nil)
	r.expect(want{KindLocked, CauseStart, 0})
	if err := r.d.Grant(ctx); err != nil {
		t.Fatal(err)
	}
	r.set("contact", open)
	r.run(lag)
	opened := lag
	r.expect(want{KindUnlocked, CauseGrant, 0}, want{KindOpened, CauseGrant, opened})
	r.run(5 * time.Second)
	// The pulse ended with the door open: the lock engages (it latches when
	// the door closes) and the grant counts as used.
	r.expect(want{KindLocked, CauseRelock, 5 * time.Second})
	r.run(20*time.Second - 5*time.Second)
	r.expect(want{KindHeldPreAlarm, CauseHeldTimer, opened + 20*time.Second})
	if !r.d.Status().HeldPreAlarm || r.level("buzzer") != gpio.High || r.level("red") != gpio.High {
		t.Fatalf("at the pre-alarm status=%+v buzzer=%s red=%s, want pre-alarm, buzzer and red on", r.d.Status(), r.level("buzzer"), r.level("red"))
	}
	r.run(250 * time.Millisecond) // the pre-alarm beeps: 250ms on, 750ms off
	if r.level("buzzer") != gpio.Low || r.level("red") != gpio.High {
		t.Fatalf("250ms into the pre-alarm buzzer=%s red=%s, want Low (pause), High", r.level("buzzer"), r.level("red"))
	}
	r.run(750 * time.Millisecond)
	if r.level("buzzer") != gpio.High {
		t.Fatalf("1s into the pre-alarm buzzer=%s, want High (next beep)", r.level("buzzer"))
	}
	r.run(9 * time.Second)
	r.expect(want{KindHeldOpen, CauseHeldTimer, opened + 30*time.Second})
	r.run(time.Second)
	if !r.d.Status().HeldOpen || r.level("buzzer") != gpio.High {
		t.Fatalf("in the held-open alarm status=%+v buzzer=%s, want alarm with a steady buzzer", r.d.Status(), r.level("buzzer"))
	}
	r.set("contact", closed)
	r.run(lag)
	r.expect(want{KindClosed, CauseContact, anyTime}, want{KindHeldCleared, CauseContact, anyTime})
	if s := r.d.Status(); s.HeldOpen || s.HeldPreAlarm || r.level("buzzer") != gpio.Low || r.level("red") != gpio.Low {
		t.Fatalf("after the door closed status=%+v buzzer=%s red=%s, want cleared and quiet", s, r.level("buzzer"), r.level("red"))
	}
	r.expectEnd()
}

func TestForcedOpen(t *testing.T) {
	r := newRig(t, rigConfig("front"), nil, nil)
	r.expect(want{KindLocked, CauseStart, 0})
	r.run(time.Second)
	r.set("contact", open)
	r.run(lag)
	at := time.Second + lag
	r.expect(want{KindOpened, CauseForced, at}, want{KindForcedOpen, CauseForced, at})
	if s := r.d.Status(); !s.ForcedOpen || s.Unlocked || r.level("buzzer") != gpio.High {
		t.Fatalf("forced open: status=%+v buzzer=%s, want alarm, locked, buzzer on", s, r.level("buzzer"))
	}
	r.set("contact", closed)
	r.run(lag)
	r.expect(want{KindClosed, CauseContact, at + lag}, want{KindForcedCleared, CauseContact, at + lag})
	if r.d.Status().ForcedOpen || r.level("buzzer") != gpio.Low {
		t.Fatal("forced-open alarm not cleared on close")
	}
	r.expectEnd()
}

func TestREX(t *testing.T) {
	cfg := rigConfig("front")
	cfg.REXPulse = 3 * time.Second
	r := newRig(t, cfg, nil, nil)
	r.expect(want{KindLocked, CauseStart, 0})
	r.set("rex", gpio.High)
	r.run(lag)
	r.set("rex", gpio.Low)
	r.expect(want{KindREX, CauseREX, lag}, want{KindUnlocked, CauseREX, lag})
	r.set("contact", open)
	r.run(lag)
	r.expect(want{KindOpened, CauseREX, 2 * lag}) // no forced-open
	r.set("contact", closed)
	r.run(lag)
	r.expect(want{KindClosed, CauseContact, 3 * lag}, want{KindLocked, CauseDoorClosed, 3 * lag})

	// A REX nobody used relocks after REXPulse, without "not used".
	r.set("rex", gpio.High)
	r.run(lag)
	r.set("rex", gpio.Low)
	r.run(3 * time.Second)
	r.expect(want{KindREX, CauseREX, 4 * lag}, want{KindUnlocked, CauseREX, 4 * lag},
		want{KindLocked, CauseRelock, 4*lag + 3*time.Second})
	r.expectEnd()
}

func TestContactBounce(t *testing.T) {
	tests := []struct {
		name    string
		samples []gpio.Level // the contact's level at each sample, 10ms apart
		want    []want       // after the samples and 100ms of the last level
	}{
		{"glitch shorter than the debounce", []gpio.Level{open, open, closed}, nil},
		{"chatter while opening, then open", []gpio.Level{open, closed, open, closed, open, open, open, open},
			[]want{{KindOpened, CauseGrant, 80 * time.Millisecond}}},
		{"open exactly for the debounce", []gpio.Level{open, open, open, open, closed},
			[]want{{KindOpened, CauseGrant, 40 * time.Millisecond}, {KindClosed, CauseContact, 80 * time.Millisecond},
				{KindLocked, CauseDoorClosed, 80 * time.Millisecond}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigConfig("front"), nil, nil)
			if err := r.d.Grant(ctx); err != nil {
				t.Fatal(err)
			}
			r.expect(want{KindLocked, CauseStart, 0}, want{KindUnlocked, CauseGrant, 0})
			for _, l := range tt.samples {
				r.set("contact", l)
				r.run(tick)
			}
			r.run(100 * time.Millisecond)
			r.expect(tt.want...)
			r.expectEnd()
		})
	}
}

func TestRestartDuringUnlock(t *testing.T) {
	// A crash left both relays at their unlocked level, the buzzer on and
	// the green light on; the door is closed.
	left := map[string]gpio.Level{"relay": gpio.High, "relay2": gpio.High, "green": gpio.High, "buzzer": gpio.High}
	pins := map[string]*recPin{}
	for n, l := range left {
		pins[n] = &recPin{Pin: &gpiotest.Pin{N: n, L: l}}
	}
	contact := &gpiotest.Pin{N: "contact", L: closed}
	clk := newArmClock()
	d, err := NewDoor(rigConfig("front"), Pins{Relay: pins["relay"], Relay2: pins["relay2"], Green: pins["green"],
		Buzzer: pins["buzzer"], Contact: contact}, clk, discard)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, clk: clk, d: d, changes: make(chan Change, 64)}
	d.Observe(func(c Change) { r.changes <- c })
	for n, p := range pins {
		if got := p.writes(); len(got) != 1 || got[0] != gpio.Low {
			t.Errorf("%s: NewDoor wrote %v, want exactly [Low]: no pulse", n, got)
		}
	}
	r.run(10 * time.Second)
	for n, p := range pins {
		if got := p.writes(); len(got) != 1 {
			t.Errorf("%s: written again after the start: %v", n, got)
		}
	}
	r.expect(want{KindLocked, CauseStart, 0})
	r.expectEnd()
}

// recPin records the levels written to it.
type recPin struct {
	*gpiotest.Pin
	levels []gpio.Level
}

func (p *recPin) Out(l gpio.Level) error {
	p.Lock()
	p.levels = append(p.levels, l)
	p.Unlock()
	return p.Pin.Out(l)
}

func (p *recPin) writes() []gpio.Level {
	p.Lock()
	defer p.Unlock()
	return append([]gpio.Level(nil), p.levels...)
}

func TestStartStates(t *testing.T) {
	tests := []struct {
		name   string
		levels map[string]gpio.Level
		mode   Mode
		want   []want
		status Status
	}{
		{"door open at start: no alarm, held-open timing starts", map[string]gpio.Level{"contact": open}, "",
			[]want{{KindLocked, CauseStart, 0}, {KindOpened, CauseStart, 0}, {KindHeldPreAlarm, CauseHeldTimer, 20 * time.Second}},
			Status{Mode: ModeNormal, Commanded: ModeNormal, Open: true, HeldPreAlarm: true}},
		{"fire input active at start: released", map[string]gpio.Level{"fire": gpio.High}, "",
			[]want{{KindLocked, CauseStart, 0}, {KindFireRelease, CauseStart, 0}, {KindUnlocked, CauseStart, 0}},
			Status{Mode: ModeNormal, Commanded: ModeNormal, Unlocked: true, Fire: true}},
		{"lockdown input active at start", map[string]gpio.Level{"lockdown": gpio.High}, ModeUnlocked,
			[]want{{KindLocked, CauseStart, 0}, {KindModeChanged, CauseStart, 0}},
			Status{Mode: ModeLockedDown, Commanded: ModeUnlocked, LockdownInput: true}},
		{"tamper input active at start: reported, still locked", map[string]gpio.Level{"tamper": gpio.High}, "",
			[]want{{KindLocked, CauseStart, 0}, {KindTamper, CauseStart, 0}},
			Status{Mode: ModeNormal, Commanded: ModeNormal, Tamper: true}},
		{"start mode unlocked", nil, ModeUnlocked,
			[]want{{KindLocked, CauseStart, 0}, {KindModeChanged, CauseStart, 0}, {KindUnlocked, CauseStart, 0}},
			Status{Mode: ModeUnlocked, Commanded: ModeUnlocked, Unlocked: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rigConfig("front")
			cfg.Mode = tt.mode
			r := newRig(t, cfg, nil, tt.levels)
			r.run(20 * time.Second)
			r.expect(tt.want...)
			if got := r.d.Status(); got != tt.status {
				t.Errorf("Status = %+v, want %+v", got, tt.status)
			}
		})
	}
}

func TestModeUnlockedAndBack(t *testing.T) {
	r := newRig(t, rigConfig("front"), nil, nil)
	r.expect(want{KindLocked, CauseStart, 0})
	if err := r.d.SetMode(ctx, ModeUnlocked, "schedule"); err != nil {
		t.Fatal(err)
	}
	r.expect(want{KindModeChanged, "schedule", 0}, want{KindUnlocked, "schedule", 0})
	if err := r.d.SetMode(ctx, ModeUnlocked, "schedule"); err != nil { // no change: no event
		t.Fatal(err)
	}
	r.set("contact", open)
	r.run(time.Minute) // open for a minute in unlocked mode: no alarm
	r.expect(want{KindOpened, CauseMode, lag})
	if err := r.d.SetMode(ctx, ModeNormal, "hq_command"); err != nil {
		t.Fatal(err)
	}
	back := time.Minute
	r.expect(want{KindModeChanged, "hq_command", back}, want{KindLocked, "hq_command", back})
	r.run(20 * time.Second) // still open, now timed from the mode change
	r.expect(want{KindHeldPreAlarm, CauseHeldTimer, back + 20*time.Second})
	if err := r.d.SetMode(ctx, "party", "hq_command"); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("SetMode(party) = %v, want ErrUnknownMode", err)
	}
	r.expectEnd()
}

func TestLockdown(t *testing.T) {
	r := newRig(t, rigConfig("front"), nil, nil)
	r.expect(want{KindLocked, CauseStart, 0})
	if err := r.d.SetMode(ctx, ModeLockedDown, "hq_command"); err != nil {
		t.Fatal(err)
	}
	r.expect(want{KindModeChanged, "hq_command", 0})
	if r.d.AllowGrant(false) || !r.d.AllowGrant(true) {
		t.Errorf("in lockdown AllowGrant(false)=%v AllowGrant(true)=%v, want false, true", r.d.AllowGrant(false), r.d.AllowGrant(true))
	}
	if r.level("red") != gpio.High {
		t.Errorf("in lockdown red=%s, want High", r.level("red"))
	}
	if err := r.d.Grant(ctx); !errors.Is(err, ErrLockedDown) {
		t.Fatalf("Grant in lockdown = %v, want ErrLockedDown", err)
	}
	if r.level("relay") != gpio.Low {
		t.Fatal("a refused grant moved the relay")
	}
	if err := r.d.AdminGrant(ctx); err != nil {
		t.Fatalf("AdminGrant in lockdown: %v", err)
	}
	r.run(5 * time.Second)
	r.expect(want{KindUnlocked, CauseAdminGrant, 0}, want{KindLocked, CauseRelock, 5 * time.Second},
		want{KindNotUsed, CauseAdminGrant, 5 * time.Second})
	if err := r.d.SetMode(ctx, ModeNormal, "hq_command"); err != nil {
		t.Fatal(err)
	}
	r.expect(want{KindModeChanged, "hq_command", 5 * time.Second})

	// The local input: a running grant ends at once; releasing it returns
	// to the commanded mode.
	if err := r.d.Grant(ctx); err != nil {
		t.Fatal(err)
	}
	r.set("lockdown", gpio.High)
	r.run(lag)
	at := 5*time.Second + lag
	r.expect(want{KindUnlocked, CauseGrant, 5 * time.Second}, want{KindModeChanged, CauseLockdownInput, at},
		want{KindLocked, CauseLockdownInput, at})
	if s := r.d.Status(); s.Mode != ModeLockedDown || s.Commanded != ModeNormal || s.Unlocked {
		t.Fatalf("lockdown input: status %+v", s)
	}
	if err := r.d.SetMode(ctx, ModeUnlocked, "schedule"); err != nil {
		t.Fatal(err)
	}
	r.expect(want{KindModeChanged, "schedule", at}) // commanded, but the input holds the lockdown
	if r.d.Unlocked() {
		t.Fatal("ModeUnlocked unlocked the door over the lockdown input")
	}
	r.set("lockdown", gpio.Low)
	r.run(lag)
	r.expect(want{KindModeChanged, CauseLockdownInput, at + lag}, want{KindUnlocked, CauseLockdownInput, at + lag})
	if m := r.d.Mode(); m != ModeUnlocked {
		t.Errorf("after the lockdown input cleared Mode = %s, want %s", m, ModeUnlocked)
	}
	r.expectEnd()
}

func TestREXInLockdownStillLetsOut(t *testing.T) {
	cfg := rigConfig("front")
	cfg.Mode = ModeLockedDown
	r := newRig(t, cfg, nil, nil)
	r.set("rex", gpio.High)
	r.run(lag)
	r.expect(want{KindLocked, CauseStart, 0}, want{KindModeChanged, CauseStart, 0},
		want{KindREX, CauseREX, lag}, want{KindUnlocked, CauseREX, lag})
	r.expectEnd()
}

func TestFireRelease(t *testing.T) {
	r := newRig(t, rigConfig("front"), nil, nil)
	r.expect(want{KindLocked, CauseStart, 0})
	if err := r.d.SetMode(ctx, ModeLockedDown, "hq_command"); err != nil {
		t.Fatal(err)
	}
	r.set("fire", gpio.High)
	r.run(lag)
	r.expect(want{KindModeChanged, "hq_command", 0}, want{KindFireRelease, CauseFire, lag}, want{KindUnlocked, CauseFire, lag})
	r.set("contact", open)
	r.run(time.Minute) // fire: open as long as needed, no alarm
	r.expect(want{KindOpened, CauseFire, 2 * lag})
	r.set("contact", closed)
	r.set("fire", gpio.Low)
	r.run(lag)
	at := lag + time.Minute + lag
	r.expect(want{KindClosed, CauseContact, at}, want{KindFireCleared, CauseFire, at}, want{KindLocked, CauseFire, at})
	r.expectEnd()
}

func TestFirstPersonIn(t *testing.T) {
	t.Run("with contact: unlocks once the first person is in", func(t *testing.T) {
		r := newRig(t, rigConfig("front"), nil, nil)
		r.expect(want{KindLocked, CauseStart, 0})
		if err := r.d.SetMode(ctx, ModeFirstPersonIn, "schedule"); err != nil {
			t.Fatal(err)
		}
		r.expect(want{KindModeChanged, "schedule", 0})
		if r.d.Unlocked() {
			t.Fatal("first-person-in unlocked before anyone came")
		}
		// A grant nobody used does not start the unlock.
		if err := r.d.Grant(ctx); err != nil {
			t.Fatal(err)
		}
		r.run(5 * time.Second)
		r.expect(want{KindUnlocked, CauseGrant, 0}, want{KindLocked, CauseRelock, 5 * time.Second},
			want{KindNotUsed, CauseGrant, 5 * time.Second})
		if err := r.d.Grant(ctx); err != nil {
			t.Fatal(err)
		}
		r.set("contact", open)
		r.run(lag)
		at := 5*time.Second + lag
		r.expect(want{KindUnlocked, CauseGrant, 5 * time.Second}, want{KindOpened, CauseGrant, at},
			want{KindModeChanged, CauseFirstPersonIn, at})
		r.set("contact", closed)
		r.run(10 * time.Second)
		r.expect(want{KindClosed, CauseContact, at + lag}) // and it stays unlocked
		if s := r.d.Status(); !s.Unlocked || s.Mode != ModeUnlocked {
			t.Fatalf("after the first person: status %+v, want unlocked mode", s)
		}
		r.expectEnd()
	})
	t.Run("without contact: the grant starts it", func(t *testing.T) {
		cfg := rigConfig("front")
		cfg.Mode = ModeFirstPersonIn
		r := newRig(t, cfg, nil, nil, "contact")
		if err := r.d.Grant(ctx); err != nil {
			t.Fatal(err)
		}
		r.run(10 * time.Second)
		r.expect(want{KindLocked, CauseStart, 0}, want{KindModeChanged, CauseStart, 0},
			want{KindUnlocked, CauseGrant, 0}, want{KindModeChanged, CauseFirstPersonIn, 0})
		if !r.d.Unlocked() {
			t.Fatal("first-person-in without a contact did not unlock after a grant")
		}
		r.expectEnd()
	})
}

func TestInterlock(t *testing.T) {
	il := NewInterlock("mantrap")
	clk := newArmClock()
	clk.doors = 2
	cfgA, cfgB := rigConfig("outer"), rigConfig("inner")
	cfgA.Interlock, cfgB.Interlock = il, il
	a := newRig(t, cfgA, clk, nil)
	b := newRig(t, cfgB, clk, nil)
	a.expect(want{KindLocked, CauseStart, 0})
	b.expect(want{KindLocked, CauseStart, 0})

	if err := a.d.Grant(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Grant(ctx); !errors.Is(err, ErrInterlocked) {
		t.Fatalf("Grant on inner while outer is unlocked = %v, want ErrInterlocked", err)
	}
	a.expect(want{KindUnlocked, CauseGrant, 0})
	b.expect(want{KindInterlocked, CauseGrant, 0})
	if b.level("relay") != gpio.Low {
		t.Fatal("the interlocked door unlocked")
	}
	a.set("contact", open)
	a.run(time.Second)
	a.expect(want{KindOpened, CauseGrant, lag})
	a.set("contact", closed)
	a.run(lag) // the outer door closes and relocks
	a.expect(want{KindClosed, CauseContact, time.Second + lag}, want{KindLocked, CauseDoorClosed, time.Second + lag})

	// Now the inner door may open; while it is open, the outer one may not,
	// not even for a REX.
	if err := b.d.Grant(ctx); err != nil {
		t.Fatalf("Grant on inner with outer closed and locked: %v", err)
	}
	b.set("contact", open)
	a.set("rex", gpio.High)
	a.run(lag)
	a.set("rex", gpio.Low)
	at := time.Second + 2*lag
	b.expect(want{KindUnlocked, CauseGrant, time.Second + lag}, want{KindOpened, CauseGrant, at})
	a.expect(want{KindREX, CauseREX, at}, want{KindInterlocked, CauseREX, at})
	if err := a.d.Grant(ctx); !errors.Is(err, ErrInterlocked) {
		t.Fatalf("Grant on outer while inner is open = %v, want ErrInterlocked", err)
	}
	a.expect(want{KindInterlocked, CauseGrant, at})

	// The inner door closes: it relocks and the outer door may unlock again.
	b.set("contact", closed)
	a.run(lag)
	b.expect(want{KindClosed, CauseContact, at + lag}, want{KindLocked, CauseDoorClosed, at + lag})
	if err := a.d.Grant(ctx); err != nil {
		t.Fatalf("Grant on outer after inner closed: %v", err)
	}
	a.expect(want{KindUnlocked, CauseGrant, at + lag})
	a.expectEnd()
	// A closed door leaves the interlock.
	if err := b.d.Grant(ctx); err != nil {
		t.Fatalf("Grant on inner after outer left the interlock: %v", err)
	}
	b.expect(want{KindUnlocked, CauseGrant, at + lag})
	b.expectEnd()
}

func TestSignals(t *testing.T) {
	type lv struct{ green, red, buzzer gpio.Level }
	H, L := gpio.High, gpio.Low
	tests := []struct {
		name   string
		signal Signal
		// the outputs right after Indicate, then after each 50ms
		want []lv
	}{
		{"denied: three red beeps", SignalDenied, []lv{
			{L, H, H}, {L, H, H}, {L, H, H}, {L, L, L}, {L, L, L}, {L, H, H}, {L, H, H}, {L, H, H}, {L, L, L}, {L, L, L},
			{L, H, H}, {L, H, H}, {L, H, H}, {L, L, L}, {L, L, L}}},
		{"pin wanted: green blink with a chirp, repeating", SignalPINWanted, []lv{
			{H, L, H}, {H, L, L}, {H, L, L}, {H, L, L}, {H, L, L}, {H, L, L}, {H, L, L}, {H, L, L}, {H, L, L}, {H, L, L},
			{L, L, L}, {L, L, L}, {L, L, L}, {L, L, L}, {L, L, L}, {L, L, L}, {L, L, L}, {L, L, L}, {L, L, L}, {L, L, L},
			{H, L, H}, {H, L, L}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigConfig("front"), nil, nil)
			if err := r.d.Indicate(ctx, tt.signal); err != nil {
				t.Fatal(err)
			}
			for i, w := range tt.want {
				if i > 0 {
					r.run(50 * time.Millisecond)
				}
				got := lv{r.level("green"), r.level("red"), r.level("buzzer")}
				if got != w {
					t.Fatalf("at +%dms green/red/buzzer = %v, want %v", i*50, got, w)
				}
			}
		})
	}
	t.Run("a grant ends the PIN pattern and shows green while unlocked", func(t *testing.T) {
		r := newRig(t, rigConfig("front"), nil, nil)
		if err := r.d.Indicate(ctx, SignalPINWanted); err != nil {
			t.Fatal(err)
		}
		r.run(500 * time.Millisecond) // in the pattern's dark phase
		if err := r.d.Grant(ctx); err != nil {
			t.Fatal(err)
		}
		if r.level("green") != gpio.High || r.level("buzzer") != gpio.High {
			t.Fatal("grant: no green with beep")
		}
		r.run(200 * time.Millisecond)
		if r.level("green") != gpio.High || r.level("buzzer") != gpio.Low {
			t.Fatalf("after the grant beep green=%s buzzer=%s, want High, Low", r.level("green"), r.level("buzzer"))
		}
		r.run(5 * time.Second)
		if r.level("green") != gpio.Low {
			t.Fatal("green stayed on after the relock")
		}
	})
	t.Run("unknown and alarm signals are refused", func(t *testing.T) {
		r := newRig(t, rigConfig("front"), nil, nil)
		for _, s := range []Signal{"disco", SignalAlarm, SignalPreAlarm} {
			if err := r.d.Indicate(ctx, s); !errors.Is(err, ErrUnknownSignal) {
				t.Errorf("Indicate(%s) = %v, want ErrUnknownSignal", s, err)
			}
		}
	})
}

// TestTamper checks the tamper input in either wiring and in each state of
// the lock: it is reported when it holds for the debounce and when it
// clears, a shorter glitch is not, and the lock, the mode and the
// indicators never follow it.
func TestTamper(t *testing.T) {
	tests := []struct {
		name      string
		activeLow bool
		mode      Mode
		grant     bool         // a grant runs when the tamper input changes
		samples   []gpio.Level // the tamper input's electrical level at each sample, 10ms apart, from rest
		want      []Kind       // tamper changes reported
		unlocked  bool         // the relay's state throughout
		status    bool         // Status.Tamper at the end
	}{
		{name: "locked, active-high: raised and cleared", samples: []gpio.Level{gpio.High, gpio.High, gpio.High, gpio.High, gpio.High, gpio.Low, gpio.Low, gpio.Low, gpio.Low},
			want: []Kind{KindTamper, KindTamperCleared}},
		{name: "locked, active-low: raised and stays", activeLow: true, samples: []gpio.Level{gpio.Low, gpio.Low, gpio.Low, gpio.Low},
			want: []Kind{KindTamper}, status: true},
		{name: "glitch shorter than the debounce", samples: []gpio.Level{gpio.High, gpio.High, gpio.Low}},
		{name: "during a grant: the unlock runs on", grant: true, samples: []gpio.Level{gpio.High, gpio.High, gpio.High, gpio.High},
			want: []Kind{KindTamper}, unlocked: true, status: true},
		{name: "unlocked mode: stays unlocked", mode: ModeUnlocked, samples: []gpio.Level{gpio.High, gpio.High, gpio.High, gpio.High, gpio.Low, gpio.Low, gpio.Low, gpio.Low},
			want: []Kind{KindTamper, KindTamperCleared}, unlocked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rigConfig("front")
			cfg.Tamper.ActiveLow = tt.activeLow
			cfg.Mode = tt.mode
			rest := gpio.Level(tt.activeLow)
			r := newRig(t, cfg, nil, map[string]gpio.Level{"tamper": rest})
			r.expect(want{KindLocked, CauseStart, 0})
			if tt.mode == ModeUnlocked {
				r.expect(want{KindModeChanged, CauseStart, 0}, want{KindUnlocked, CauseStart, 0})
			}
			if tt.grant {
				if err := r.d.Grant(ctx); err != nil {
					t.Fatal(err)
				}
				r.expect(want{KindUnlocked, CauseGrant, 0})
			}
			outputs := map[string]gpio.Level{"relay": r.level("relay"), "relay2": r.level("relay2"),
				"green": r.level("green"), "red": r.level("red"), "buzzer": r.level("buzzer")}
			for _, l := range tt.samples {
				r.set("tamper", l)
				r.run(tick)
				for pin, was := range outputs {
					if got := r.level(pin); got != was {
						t.Fatalf("%s went %s -> %s on a tamper input change", pin, was, got)
					}
				}
			}
			r.run(100 * time.Millisecond)
			for _, k := range tt.want {
				r.expect(want{k, CauseTamper, anyTime})
			}
			wantMode := tt.mode
			if wantMode == "" {
				wantMode = ModeNormal
			}
			if s := r.d.Status(); s.Tamper != tt.status || s.Unlocked != tt.unlocked || s.Mode != wantMode {
				t.Errorf("Status = %+v, want Tamper=%v Unlocked=%v in mode %s", s, tt.status, tt.unlocked, wantMode)
			}
			r.expectEnd()
		})
	}
}
