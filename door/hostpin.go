package door

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
	"periph.io/x/host/v3/gpioioctl"
)

// ErrNoSuchPin means a configured GPIO line name is not on this machine.
var ErrNoSuchPin = errors.New("no such GPIO line")

// ErrPinReused means one GPIO line was named for two roles.
var ErrPinReused = errors.New("GPIO line named twice")

// hostInit loads periph's host drivers once. On a Raspberry Pi 4 and 5 the
// GPIO character device driver (gpioioctl, /dev/gpiochip*) registers every
// named line of every chip (pinctrl-bcm2711 on a Pi 4, pinctrl-rp1 on a
// Pi 5) under its kernel name, "GPIO17" and so on; on a Pi 4 the bcm283x
// driver adds the same names (and header aliases such as "P1_11").
var hostInit = sync.OnceValue(func() error {
	_, err := host.Init()
	return err
})

// OpenPin initialises periph's host drivers (once) and returns the GPIO line
// with the given name (e.g. "GPIO17"). An unknown name gives ErrNoSuchPin
// with the names that do exist, chip by chip, so a wiring mistake is fixed
// from the log.
func OpenPin(name string) (gpio.PinIO, error) {
	if err := hostInit(); err != nil {
		return nil, fmt.Errorf("initialise GPIO host drivers: %w", err)
	}
	if p := gpioreg.ByName(name); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%w %q (available: %s)", ErrNoSuchPin, name, availableLines())
}

// availableLines describes the GPIO lines this machine offers: per chip of
// the character device driver, then any other registered names.
func availableLines() string {
	var parts []string
	seen := map[string]bool{}
	for _, c := range gpioioctl.Chips {
		var names []string
		for _, l := range c.Lines() {
			if n := l.Name(); n != "" && gpioreg.ByName(n) != nil {
				names = append(names, n)
				seen[n] = true
			}
		}
		if len(names) > 0 {
			parts = append(parts, fmt.Sprintf("%s [%s]: %s", c.Name(), c.Label(), strings.Join(names, ", ")))
		}
	}
	var rest []string
	for _, p := range gpioreg.All() {
		if !seen[p.Name()] {
			rest = append(rest, p.Name())
		}
	}
	slices.Sort(rest)
	if len(rest) > 0 {
		parts = append(parts, strings.Join(rest, ", "))
	}
	if len(parts) == 0 {
		return "none: this machine exposes no GPIO lines (no /dev/gpiochip* the process may open)"
	}
	return strings.Join(parts, "; ")
}

// PinNames are the configured GPIO line names of one door; an empty name
// means the pin is not wired.
type PinNames struct {
	// Relay is required.
	Relay string
	// Relay2, Green, Red, Buzzer are optional outputs.
	Relay2, Green, Red, Buzzer string
	// Contact, REX, Fire, Lockdown, Tamper are optional inputs.
	Contact, REX, Fire, Lockdown, Tamper string
}

// OpenPins opens every named line (see OpenPin) and returns them as Pins
// for NewDoor. It does not drive anything: NewDoor does that, relays
// first. A name used twice gives ErrPinReused; an unknown name
// ErrNoSuchPin; the error says which role it was for.
func OpenPins(n PinNames) (Pins, error) {
	var p Pins
	if n.Relay == "" {
		return p, fmt.Errorf("relay pin: %w: no name", ErrConfig)
	}
	roles := []struct {
		role, name string
		out        *gpio.PinOut
		in         *gpio.PinIn
	}{
		{"relay", n.Relay, &p.Relay, nil},
		{"relay2", n.Relay2, &p.Relay2, nil},
		{"green", n.Green, &p.Green, nil},
		{"red", n.Red, &p.Red, nil},
		{"buzzer", n.Buzzer, &p.Buzzer, nil},
		{"contact", n.Contact, nil, &p.Contact},
		{"rex", n.REX, nil, &p.REX},
		{"fire", n.Fire, nil, &p.Fire},
		{"lockdown", n.Lockdown, nil, &p.Lockdown},
		{"tamper", n.Tamper, nil, &p.Tamper},
	}
	used := map[string]string{}
	for _, r := range roles {
		if r.name == "" {
			continue
		}
		pin, err := OpenPin(r.name)
		if err != nil {
			return Pins{}, fmt.Errorf("%s pin: %w", r.role, err)
		}
		// Keyed by the line's own name, so an alias ("P1_11" for
		// "GPIO17") is caught too.
		if other, ok := used[pin.Name()]; ok {
			return Pins{}, fmt.Errorf("%s pin %q: %w (also the %s pin)", r.role, r.name, ErrPinReused, other)
		}
		used[pin.Name()] = r.role
		if r.out != nil {
			*r.out = pin
		} else {
			*r.in = pin
		}
	}
	return p, nil
}
