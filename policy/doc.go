// Package policy decides whether a presented credential may pass, from the
// locally cached snapshot alone: no network is touched on the tap path.
//
// A Snapshot (allowlist plus revocation set at one version) is kept in a
// bbolt file by a Store. ApplyFull swaps in a whole new snapshot in one
// transaction, so a reader (Decide) always sees one whole version and a power
// cut leaves the old or the new snapshot, never a mix. Keys are binary:
// credential.Credential.Key for the allowlist, issuer key ID || serial for
// revocations, so the same serial issued under another CA key generation is
// a different certificate.
//
// Every Decision carries exactly one Reason; the list is in reason.go and
// documented for administrators in docs/REASONS.md.
//
// This package must not import card, door, MQTT or GPIO code (reader, door,
// sync, periph, scard, paho); a test enforces it.
package policy
