package door

import (
	"errors"
	"strings"
	"testing"

	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// registerTestLines registers fake lines in periph's registry, as the
// GPIO character device driver registers a Pi's lines.
func registerTestLines(t *testing.T, names ...string) {
	t.Helper()
	if err := hostInit(); err != nil {
		t.Fatalf("host init: %v", err)
	}
	for i, n := range names {
		if gpioreg.ByName(n) != nil {
			continue
		}
		if err := gpioreg.Register(&gpiotest.Pin{N: n, Num: 900 + i}); err != nil {
			t.Fatalf("register %s: %v", n, err)
		}
	}
}

func TestOpenPin(t *testing.T) {
	registerTestLines(t, "TESTGPIO5", "TESTGPIO6")
	p, err := OpenPin("TESTGPIO5")
	if err != nil || p.Name() != "TESTGPIO5" {
		t.Fatalf("OpenPin(TESTGPIO5) = %v, %v", p, err)
	}
	_, err = OpenPin("GPIO99")
	if !errors.Is(err, ErrNoSuchPin) {
		t.Fatalf("OpenPin(GPIO99) = %v, want ErrNoSuchPin", err)
	}
	for _, want := range []string{`"GPIO99"`, "available:", "TESTGPIO5, TESTGPIO6"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("OpenPin error %q does not contain %q", err, want)
		}
	}
}

func TestOpenPins(t *testing.T) {
	registerTestLines(t, "TESTGPIO17", "TESTGPIO22", "TESTGPIO23")
	p, err := OpenPins(PinNames{Relay: "TESTGPIO17", Contact: "TESTGPIO22", REX: "TESTGPIO23"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Relay == nil || p.Contact == nil || p.REX == nil || p.Relay2 != nil || p.Green != nil || p.Fire != nil {
		t.Fatalf("OpenPins = %+v, want relay, contact and rex only", p)
	}
	tests := []struct {
		name  string
		names PinNames
		want  error
		msg   string
	}{
		{"no relay", PinNames{Contact: "TESTGPIO22"}, ErrConfig, "relay pin"},
		{"line used twice", PinNames{Relay: "TESTGPIO17", Buzzer: "TESTGPIO17"}, ErrPinReused,
			`buzzer pin "TESTGPIO17": GPIO line named twice (also the relay pin)`},
		{"unknown line", PinNames{Relay: "TESTGPIO17", Fire: "GPIO99"}, ErrNoSuchPin, `fire pin: no such GPIO line "GPIO99"`},
		{"tamper on the contact's line", PinNames{Relay: "TESTGPIO17", Contact: "TESTGPIO22", Tamper: "TESTGPIO22"}, ErrPinReused,
			`tamper pin "TESTGPIO22": GPIO line named twice (also the contact pin)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenPins(tt.names)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("OpenPins = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}
