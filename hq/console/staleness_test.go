package console

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/sync/proto"
)

// TestAlarmKindsRaisedAndCleared checks every alarm the console raises
// (issue 14's list): what raises it, and what clears it when the
// condition ends. Ticket conflicts and refused messages are incidents,
// not conditions: an operator acknowledges them; nothing clears them.
func TestAlarmKindsRaisedAndCleared(t *testing.T) {
	door := func(reason string) proto.Event {
		return proto.Event{Type: proto.TypeDoor, Door: "main", Reason: reason}
	}
	pin := proto.Event{Type: proto.TypeDecision, Door: "main", Reason: "pin_wrong"}
	granted := proto.Event{Type: proto.TypeDecision, Door: "main", Granted: true, Reason: "ok"}
	conflict := proto.Event{Type: proto.TypeTicket, Door: "main", Reason: "ticket_conflict"}
	tests := []struct {
		name         string
		kind         alarm.Kind
		door         string
		raise, clear []proto.Event
		// fleet, when set, is applied to tokyo/gate-1 before a sweep:
		// raise, then clear.
		fleet [2]func(*hq.DeviceInfo)
	}{
		{name: "forced open", kind: alarm.ForcedOpen, door: "main", raise: []proto.Event{door("forced_open")}, clear: []proto.Event{door("forced_cleared")}},
		{name: "held open", kind: alarm.HeldOpen, door: "main", raise: []proto.Event{door("held_open")}, clear: []proto.Event{door("closed")}},
		{name: "tamper", kind: alarm.Tamper, door: "main", raise: []proto.Event{door("tamper")}, clear: []proto.Event{door("tamper_cleared")}},
		{name: "repeated wrong PIN", kind: alarm.WrongPIN, door: "main", raise: []proto.Event{pin, pin, pin}, clear: []proto.Event{granted}},
		{name: "ticket conflict", kind: alarm.TicketConflict, door: "main", raise: []proto.Event{conflict}},
		{name: "device offline", kind: alarm.Offline, fleet: [2]func(*hq.DeviceInfo){
			func(d *hq.DeviceInfo) { d.Online = false },
			func(d *hq.DeviceInfo) { d.Online = true },
		}},
		{name: "stale revocation data", kind: alarm.StaleRevocation, fleet: [2]func(*hq.DeviceInfo){
			func(d *hq.DeviceInfo) {
				d.Drift, d.ExpectedVersion, d.Published = true, 9, time.Now().Add(-DefaultMaxRevocationAge-time.Hour)
			},
			func(d *hq.DeviceInfo) { d.Drift, d.Status.Snapshot.Version = false, 9 },
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			id := alarm.ID("tokyo", "gate-1", tt.door, tt.kind)
			step := func(evs []proto.Event, fleet func(*hq.DeviceInfo)) alarm.State {
				for _, ev := range evs {
					ev.Time = time.Now()
					e.con.Publish("tokyo", "gate-1", ev)
				}
				if fleet != nil {
					fleet(&e.hq.devs[1])
					e.con.sweep()
				}
				a, err := e.con.cfg.Alarms.Get(id)
				if err != nil {
					return ""
				}
				return a.State
			}
			if got := step(nil, nil); got != "" {
				t.Fatalf("before: %q", got)
			}
			if got := step(tt.raise, tt.fleet[0]); got != alarm.Active {
				t.Fatalf("raised: state %q, want active", got)
			}
			if tt.clear == nil && tt.fleet[1] == nil {
				return
			}
			if got := step(tt.clear, tt.fleet[1]); got != alarm.Cleared {
				t.Errorf("cleared: state %q, want cleared", got)
			}
			if !strings.Contains(strings.Join(e.actions(), " "), "hq:alarm") {
				t.Error("the raised alarm is not in the audit log")
			}
		})
	}
}

func TestStaleRevocation(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		d    hq.DeviceInfo
		want bool
	}{
		{"runs what HQ published long ago", hq.DeviceInfo{ExpectedVersion: 3, Published: now.Add(-30 * 24 * time.Hour)}, false},
		{"behind, published recently", hq.DeviceInfo{Drift: true, ExpectedVersion: 3, Published: now.Add(-time.Hour)}, false},
		{"behind, published a day and a minute ago", hq.DeviceInfo{Drift: true, ExpectedVersion: 3, Published: now.Add(-24*time.Hour - time.Minute)}, true},
		{"behind, published exactly a day ago", hq.DeviceInfo{Drift: true, ExpectedVersion: 3, Published: now.Add(-24 * time.Hour)}, false},
		{"nothing published", hq.DeviceInfo{Drift: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := staleRevocation(tt.d, now, 24*time.Hour)
			if got != tt.want || got == (why == "") {
				t.Errorf("stale %v (%q), want %v", got, why, tt.want)
			}
		})
	}
}

// TestSweepOnlyOnLeader checks that a replica that is not the leader
// raises no time-based alarm, and the leader does.
func TestSweepOnlyOnLeader(t *testing.T) {
	for _, leader := range []bool{false, true} {
		e := newEnv(t)
		e.hq.devs[1].Online = false
		e.con.cfg.IsLeader = func(context.Context) bool { return leader }
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // Sweep checks once, then sees ctx end
		if err := e.con.Sweep(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		_, err := e.con.cfg.Alarms.Get(alarm.ID("tokyo", "gate-1", "", alarm.Offline))
		if raised := err == nil; raised != leader {
			t.Errorf("leader %v: offline alarm raised %v", leader, raised)
		}
	}
}
