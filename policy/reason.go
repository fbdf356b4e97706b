package policy

// Reason says why a Decision came out as it did. Every decision carries
// exactly one Reason from the list below; the list is documented in
// docs/REASONS.md and only grows (a reason is never renamed, because HQ
// stores and queries them).
type Reason string

// The reasons. Granted reasons first, then denials from the snapshot, then
// denials from the card check (set by the controller from the reader's
// typed errors).
const (
	// ReasonEnrolled grants: the credential is on the allowlist and not revoked.
	ReasonEnrolled Reason = "enrolled"
	// ReasonRenewed grants: the presented certificate is not enrolled, but
	// HQ's renewal links lead from it to an enrolled certificate.
	ReasonRenewed Reason = "enrolled_renewed"
	// ReasonTicket grants: a ticket for a running event, at one of its gates,
	// not used yet (or re-entering after an exit where the event allows it).
	ReasonTicket Reason = "ticket"
	// ReasonBreakGlass grants: a break-glass credential from the local
	// configuration; it works in every door mode and without a snapshot.
	ReasonBreakGlass Reason = "break_glass"
	// ReasonDoorUnlocked grants: the door is in unlocked mode.
	ReasonDoorUnlocked Reason = "door_unlocked"
	// ReasonPassbackSoft grants with a flag: a soft anti-passback rule was
	// broken (entry into an area the person is in, or exit from one they
	// are not in).
	ReasonPassbackSoft Reason = "passback_soft"
	// ReasonGrantedStaleRevocations grants with a flag: the revocation data
	// is stale and the door is configured to grant and flag.
	ReasonGrantedStaleRevocations Reason = "granted_stale_revocations"
	// ReasonGrantedClockUntrusted grants with a flag: the clock is behind the
	// last trusted time and the door is configured to grant and flag.
	ReasonGrantedClockUntrusted Reason = "granted_clock_untrusted"

	// ReasonNotEnrolled denies: the credential is not on the allowlist.
	ReasonNotEnrolled Reason = "not_enrolled"
	// ReasonRevoked denies: the certificate serial is in the revocation set.
	ReasonRevoked Reason = "revoked"
	// ReasonStoreUnavailable denies: the snapshot store could not be read.
	ReasonStoreUnavailable Reason = "store_unavailable"
	// ReasonRenewalChainTooLong denies: following renewal links from the
	// presented certificate did not reach an enrolled one within the bound.
	ReasonRenewalChainTooLong Reason = "renewal_chain_too_long"
	// ReasonCredentialInactive denies: the credential's validity window in
	// the snapshot does not include now.
	ReasonCredentialInactive Reason = "credential_inactive"
	// ReasonPersonInactive denies: the person's validity window does not
	// include now.
	ReasonPersonInactive Reason = "person_inactive"
	// ReasonUnknownDoor denies: the snapshot does not know the door.
	ReasonUnknownDoor Reason = "unknown_door"
	// ReasonDoorLocked denies: the door is in locked mode.
	ReasonDoorLocked Reason = "door_locked"
	// ReasonNoAccess denies: no access level of the person's groups covers
	// the door.
	ReasonNoAccess Reason = "no_access"
	// ReasonOutsideSchedule denies: an access level covers the door, but
	// none of their schedules is active now.
	ReasonOutsideSchedule Reason = "outside_schedule"
	// ReasonPINRequired denies: the door is in card + PIN mode and no PIN
	// was verified; the controller asks for the PIN and decides again.
	ReasonPINRequired Reason = "pin_required"
	// ReasonPassback denies: a hard anti-passback rule (entry into an area
	// the person is already in, exit from one they are not in) or a timed
	// one (re-entry too soon).
	ReasonPassback Reason = "passback"
	// ReasonTicketUsed denies: the ticket was used for entry already (here
	// or at another gate of the venue).
	ReasonTicketUsed Reason = "ticket_used"
	// ReasonTicketOutsideWindow denies: the ticket's event is not running.
	ReasonTicketOutsideWindow Reason = "ticket_outside_window"
	// ReasonTicketWrongDoor denies: the gate is not one of the event's, or
	// the ticket's event is unknown.
	ReasonTicketWrongDoor Reason = "ticket_wrong_door"
	// ReasonRevocationsStale denies a certificate: the revocation data is
	// stale and the door is configured to deny.
	ReasonRevocationsStale Reason = "revocations_stale"
	// ReasonClockUntrusted denies a certificate: the clock is behind the
	// last trusted time and the door is configured to deny.
	ReasonClockUntrusted Reason = "clock_untrusted"

	// ReasonExpired denies: the certificate's validity ended before now.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid denies: the certificate's validity starts after now.
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonUntrustedIssuer denies: the certificate does not chain to a
	// configured trust anchor.
	ReasonUntrustedIssuer Reason = "untrusted_issuer"
	// ReasonBadCertificate denies: the certificate could not be parsed or
	// does not have the JPKI user-authentication profile.
	ReasonBadCertificate Reason = "bad_certificate"
	// ReasonNotMyNumberCard denies: the card has no JPKI-AP or an unknown token.
	ReasonNotMyNumberCard Reason = "not_my_number_card"
	// ReasonCardRemoved denies: the card left the reader during the read.
	ReasonCardRemoved Reason = "card_removed"
	// ReasonCardError denies: the card answered garbage, truncated data or an
	// unexpected status word.
	ReasonCardError Reason = "card_error"

	// ReasonPINWrong denies: the PIN typed was wrong; the card counted a
	// try (the event's detail says how many are left).
	ReasonPINWrong Reason = "pin_wrong"
	// ReasonPINNearlyBlocked denies: the card has one PIN try left and the
	// door will not spend it ("PIN nearly blocked - see the administrator").
	ReasonPINNearlyBlocked Reason = "pin_nearly_blocked"
	// ReasonPINBlocked denies: the card's PIN is blocked.
	ReasonPINBlocked Reason = "pin_blocked"
	// ReasonPINNotEntered denies: no PIN was entered in time, the entry was
	// cancelled, or it was not 4 digits.
	ReasonPINNotEntered Reason = "pin_not_entered"
	// ReasonBadSignature denies: the card's signature over the challenge did
	// not verify with its certificate's key.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonFreeAreaError denies: the free-area application or its ID file
	// is missing or holds no valid ID.
	ReasonFreeAreaError Reason = "freearea_error"
	// ReasonLockedDown denies: policy granted, but the door is locked down
	// (by HQ, a schedule or its lockdown input) and the credential is not a
	// break-glass one.
	ReasonLockedDown Reason = "locked_down"
	// ReasonInterlocked denies: policy granted, but the other door of the
	// mantrap is open or unlocked.
	ReasonInterlocked Reason = "interlocked"
)

