package controller

import (
	"context"
	"log/slog"
	"strings"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/sync/proto"
)

// DoorObserver is what RecordDoorChanges needs of a door.
type DoorObserver interface {
	Observe(fn func(door.Change))
}

// RecordDoorChanges stores every change of a door (unlocks, openings,
// alarms such as forced_open, held_open and tamper with their "cleared"
// kinds, mode changes) as a "door" event: Reason is the change's kind,
// Detail its cause (and mode). The first, "start", change is recorded too,
// so HQ sees every restart of a door and the state it was driven to.
func RecordDoorChanges(d DoorObserver, events EventLog, notify func(), log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	d.Observe(func(c door.Change) {
		detail := []string{"cause=" + c.Cause}
		if c.Mode != "" {
			detail = append(detail, "mode="+string(c.Mode))
		}
		if c.Unlocked {
			detail = append(detail, "relay=unlocked")
		} else {
			detail = append(detail, "relay=locked")
		}
		kind := string(c.Kind)
		if kind == "" {
			kind = "locked"
		}
		ev := proto.Event{Time: c.Time, Type: "door", Door: c.Door, Reason: kind, Detail: strings.Join(detail, " ")}
		if _, err := events.Append(ev); err != nil {
			log.Error("door event not stored", "door", c.Door, "kind", kind, "err", err)
			return
		}
		level := slog.LevelDebug
		switch c.Kind {
		case door.KindForcedOpen, door.KindHeldOpen, door.KindHeldPreAlarm, door.KindFireRelease, door.KindTamper:
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "door change", "door", c.Door, "kind", kind, "cause", c.Cause)
		if notify != nil {
			notify()
		}
	})
}
