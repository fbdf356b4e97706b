package controller

import (
	"fmt"
	"sync/atomic"
)

// Activity tracks what must not be interrupted by a firmware install: card
// transactions in progress and doors that are open or unlocked. It
// implements firmware.BusyChecker.
type Activity struct {
	cards atomic.Int32
	// Doors are the controller's doors.
	Doors []StatusDoor
}

// enter and leave bracket one card session.
func (a *Activity) enter() {
	if a != nil {
		a.cards.Add(1)
	}
}

func (a *Activity) leave() {
	if a != nil {
		a.cards.Add(-1)
	}
}

// Busy reports whether a card is being read or a door is open or unlocked,
// and why.
func (a *Activity) Busy() (bool, string) {
	if n := a.cards.Load(); n > 0 {
		return true, fmt.Sprintf("%d card transaction(s) in progress", n)
	}
	for _, d := range a.Doors {
		st := d.Status()
		if st.Open || st.Unlocked {
			return true, fmt.Sprintf("door %q is %s", d.Name(), DoorState(st))
		}
	}
	return false, ""
}
