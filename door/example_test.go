package door_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
)

// A fail-secure door on a gpiotest pin and a fake clock: the relay is low
// (locked) from the start, high during a grant's pulse, low again when the
// pulse has run out, and low after Close. Every move is a Change delivered
// to the observers.
func Example() {
	relay := &gpiotest.Pin{N: "GPIO17", L: true} // left energised by a crash
	clk := clocktest.New(time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC))
	d, err := door.New(door.Config{Name: "lab", PulseLength: 3 * time.Second}, relay, clk, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	changes := make(chan door.Change, 8)
	d.Observe(func(c door.Change) { changes <- c })
	show := func() {
		c := <-changes
		fmt.Printf("%s %s (%s): relay %s\n", c.Time.Format(time.TimeOnly), c.Kind, c.Cause, relay.Read())
	}
	show()

	if err := d.Grant(context.Background()); err != nil {
		log.Fatal(err)
	}
	show()
	clk.Advance(3 * time.Second) // the pulse runs out
	show()

	if err := d.Close(); err != nil {
		log.Fatal(err)
	}
	show()
	// Output:
	// 09:00:00 locked (start): relay Low
	// 09:00:00 unlocked (grant): relay High
	// 09:00:03 locked (relock): relay Low
	// 09:00:03 locked (close): relay Low
}
