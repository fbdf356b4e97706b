package controller

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/clock"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// StatusDoor is what the device status needs of a door (door.Door).
type StatusDoor interface {
	Name() string
	Status() door.Status
}

// SnapshotInfo is what the device status needs of the snapshot store
// (policy.Store).
type SnapshotInfo interface {
	Version() (uint64, error)
	ContentHash() ([32]byte, error)
	TrustTime(now time.Time) (trusted time.Time, ok bool)
}

// DeviceStatus returns the source of the device's retained status message:
// software version, snapshot version and content hash (HQ compares it to
// detect drift), each door's state, mode and the mode's source (modes, if
// not nil, holds the modes HQ set), and whether the clock is trusted.
// sync.Edge adds the outbox depth and acknowledgement point.
func DeviceStatus(version string, store SnapshotInfo, doors []StatusDoor, modes ModeStore, clk clock.Clock) tsync.StatusFunc {
	if clk == nil {
		clk = clock.System{}
	}
	return func(context.Context) (proto.Status, error) {
		now := clk.Now()
		st := proto.Status{Time: now, Version: version}
		v, err := store.Version()
		if err != nil {
			return st, fmt.Errorf("status: snapshot version: %w", err)
		}
		st.Snapshot.Version = v
		if v > 0 {
			h, err := store.ContentHash()
			if err != nil {
				return st, fmt.Errorf("status: snapshot hash: %w", err)
			}
			st.Snapshot.Hash = hex.EncodeToString(h[:])
		}
		_, st.ClockTrusted = store.TrustTime(now)
		var saved map[string]tsync.SavedMode
		if modes != nil {
			if saved, err = modes.SavedModes(); err != nil {
				return st, fmt.Errorf("status: %w", err)
			}
		}
		for _, d := range doors {
			s := d.Status()
			st.Doors = append(st.Doors, proto.DoorStatus{Name: d.Name(), State: DoorState(s), Mode: string(s.Mode),
				ModeSource: modeSource(s, saved[d.Name()])})
		}
		return st, nil
	}
}

// modeSource says where the mode in force of a door with status s came
// from, saved being the mode HQ set for it (zero: none).
func modeSource(s door.Status, saved tsync.SavedMode) string {
	switch {
	case s.LockdownInput:
		return proto.ModeSourceInput
	case saved.Mode != "":
		return proto.ModeSourceHQ
	default:
		return proto.ModeSourceDefault
	}
}

// DoorState sums a door's status in one word, the most urgent first:
// forced_open, held_open, tamper, fire, open, unlocked or locked.
func DoorState(s door.Status) string {
	switch {
	case s.ForcedOpen:
		return "forced_open"
	case s.HeldOpen, s.HeldPreAlarm:
		return "held_open"
	case s.Tamper:
		return "tamper"
	case s.Fire:
		return "fire"
	case s.Open:
		return "open"
	case s.Unlocked:
		return "unlocked"
	default:
		return "locked"
	}
}