// Reasons lists every Reason, in the order of docs/REASONS.md.
var Reasons = []Reason{
	ReasonEnrolled, ReasonRenewed, ReasonTicket, ReasonBreakGlass, ReasonDoorUnlocked,
	ReasonPassbackSoft, ReasonGrantedStaleRevocations, ReasonGrantedClockUntrusted,
	ReasonNotEnrolled, ReasonRevoked, ReasonStoreUnavailable,
	ReasonRenewalChainTooLong, ReasonCredentialInactive, ReasonPersonInactive,
	ReasonUnknownDoor, ReasonDoorLocked, ReasonNoAccess, ReasonOutsideSchedule, ReasonPINRequired,
	ReasonPassback, ReasonTicketUsed, ReasonTicketOutsideWindow, ReasonTicketWrongDoor,
	ReasonRevocationsStale, ReasonClockUntrusted,
	ReasonExpired, ReasonNotYetValid, ReasonUntrustedIssuer, ReasonBadCertificate,
	ReasonNotMyNumberCard, ReasonCardRemoved, ReasonCardError,
	ReasonPINWrong, ReasonPINNearlyBlocked, ReasonPINBlocked, ReasonPINNotEntered, ReasonBadSignature,
	ReasonFreeAreaError, ReasonLockedDown, ReasonInterlocked,
}

// Granted reports whether the reason is one that grants access.
func (r Reason) Granted() bool {
	switch r {
	case ReasonEnrolled, ReasonRenewed, ReasonTicket, ReasonBreakGlass, ReasonDoorUnlocked,
		ReasonPassbackSoft, ReasonGrantedStaleRevocations, ReasonGrantedClockUntrusted:
		return true
	}
	return false
}
