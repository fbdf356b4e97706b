package firmware

import (
	"errors"
	"fmt"
)

// Refusal reasons: short, stable codes for why a release was not installed,
// as a device reports them to HQ (RefusalReason).
const (
	// RefusedMalformed: the release data could not be decoded (ErrMalformed).
	RefusedMalformed = "malformed"
	// RefusedBadSignature: no pinned release key signed it (ErrBadSignature).
	RefusedBadSignature = "bad_signature"
	// RefusedWrongArch: built for another architecture (ErrWrongArch).
	RefusedWrongArch = "wrong_arch"
	// RefusedExpired: the manifest expired (ErrExpired).
	RefusedExpired = "expired"
	// RefusedBelowFloor: below the anti-rollback floor (ErrBelowFloor).
	RefusedBelowFloor = "below_floor"
	// RefusedBelowMinFrom: the running version is too old for it (ErrBelowMinFrom).
	RefusedBelowMinFrom = "below_min_from"
	// RefusedNotTargeted: not targeted at this device (ErrNotTargeted).
	RefusedNotTargeted = "not_targeted"
	// RefusedKnownBad: rolled back on this device before (ErrKnownBad).
	RefusedKnownBad = "known_bad"
	// RefusedAlreadyInstalled: running or on trial already (ErrAlreadyInstalled).
	RefusedAlreadyInstalled = "already_installed"
	// RefusedHashMismatch: the downloaded bytes do not match (ErrHashMismatch).
	RefusedHashMismatch = "hash_mismatch"
	// RefusedBusy: the controller was busy (ErrBusy).
	RefusedBusy = "busy"
	// RefusedOutsideWindow: outside the maintenance window (ErrOutsideWindow).
	RefusedOutsideWindow = "outside_window"
	// RefusedTrialPending: another release is on trial (ErrTrialPending).
	RefusedTrialPending = "trial_pending"
	// RefusedNotStaged: the release was not staged (ErrNotStaged).
	RefusedNotStaged = "not_staged"
	// RefusedOther is the reason of an error that is none of this
	// package's sentinels (I/O, a cancelled context).
	RefusedOther = "error"
)

// reasonOf maps each sentinel error to its reason code.
var reasonOf = []struct {
	err    error
	reason string
}{
	{ErrBadSignature, RefusedBadSignature},
	{ErrWrongArch, RefusedWrongArch},
	{ErrExpired, RefusedExpired},
	{ErrBelowFloor, RefusedBelowFloor},
	{ErrBelowMinFrom, RefusedBelowMinFrom},
	{ErrNotTargeted, RefusedNotTargeted},
	{ErrKnownBad, RefusedKnownBad},
	{ErrAlreadyInstalled, RefusedAlreadyInstalled},
	{ErrHashMismatch, RefusedHashMismatch},
	{ErrBusy, RefusedBusy},
	{ErrOutsideWindow, RefusedOutsideWindow},
	{ErrTrialPending, RefusedTrialPending},
	{ErrNotStaged, RefusedNotStaged},
	{ErrMalformed, RefusedMalformed},
}

// RefusalReason returns the reason code (Refused* constants) of an error
// returned by Updater.Check, Stage, Activate or Install: the first of this
// package's sentinel errors that err wraps, RefusedOther for any other
// error, and "" for nil.
func RefusalReason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasonOf {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return RefusedOther
}

// Status returns the status of the Updater's root (see ReadStatus).
func (u *Updater) Status() (Status, error) { return ReadStatus(u.Root) }

// PeekManifest decodes the manifest inside a signed envelope WITHOUT
// verifying any signature. HQ uses it to index the releases it serves;
// a device must use Verifier.Verify. Errors wrap ErrMalformed.
func PeekManifest(envelope []byte) (Manifest, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := strictUnmarshal(env.Manifest, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %w", ErrMalformed, err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}
