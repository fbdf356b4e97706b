package hq

import (
	"errors"

	"github.com/tobira-ac/tobira/internal/boltfile"
)

// Errors returned by this package. They are wrapped with the input that
// caused them; test for them with errors.Is. Messages that break the wire
// contract are reported with proto.ErrMalformed.
var (
	// ErrConfig means a Config is unusable.
	ErrConfig = errors.New("invalid configuration")

	// ErrRunning means Run was called while an earlier Run of the same
	// Service had not returned.
	ErrRunning = errors.New("already running")

	// ErrBadFile means the store file opened but does not hold what it
	// should (an edge's outbox, another program's data, or a layout of a
	// newer version).
	ErrBadFile = boltfile.ErrBadFile

	// ErrLimited means a device's message was refused by a per-device
	// limit (Config.Limits): not stored, not acknowledged.
	ErrLimited = errors.New("refused by a per-device limit")
)
