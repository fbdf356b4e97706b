package e2e_test

import (
	"path/filepath"
	"slices"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/controller"
	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/internal/broker"
	"github.com/tobira-ac/tobira/internal/clock"
	tsync "github.com/tobira-ac/tobira/sync"
)

// TestTamperSwitchRaisesConsoleAlarm follows a tamper switch from the pin
// to the console: a door on gpiotest pins with an active-low tamper input,
// its changes recorded by the controller into the outbox, sync.Edge
// sending them through the embedded broker to hq.Service, and the
// console, wired to HQ as tobira-hq serve wires it (OnEvent = Publish),
// keeping its alarm list. Opening the enclosure raises the tamper alarm
// of that door; closing it clears the alarm; the lock never moves.
func TestTamperSwitchRaisesConsoleAlarm(t *testing.T) {
	b, err := broker.Start(t.Context(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	log := testLogger(t)

	h := runHQ(t, b.URL(), nil)
	st, err := console.OpenStores(filepath.Join(t.TempDir(), "console.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	con, err := console.New(console.Config{HQ: h, Accounts: st.Accounts, Audit: st.Audit, Alarms: st.Alarms, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.OnEvent(con.Publish)

	ob := newOutbox(t)
	e := runEdgeWith(t, tsync.EdgeConfig{Broker: b.URL(), Logger: log}, ob, 10, 2)
	relay := &gpiotest.Pin{N: "RELAY", L: gpio.High}   // left energised: NewDoor locks it
	tamper := &gpiotest.Pin{N: "TAMPER", L: gpio.High} // enclosure shut: the NC switch holds the line high
	d, err := door.NewDoor(door.Config{Name: "front", Tamper: door.InputConfig{ActiveLow: true}},
		door.Pins{Relay: relay, Tamper: tamper}, clock.System{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	controller.RecordDoorChanges(d, ob, e.Notify, log)

	id := alarm.ID("s1", "d1", "front", alarm.Tamper)
	alarmIs := func(want alarm.State) func() bool {
		return func() bool { a, err := st.Alarms.Get(id); return err == nil && a.State == want }
	}
	waitFor(t, "the start event at HQ", func() bool { evs, err := h.Events("s1", "d1"); return err == nil && len(evs) > 0 })
	if _, err := st.Alarms.Get(id); err == nil {
		t.Fatal("tamper alarm raised before the enclosure was opened")
	}

	steps := []struct {
		what   string
		level  gpio.Level
		reason string
		state  alarm.State
	}{
		{"enclosure opened", gpio.Low, "tamper", alarm.Active},
		{"enclosure closed", gpio.High, "tamper_cleared", alarm.Cleared},
		{"opened again", gpio.Low, "tamper", alarm.Active},
	}
	for _, s := range steps {
		if err := tamper.Out(s.level); err != nil {
			t.Fatal(err)
		}
		waitFor(t, s.what+": alarm "+string(s.state), alarmIs(s.state))
		if relay.Read() != gpio.Low || d.Status().Unlocked {
			t.Fatalf("%s: relay %s, door unlocked %t: tamper moved the lock", s.what, relay.Read(), d.Status().Unlocked)
		}
		if got := d.Status().Tamper; got != (s.state == alarm.Active) {
			t.Errorf("%s: Status.Tamper = %t", s.what, got)
		}
	}
	waitDrained(t, e)
	evs, err := h.Events("s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, ev := range evs {
		if ev.Door != "front" || ev.Type != "door" {
			t.Errorf("event %+v is not front's door event", ev)
		}
		reasons = append(reasons, ev.Reason)
	}
	want := []string{"locked", "tamper", "tamper_cleared", "tamper"}
	if !slices.Equal(reasons, want) {
		t.Errorf("HQ holds reasons %q, want %q", reasons, want)
	}
	if a, err := st.Alarms.Get(id); err != nil || a.Kind != alarm.Tamper || a.Door != "front" || a.Priority != 1 {
		t.Errorf("tamper alarm = %+v, %v", a, err)
	}
}
