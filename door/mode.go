package door

import "fmt"

// Mode is how a door treats grants and its schedule. The controller sets it
// with SetMode (from HQ commands or policy's schedules); a local lockdown
// input overrides it with ModeLockedDown while active.
type Mode string

// Modes of a door.
const (
	// ModeNormal: locked; unlocks for a grant or a REX.
	ModeNormal Mode = "normal"
	// ModeUnlocked: held unlocked (office hours, by command); no held-open
	// alarms.
	ModeUnlocked Mode = "unlocked"
	// ModeLockedDown: locked; Grant is refused (ErrLockedDown), only
	// AdminGrant unlocks. REX still unlocks, for egress.
	ModeLockedDown Mode = "locked_down"
	// ModeFirstPersonIn: behaves as ModeNormal until an authorised person
	// has entered (a grant followed by the door opening, or the grant alone
	// on a door without a contact); then the door switches to ModeUnlocked
	// with cause CauseFirstPersonIn. The controller sets it when a scheduled
	// unlock begins and sets ModeNormal when it ends.
	ModeFirstPersonIn Mode = "first_person_in"
)

// Modes lists every Mode, for configuration checks and documentation.
var Modes = []Mode{ModeNormal, ModeUnlocked, ModeLockedDown, ModeFirstPersonIn}

// ParseMode returns the Mode named s, or an error wrapping ErrUnknownMode.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of %v)", ErrUnknownMode, s, Modes)
}
