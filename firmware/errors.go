package firmware

import "errors"

// Errors returned by this package. They are wrapped with the input that
// caused them; test for them with errors.Is.
var (
	// ErrMalformed means a manifest, an envelope, a key or a state file could
	// not be decoded or breaks the format rules (bad JSON, unknown field,
	// bad version string, size out of range). Nothing is installed.
	ErrMalformed = errors.New("malformed release data")

	// ErrBadSignature means no signature of an envelope verifies under any
	// pinned release key (forged, altered, or signed by an unpinned key).
	ErrBadSignature = errors.New("no valid signature by a pinned release key")

	// ErrWrongArch means a release was built for another OS/architecture
	// than the device's.
	ErrWrongArch = errors.New("release built for another architecture")

	// ErrExpired means the manifest's expiry lies in the past: an old
	// signed manifest cannot be replayed forever.
	ErrExpired = errors.New("release manifest expired")

	// ErrBelowFloor means the release's version is below the device's
	// anti-rollback floor.
	ErrBelowFloor = errors.New("release below the anti-rollback floor")

	// ErrBelowMinFrom means the running version is older than the oldest
	// version the release may be installed from (an intermediate release
	// must be installed first).
	ErrBelowMinFrom = errors.New("running version below the release's minimum from-version")

	// ErrNotTargeted means the manifest names target devices or groups and
	// this device is not among them.
	ErrNotTargeted = errors.New("release not targeted at this device")

	// ErrKnownBad means the release was rolled back on this device before;
	// it is refused until a newer version is published.
	ErrKnownBad = errors.New("release rolled back on this device before")

	// ErrAlreadyInstalled means the release is the version running now or
	// the one on trial.
	ErrAlreadyInstalled = errors.New("release already installed")

	// ErrHashMismatch means downloaded bytes do not have the size or
	// SHA-256 digest the signed manifest names. The partial download is
	// deleted.
	ErrHashMismatch = errors.New("downloaded release does not match the manifest")

	// ErrBusy means the controller reported a door open or a card
	// transaction in progress; nothing was switched.
	ErrBusy = errors.New("controller busy")

	// ErrOutsideWindow means the current time lies outside the configured
	// maintenance window; nothing was switched.
	ErrOutsideWindow = errors.New("outside the maintenance window")

	// ErrTrialPending means a release is already on trial; a new one can be
	// activated only after it commits or rolls back.
	ErrTrialPending = errors.New("another release is on trial")

	// ErrRolledBack means Boot rolled the running release back (crash loop
	// or health deadline). The process is the bad release and must exit
	// with a non-zero status at once so that systemd starts the previous
	// one.
	ErrRolledBack = errors.New("release rolled back")

	// ErrHealthDeadline means Trial.Supervise saw the health deadline pass
	// before ReportHealthy and rolled the release back; the process must
	// exit with a non-zero status.
	ErrHealthDeadline = errors.New("release did not report healthy before its deadline")

	// ErrNotStaged means Activate was asked to switch to a release whose
	// slot does not hold a binary of the manifest's size (Stage first).
	ErrNotStaged = errors.New("release not staged")

	// ErrNotInstalled means the update root has no current release.
	ErrNotInstalled = errors.New("no release installed")
)
