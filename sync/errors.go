package sync

import (
	"errors"

	"github.com/tobira-ac/tobira/internal/boltfile"
)

// Errors returned by this package. They are wrapped with the input that
// caused them; test for them with errors.Is. Messages that break the wire
// contract are reported with the errors of sync/proto.
var (
	// ErrAckAhead means an acknowledgement names a sequence number the
	// outbox never assigned. It points at two devices sharing one name or at
	// an outbox file that was replaced; nothing is deleted.
	ErrAckAhead = errors.New("acknowledgement ahead of the outbox")

	// ErrBadFile means the outbox file opened but does not hold what it
	// should (HQ's store, another program's data, or a layout of a newer
	// version).
	ErrBadFile = boltfile.ErrBadFile

	// ErrConfig means an EdgeConfig or a ReleaseConfig is unusable.
	ErrConfig = errors.New("invalid configuration")

	// ErrRunning means Run was called while an earlier Run of the same Edge
	// or ReleaseAgent had not returned.
	ErrRunning = errors.New("already running")
)
