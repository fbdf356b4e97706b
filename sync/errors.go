package sync

import "errors"

// Errors returned by this package. They are wrapped with the input that
// caused them; test for them with errors.Is.
var (

	// ErrAckAhead means an acknowledgement names a sequence number the
	// outbox never assigned. It points at two devices sharing one name or at
	// an outbox file that was replaced; nothing is deleted.
	ErrAckAhead = errors.New("acknowledgement ahead of the outbox")

	// ErrBadFile means a bbolt file opened but does not hold what it should
	// (another program's data, or a layout of a newer version).
	ErrBadFile = errors.New("unexpected database layout")

	// ErrConfig means an EdgeConfig or HQConfig is unusable.
	ErrConfig = errors.New("invalid configuration")

	// ErrRunning means Run was called while an earlier Run of the same Edge
	// or HQ had not returned.
	ErrRunning = errors.New("already running")
)
