package controller

import (
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/policy"
)

// freshStore is a FreshnessSource with a fixed answer.
type freshStore struct{}

func (freshStore) Freshness() (policy.Freshness, error) { return policy.Freshness{Version: 1}, nil }
func (freshStore) TrustTime(now time.Time) (time.Time, bool) {
	return now, true
}

// gauges returns the series of metric name that are 1, keyed by the
// value of their label label.
func gauges(t *testing.T, reg *prometheus.Registry, name, label string) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	on := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && m.GetGauge().GetValue() == 1 {
					on[l.GetValue()] = true
				}
			}
		}
	}
	return on
}

// TestDoorAlarmMetrics checks the door state and alarm series of a door
// whose tamper input is active, alone and under a forced-open alarm.
func TestDoorAlarmMetrics(t *testing.T) {
	tests := []struct {
		name   string
		status door.Status
		state  string
		alarms map[string]bool // the tobira_door_alarm kinds at 1
	}{
		{"tamper on a locked door", door.Status{Mode: door.ModeNormal, Tamper: true}, "tamper", map[string]bool{"tamper": true}},
		{"tamper under a forced-open alarm", door.Status{Mode: door.ModeNormal, Open: true, ForcedOpen: true, Tamper: true}, "forced_open",
			map[string]bool{"forced_open": true, "tamper": true}},
		{"no alarm", door.Status{Mode: door.ModeNormal}, "locked", map[string]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			if err := RegisterStateMetrics(reg, freshStore{}, []StatusDoor{statusDoor{"front", tt.status}}, clocktest.New(time.Now())); err != nil {
				t.Fatal(err)
			}
			if got := gauges(t, reg, "tobira_door_state", "state"); !maps.Equal(got, map[string]bool{tt.state: true}) {
				t.Errorf("tobira_door_state at 1: %v, want %s", got, tt.state)
			}
			if got := gauges(t, reg, "tobira_door_alarm", "kind"); !maps.Equal(got, tt.alarms) {
				t.Errorf("tobira_door_alarm at 1: %v, want %v", got, tt.alarms)
			}
		})
	}
}
