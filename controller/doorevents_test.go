package controller

import (
	"testing"
	"time"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/sync/proto"
)

// changeFeed is a DoorObserver whose changes the test hands in.
type changeFeed struct{ fn func(door.Change) }

func (f *changeFeed) Observe(fn func(door.Change)) { f.fn = fn }

// TestRecordDoorChanges checks that door alarms (forced open, held open,
// tamper) and their clearing go out as "door" events whose reason is the
// change's kind, the reasons HQ's alarm list raises and clears on.
func TestRecordDoorChanges(t *testing.T) {
	at := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		change door.Change
		want   proto.Event
	}{
		{door.Change{Door: "front", Time: at, Kind: door.KindTamper, Cause: door.CauseTamper},
			proto.Event{Time: at, Type: "door", Door: "front", Reason: "tamper", Detail: "cause=tamper_input relay=locked"}},
		{door.Change{Door: "front", Time: at, Kind: door.KindTamperCleared, Cause: door.CauseTamper},
			proto.Event{Time: at, Type: "door", Door: "front", Reason: "tamper_cleared", Detail: "cause=tamper_input relay=locked"}},
		{door.Change{Door: "gate", Time: at, Kind: door.KindTamper, Cause: door.CauseStart, Unlocked: true},
			proto.Event{Time: at, Type: "door", Door: "gate", Reason: "tamper", Detail: "cause=start relay=unlocked"}},
		{door.Change{Door: "front", Time: at, Kind: door.KindForcedOpen, Cause: door.CauseForced},
			proto.Event{Time: at, Type: "door", Door: "front", Reason: "forced_open", Detail: "cause=forced relay=locked"}},
		{door.Change{Door: "front", Time: at, Kind: door.KindHeldOpen, Cause: door.CauseHeldTimer},
			proto.Event{Time: at, Type: "door", Door: "front", Reason: "held_open", Detail: "cause=held_timer relay=locked"}},
		{door.Change{Door: "front", Time: at, Kind: door.KindModeChanged, Cause: "hq_command", Mode: door.ModeLockedDown},
			proto.Event{Time: at, Type: "door", Door: "front", Reason: "mode_changed", Detail: "cause=hq_command mode=locked_down relay=locked"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.change.Kind)+"/"+tt.change.Cause, func(t *testing.T) {
			feed, events, notified := &changeFeed{}, &fakeLog{j: &journal{}}, 0
			RecordDoorChanges(feed, events, func() { notified++ }, nil)
			feed.fn(tt.change)
			tt.want.Seq = 1
			if len(events.events) != 1 || events.events[0] != tt.want {
				t.Fatalf("recorded %+v, want [%+v]", events.events, tt.want)
			}
			if notified != 1 {
				t.Errorf("notify called %d times, want 1", notified)
			}
		})
	}
}
