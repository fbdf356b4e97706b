package door

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// TestOutputLevels drives every output through its safe and active states
// for every combination of active level (and, for relays, fail-safe or
// fail-secure), from either level a crash may have left.
func TestOutputLevels(t *testing.T) {
	H, L := gpio.High, gpio.Low
	relays := []struct {
		name                string
		activeLow, failSafe bool
		locked              gpio.Level
	}{
		{"fail-secure active-high", false, false, L},
		{"fail-secure active-low", true, false, H},
		{"fail-safe active-high", false, true, H},
		{"fail-safe active-low", true, true, L},
	}
	indicators := []struct {
		name      string
		activeLow bool
		off       gpio.Level
	}{
		{"active-high", false, L},
		{"active-low", true, H},
	}
	for _, left := range []gpio.Level{L, H} {
		for _, rl := range relays {
			for _, which := range []string{"relay", "relay2"} {
				t.Run(fmt.Sprintf("%s %s left %s", which, rl.name, left), func(t *testing.T) {
					cfg := rigConfig("front")
					rc := RelayConfig{ActiveLow: rl.activeLow, FailSafe: rl.failSafe}
					if which == "relay" {
						cfg.ActiveLow, cfg.FailSafe = rc.ActiveLow, rc.FailSafe
					} else {
						cfg.Relay2 = rc
					}
					if got := rc.LockedLevel(); got != rl.locked {
						t.Fatalf("LockedLevel() = %s, want %s", got, rl.locked)
					}
					r := newRig(t, cfg, nil, map[string]gpio.Level{which: left})
					if got := r.level(which); got != rl.locked {
						t.Fatalf("after NewDoor %s = %s, want locked %s", which, got, rl.locked)
					}
					if err := r.d.Grant(ctx); err != nil {
						t.Fatal(err)
					}
					if got := r.level(which); got != !rl.locked {
						t.Fatalf("after Grant %s = %s, want unlocked %s", which, got, !rl.locked)
					}
					r.run(5 * time.Second)
					if got := r.level(which); got != rl.locked {
						t.Fatalf("after the pulse %s = %s, want locked %s", which, got, rl.locked)
					}
					if err := r.d.Grant(ctx); err != nil {
						t.Fatal(err)
					}
					if err := r.d.Close(); err != nil {
						t.Fatal(err)
					}
					if got := r.level(which); got != rl.locked {
						t.Fatalf("after Close %s = %s, want locked %s", which, got, rl.locked)
					}
				})
			}
		}
		for _, ind := range indicators {
			for _, which := range []string{"green", "red", "buzzer"} {
				t.Run(fmt.Sprintf("%s %s left %s", which, ind.name, left), func(t *testing.T) {
					cfg := rigConfig("front")
					oc := OutputConfig{ActiveLow: ind.activeLow}
					switch which {
					case "green":
						cfg.Green = oc
					case "red":
						cfg.Red = oc
					case "buzzer":
						cfg.Buzzer = oc
					}
					r := newRig(t, cfg, nil, map[string]gpio.Level{which: left})
					if got := r.level(which); got != ind.off {
						t.Fatalf("after NewDoor %s = %s, want off %s", which, got, ind.off)
					}
					// Forced open lights red and sounds the buzzer; a grant
					// lights green.
					sig := SignalDenied
					if which == "green" {
						sig = SignalPINWanted
					}
					if err := r.d.Indicate(ctx, sig); err != nil {
						t.Fatal(err)
					}
					if got := r.level(which); got != !ind.off {
						t.Fatalf("during %s %s = %s, want on %s", sig, which, got, !ind.off)
					}
					if err := r.d.Close(); err != nil {
						t.Fatal(err)
					}
					if got := r.level(which); got != ind.off {
						t.Fatalf("after Close %s = %s, want off %s", which, got, ind.off)
					}
				})
			}
		}
	}
}

// TestInputLevels checks active-low and active-high inputs: the same
// physical event (door opens) from either wiring.
func TestInputLevels(t *testing.T) {
	for _, activeLow := range []bool{false, true} {
		t.Run(fmt.Sprintf("contact active-low=%t", activeLow), func(t *testing.T) {
			cfg := rigConfig("front")
			cfg.Contact.ActiveLow = activeLow
			closedLevel := gpio.Level(activeLow)
			r := newRig(t, cfg, nil, map[string]gpio.Level{"contact": closedLevel})
			r.expect(want{KindLocked, CauseStart, 0})
			r.set("contact", !closedLevel)
			r.run(lag)
			r.expect(want{KindOpened, CauseForced, lag}, want{KindForcedOpen, CauseForced, lag})
			r.expectEnd()
		})
	}
}

func TestNewDoorRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		pins   func(*Pins)
		want   error
		msg    string
	}{
		{"pre-alarm not before alarm", func(c *Config) { c.HeldPreAlarm = 30 * time.Second }, nil, ErrConfig,
			"held-open pre-alarm 30s is not shorter than the alarm 30s"},
		{"negative debounce", func(c *Config) { c.Debounce = -time.Millisecond }, nil, ErrConfig, "debounce -1ms is negative"},
		{"unknown start mode", func(c *Config) { c.Mode = "open_house" }, nil, ErrUnknownMode, `start mode: unknown door mode "open_house"`},
		{"input refuses", nil, func(p *Pins) { p.Contact = &gpiotest.Pin{N: "GPIO27", Num: 27} }, ErrInput,
			"set up contact input GPIO27(27) (pull PullUp): input pin setup failed: gpiotest: please set p.EdgesChan first"},
		{"relay2 refuses", nil, func(p *Pins) { p.Relay2 = failPin{} }, ErrRelay, "drive relay2 broken locked (Low) at start"},
		{"indicator refuses", nil, func(p *Pins) { p.Buzzer = failPin{} }, ErrOutput, "drive buzzer output broken Low"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rigConfig("front")
			if tt.change != nil {
				tt.change(&cfg)
			}
			relay := &gpiotest.Pin{N: "GPIO17", Num: 17, L: gpio.High}
			pins := Pins{Relay: relay}
			if tt.pins != nil {
				tt.pins(&pins)
			}
			if tt.name == "input refuses" {
				cfg.Contact.Pull = gpio.PullUp
				pins.Contact = edgePin{pins.Contact.(*gpiotest.Pin)}
			}
			_, err := NewDoor(cfg, pins, newArmClock(), discard)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("NewDoor = %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if relay.Read() != gpio.Low {
				t.Errorf("refused door left its relay at %s, want it driven locked (Low) first", relay.Read())
			}
		})
	}
}

// edgePin asks for edge detection, which gpiotest refuses without an
// EdgesChan: a stand-in for a line the kernel will not hand over.
type edgePin struct{ *gpiotest.Pin }

func (p edgePin) In(pull gpio.Pull, _ gpio.Edge) error { return p.Pin.In(pull, gpio.BothEdges) }

// failPin refuses every write.
type failPin struct{ gpio.PinOut }

func (failPin) String() string           { return "broken" }
func (failPin) Out(gpio.Level) error     { return errPin }
func (failPin) Name() string             { return "broken" }
func (failPin) Number() int              { return -1 }
func (failPin) Function() string         { return "" }
func (failPin) Halt() error              { return nil }
func (f failPin) Read() gpio.Level       { return gpio.Low }
func (f failPin) Pull() gpio.Pull        { return gpio.PullNoChange }
func (f failPin) DefaultPull() gpio.Pull { return gpio.PullNoChange }

func TestParsePull(t *testing.T) {
	tests := []struct {
		in   string
		want gpio.Pull
		err  bool
	}{
		{"", gpio.PullUp, false}, {"up", gpio.PullUp, false}, {"DOWN", gpio.PullDown, false},
		{"none", gpio.Float, false}, {"float", gpio.Float, false}, {"keep", gpio.PullNoChange, false},
		{"sideways", gpio.PullNoChange, true},
	}
	for _, tt := range tests {
		got, err := ParsePull(tt.in)
		if got != tt.want || (err != nil) != tt.err || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("ParsePull(%q) = %s, %v; want %s, error %t (ErrConfig)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes {
		if got, err := ParseMode(string(m)); got != m || err != nil {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	for _, s := range []string{"", "Normal", "lockdown", "unlocked "} {
		if _, err := ParseMode(s); !errors.Is(err, ErrUnknownMode) {
			t.Errorf("ParseMode(%q) = %v, want ErrUnknownMode", s, err)
		}
	}
}

// FuzzParseMode: any string either parses to one of Modes, spelled the
// same, or fails with ErrUnknownMode.
func FuzzParseMode(f *testing.F) {
	for _, m := range Modes {
		f.Add(string(m))
	}
	f.Add("locked-down")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMode(s)
		if err != nil {
			if !errors.Is(err, ErrUnknownMode) || m != "" {
				t.Fatalf("ParseMode(%q) = %q, %v", s, m, err)
			}
			return
		}
		if string(m) != s {
			t.Fatalf("ParseMode(%q) = %q", s, m)
		}
	})
}
