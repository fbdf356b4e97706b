package door

import (
	"fmt"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Defaults applied by New and NewDoor where a Config duration is zero.
const (
	// DefaultPulseLength is how long a grant unlocks when Config.PulseLength
	// is zero.
	DefaultPulseLength = 5 * time.Second
	// DefaultDebounce is how long an input must hold a new level before the
	// door believes it (Config.Debounce zero).
	DefaultDebounce = 50 * time.Millisecond
	// DefaultSampleInterval is how often the inputs are read
	// (Config.SampleInterval zero).
	DefaultSampleInterval = 10 * time.Millisecond
	// DefaultHeldPreAlarm is how long a door may stand open before the
	// pre-alarm sounds (Config.HeldPreAlarm zero).
	DefaultHeldPreAlarm = 20 * time.Second
	// DefaultHeldAlarm is how long a door may stand open before the
	// held-open alarm (Config.HeldAlarm zero).
	DefaultHeldAlarm = 30 * time.Second
)

// RetryInterval is how long the door waits before it tries again to drive
// the locked level after the relay pin refused it.
const RetryInterval = time.Second

// Config is one door's setup: its name, timings, the active level of each
// pin and its mantrap partner. The pins themselves are in Pins.
type Config struct {
	// Name names the door in changes, logs and errors. Required.
	Name string
	// ActiveLow: the lock relay is energised by a low output (many relay
	// boards).
	ActiveLow bool
	// FailSafe: locked = energised (maglocks), so a power cut opens the
	// door. The default, fail-secure, is locked = de-energised.
	FailSafe bool
	// PulseLength is how long a grant unlocks; zero means
	// DefaultPulseLength. Negative is refused.
	PulseLength time.Duration

	// Relay2 is the level setup of the optional second relay (a turnstile's
	// or gate lane's release input, a second door leaf). It follows the lock
	// relay: unlocked together, locked together.
	Relay2 RelayConfig
	// Green, Red and Buzzer are the level setups of the optional indicator
	// outputs.
	Green, Red, Buzzer OutputConfig
	// Contact is the door contact: active means the door is open.
	Contact InputConfig
	// REX is the request-to-exit button or sensor: active means pressed.
	REX InputConfig
	// Fire is the fire-panel release input: active unlocks the door for as
	// long as it stays active, over every mode and the interlock.
	Fire InputConfig
	// Lockdown is a local lockdown input (panic button, intrusion panel):
	// active puts the door in ModeLockedDown for as long as it stays active.
	Lockdown InputConfig
	// Tamper is the tamper switch of the reader or the door controller's
	// enclosure: active means opened or pulled off the wall. It is reported
	// only (KindTamper, KindTamperCleared): it never moves the lock.
	Tamper InputConfig

	// Debounce is how long an input must hold a new level before the door
	// acts on it; zero means DefaultDebounce.
	Debounce time.Duration
	// SampleInterval is how often the inputs are read; zero means
	// DefaultSampleInterval.
	SampleInterval time.Duration
	// REXPulse is how long a REX unlocks; zero means PulseLength.
	REXPulse time.Duration
	// HeldPreAlarm is how long the door may stand open before the buzzer
	// pre-alarm; zero means DefaultHeldPreAlarm. It must be shorter than
	// HeldAlarm.
	HeldPreAlarm time.Duration
	// HeldAlarm is how long the door may stand open before the held-open
	// alarm event; zero means DefaultHeldAlarm.
	HeldAlarm time.Duration
	// Mode is the mode at start; empty means ModeNormal.
	Mode Mode
	// Interlock, if set, joins this door to a mantrap: it unlocks for a
	// grant or REX only while every other door of the interlock is closed
	// and locked.
	Interlock *Interlock
}

// RelayConfig is the level setup of a relay output.
type RelayConfig struct {
	// ActiveLow: the relay is energised by a low output.
	ActiveLow bool
	// FailSafe: locked = energised.
	FailSafe bool
}

// LockedLevel returns the pin level that keeps the relay locked.
func (r RelayConfig) LockedLevel() gpio.Level {
	energised := gpio.Level(!r.ActiveLow) // High energises unless active-low
	if r.FailSafe {
		return energised
	}
	return !energised
}

// OutputConfig is the level setup of an indicator output (LED, buzzer).
// Off is always the safe state.
type OutputConfig struct {
	// ActiveLow: the output is on when the pin is low.
	ActiveLow bool
}

// Level returns the pin level for on or off.
func (o OutputConfig) Level(on bool) gpio.Level { return gpio.Level(on != o.ActiveLow) }

// InputConfig is the setup of an input pin.
type InputConfig struct {
	// ActiveLow: the input is active (door open, button pressed, fire,
	// enclosure opened) when the pin reads low.
	ActiveLow bool
	// Pull is the internal bias resistor; gpio.PullNoChange leaves it as the
	// board set it. ParsePull turns config words into this.
	Pull gpio.Pull
}

// active tells whether level means active.
func (c InputConfig) active(l gpio.Level) bool { return bool(l) != c.ActiveLow }

// LockedLevel returns the pin level that keeps the lock relay locked.
func (c Config) LockedLevel() gpio.Level {
	return RelayConfig{ActiveLow: c.ActiveLow, FailSafe: c.FailSafe}.LockedLevel()
}

// ParsePull turns a configuration word into a pull setting: "" and "up"
// mean gpio.PullUp (contacts and buttons to ground), "down" gpio.PullDown,
// "none" gpio.Float (an external resistor), "keep" gpio.PullNoChange.
func ParsePull(s string) (gpio.Pull, error) {
	switch strings.ToLower(s) {
	case "", "up":
		return gpio.PullUp, nil
	case "down":
		return gpio.PullDown, nil
	case "none", "float":
		return gpio.Float, nil
	case "keep":
		return gpio.PullNoChange, nil
	}
	return gpio.PullNoChange, fmt.Errorf("%w: pull %q (want up, down, none or keep)", ErrConfig, s)
}

// withDefaults validates c and fills in its zero durations.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, fmt.Errorf("%w: no name", ErrConfig)
	}
	if c.PulseLength < 0 {
		return c, fmt.Errorf("%w: pulse length %s is negative", ErrConfig, c.PulseLength)
	}
	if c.PulseLength == 0 {
		c.PulseLength = DefaultPulseLength
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"debounce", &c.Debounce, DefaultDebounce},
		{"sample interval", &c.SampleInterval, DefaultSampleInterval},
		{"REX pulse", &c.REXPulse, c.PulseLength},
		{"held-open pre-alarm", &c.HeldPreAlarm, DefaultHeldPreAlarm},
		{"held-open alarm", &c.HeldAlarm, DefaultHeldAlarm},
	} {
		if *f.v < 0 {
			return c, fmt.Errorf("%w: %s %s is negative", ErrConfig, f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.HeldPreAlarm >= c.HeldAlarm {
		return c, fmt.Errorf("%w: held-open pre-alarm %s is not shorter than the alarm %s", ErrConfig, c.HeldPreAlarm, c.HeldAlarm)
	}
	if c.Mode == "" {
		c.Mode = ModeNormal
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return c, fmt.Errorf("%w: start mode: %w", ErrConfig, err)
	}
	return c, nil
}
