// Package firmware updates the tobira edge binary: signed release manifests,
// resumable rate-limited downloads, installation into release slots, an
// atomic switch of the running version, a health gate that commits a new
// version only once it reports healthy, and automatic rollback when it
// does not (exit at start, crash loop, health deadline).
//
// Layout under the update root (e.g. /var/lib/tobira/firmware):
//
//	releases/<version>/tobira   one installed binary per release slot
//	current -> releases/<v>     what systemd starts (root/current/tobira)
//	previous -> releases/<v>    the last committed version, kept for rollback
//	downloads/<sha256>.part     partial downloads, resumed after a restart
//	state.json                  committed, pending trial, boot attempts, floor
//	.lock                       serialises installers and the boot guard
//
// A device pins one or more Ed25519 release public keys (Verifier). An
// Updater checks a signed envelope against the pins and the device's state
// (architecture, expiry, anti-rollback floor, minimum from-version,
// targets), stages the binary (Stage) and switches to it (Activate) only
// when the controller is idle and inside the maintenance window. The new
// binary calls Boot first thing in main and Trial.ReportHealthy once it is
// healthy; Guard, run by systemd before every start, counts start attempts
// and rolls back a release that never commits. See docs/FIRMWARE.md.
//
// The package must not import door or reader: the controller reaches it
// through the small interfaces it defines (BusyChecker, ChunkFetcher).
package firmware
