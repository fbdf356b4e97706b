package door

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	gosync "sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
)

// ErrNoSuchPin means a configured GPIO line name is not on this machine.
var ErrNoSuchPin = errors.New("no such GPIO line")

var hostInit = gosync.OnceValue(func() error {
	_, err := host.Init()
	return err
})

// OpenPin initialises periph's host drivers (once) and returns the GPIO line
// with the given name (e.g. "GPIO17"). An unknown name gives ErrNoSuchPin
// with the names that do exist, so a wiring mistake is fixed from the log.
func OpenPin(name string) (gpio.PinIO, error) {
	if err := hostInit(); err != nil {
		return nil, fmt.Errorf("initialise GPIO host drivers: %w", err)
	}
	if p := gpioreg.ByName(name); p != nil {
		return p, nil
	}
	var names []string
	for _, p := range gpioreg.All() {
		names = append(names, p.Name())
	}
	slices.Sort(names)
	avail := strings.Join(names, ", ")
	if avail == "" {
		avail = "none: this machine exposes no GPIO lines"
	}
	return nil, fmt.Errorf("%w %q (available: %s)", ErrNoSuchPin, name, avail)
}
