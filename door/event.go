package door

import "time"

// Kind says what a Change reports.
type Kind string

// Kinds of Change. Alarms are KindForcedOpen, KindHeldPreAlarm,
// KindHeldOpen and KindTamper; each has a matching "cleared" kind.
const (
	// KindUnlocked: the lock relay was driven unlocked.
	KindUnlocked Kind = "unlocked"
	// KindLocked: the lock relay was driven locked (at start, at the end of
	// an unlock, at close, after a fault).
	KindLocked Kind = "locked"
	// KindOpened: the door contact reports the door open.
	KindOpened Kind = "opened"
	// KindClosed: the door contact reports the door closed.
	KindClosed Kind = "closed"
	// KindNotUsed: a grant's unlock ended without the door being opened.
	KindNotUsed Kind = "not_used"
	// KindREX: the request-to-exit input was pressed.
	KindREX Kind = "rex"
	// KindForcedOpen (alarm): the door opened while locked, with no grant
	// and no REX.
	KindForcedOpen Kind = "forced_open"
	// KindForcedCleared: a forced-open door closed again.
	KindForcedCleared Kind = "forced_cleared"
	// KindHeldPreAlarm: the door has stood open for Config.HeldPreAlarm;
	// the buzzer warns.
	KindHeldPreAlarm Kind = "held_open_prealarm"
	// KindHeldOpen (alarm): the door has stood open for Config.HeldAlarm.
	KindHeldOpen Kind = "held_open"
	// KindHeldCleared: a door that raised a held-open pre-alarm or alarm
	// closed (or was put in a mode where it may stand open).
	KindHeldCleared Kind = "held_cleared"
	// KindModeChanged: the door's mode changed; Change.Mode is the mode in
	// force now.
	KindModeChanged Kind = "mode_changed"
	// KindFireRelease: the fire input became active: the door unlocks over
	// every mode.
	KindFireRelease Kind = "fire_release"
	// KindFireCleared: the fire input is no longer active.
	KindFireCleared Kind = "fire_cleared"
	// KindTamper (alarm): the tamper input became active (the reader's or
	// controller's enclosure was opened, or the reader pulled off the
	// wall), or was active at start. The lock does not move.
	KindTamper Kind = "tamper"
	// KindTamperCleared: the tamper input is no longer active.
	KindTamperCleared Kind = "tamper_cleared"
	// KindInterlocked: a grant or REX was refused because another door of
	// the interlock is open or unlocked; Cause names what was refused.
	KindInterlocked Kind = "interlocked"
)

// Causes of a Change: why it happened. SetMode passes its caller's cause
// through as given.
const (
	// CauseStart: the state found or driven as the door started.
	CauseStart = "start"
	// CauseGrant: a Grant.
	CauseGrant = "grant"
	// CauseAdminGrant: an AdminGrant (allowed in lockdown).
	CauseAdminGrant = "admin_grant"
	// CauseRelock: an unlock's time ran out (or a refused relock was
	// retried).
	CauseRelock = "relock"
	// CauseDoorClosed: the door was opened and closed again, which ends the
	// unlock at once.
	CauseDoorClosed = "door_closed"
	// CauseFault: a pin write during Grant failed and the door was driven
	// locked again.
	CauseFault = "fault"
	// CauseClose: Close drove the relay locked.
	CauseClose = "close"
	// CauseREX: the request-to-exit input.
	CauseREX = "rex"
	// CauseForced: the door opened with no grant and no REX.
	CauseForced = "forced"
	// CauseContact: the door contact changed.
	CauseContact = "contact"
	// CauseHeldTimer: the door stood open too long.
	CauseHeldTimer = "held_timer"
	// CauseMode: the relay moved because the mode changed.
	CauseMode = "mode"
	// CauseFire: the fire input.
	CauseFire = "fire_input"
	// CauseLockdownInput: the local lockdown input.
	CauseLockdownInput = "lockdown_input"
	// CauseTamper: the tamper input.
	CauseTamper = "tamper_input"
	// CauseFirstPersonIn: the first authorised person entered during a
	// first-person-in period, so the scheduled unlock begins.
	CauseFirstPersonIn = "first_person_in"
)

// Change is one state change or alarm of a door, reported to observers in
// the order it happened.
type Change struct {
	// Door is Config.Name.
	Door string
	// Time is the injected clock's time of the change (for timed changes,
	// the deadline that ran out).
	Time time.Time
	// Kind says what happened.
	Kind Kind
	// Unlocked is the lock relay's state after the change.
	Unlocked bool
	// Cause says why (one of the Cause constants, or SetMode's cause).
	Cause string
	// Mode is set for KindModeChanged only: the mode now in force.
	Mode Mode
}
