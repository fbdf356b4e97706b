// Package policy decides whether a presented credential may pass, from the
// locally cached snapshot alone: no network is touched on the tap path.
//
// A snapshot is a set of records of the rules model (docs/POLICY.md):
// credentials (Entry), people, revocations, renewal links, doors, areas,
// access levels, schedules, holidays, ticketed events and site settings. A
// Store keeps it in a bbolt file (policy.db). ApplyFullStream builds a new
// version aside and renames it into place, so a reader always sees one whole
// version and a crash at any moment leaves the old or the new snapshot;
// ApplyDeltaStream changes records in one transaction. Both read the
// snapshot stream format that SnapshotEncoder and DeltaEncoder write, and
// the store reports its version and a content hash that HQ compares.
//
// DecideAt decides one tap at a door at a given time (the controller's
// injected clock; this package never reads the time itself), with door
// modes, schedules, anti-passback, tickets, renewal links, CRLs, staleness
// fallbacks and break-glass credentials. State the device learns itself
// (trusted time, anti-passback, ticket marks, CRLs) lives in a second bbolt
// file next to policy.db.
//
// Every Decision carries exactly one Reason; the list is in reason.go and
// documented for administrators in docs/REASONS.md.
//
// This package must not import card, door, MQTT or GPIO code (reader, door,
// sync, periph, scard, paho); a test enforces it.
package policy
