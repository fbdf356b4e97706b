package door

import (
	"fmt"
	"sync"
)

// Interlock joins the doors of a mantrap (airlock): a door of the
// interlock unlocks for a grant or a REX only while every other door of it
// is closed and locked. Create one per mantrap, give it to each door's
// Config, and the doors keep it informed. It is safe for concurrent use.
//
// The fire input and ModeUnlocked override the interlock (life safety and
// an explicit command come first); a door without a contact counts as
// closed whenever it is locked.
type Interlock struct {
	name string

	mu      sync.Mutex
	members map[*Door]*interlockState
}

type interlockState struct {
	name     string
	unlocked bool
	open     bool
}

// NewInterlock returns an empty interlock; name appears in logs and
// errors.
func NewInterlock(name string) *Interlock {
	return &Interlock{name: name, members: map[*Door]*interlockState{}}
}

// String returns the interlock's name.
func (il *Interlock) String() string { return il.name }

// join adds d in the given state.
func (il *Interlock) join(d *Door, name string, unlocked, open bool) {
	il.mu.Lock()
	defer il.mu.Unlock()
	il.members[d] = &interlockState{name: name, unlocked: unlocked, open: open}
}

// leave removes d (at Close).
func (il *Interlock) leave(d *Door) {
	il.mu.Lock()
	defer il.mu.Unlock()
	delete(il.members, d)
}

// report records d's relay and contact state.
func (il *Interlock) report(d *Door, unlocked, open bool) {
	il.mu.Lock()
	defer il.mu.Unlock()
	if s := il.members[d]; s != nil {
		s.unlocked, s.open = unlocked, open
	}
}

// acquire marks d unlocked if every other member is closed and locked, in
// one step so two doors can never both win. It returns the name of a door
// in the way, or "" when d may unlock.
func (il *Interlock) acquire(d *Door) string {
	il.mu.Lock()
	defer il.mu.Unlock()
	for m, s := range il.members {
		if m != d && (s.unlocked || s.open) {
			state := "unlocked"
			if s.open {
				state = "open"
			}
			return fmt.Sprintf("%s is %s", s.name, state)
		}
	}
	if s := il.members[d]; s != nil {
		s.unlocked = true
	}
	return ""
}
