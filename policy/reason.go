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

	// ReasonNotEnrolled denies: the credential is not on the allowlist.
	ReasonNotEnrolled Reason = "not_enrolled"
	// ReasonRevoked denies: the certificate serial is in the revocation set.
	ReasonRevoked Reason = "revoked"
	// ReasonStoreUnavailable denies: the snapshot store could not be read.
	ReasonStoreUnavailable Reason = "store_unavailable"

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
)

// Reasons lists every Reason, in the order of docs/REASONS.md.
var Reasons = []Reason{
	ReasonEnrolled,
	ReasonNotEnrolled, ReasonRevoked, ReasonStoreUnavailable,
	ReasonExpired, ReasonNotYetValid, ReasonUntrustedIssuer, ReasonBadCertificate,
	ReasonNotMyNumberCard, ReasonCardRemoved, ReasonCardError,
}

// Granted reports whether the reason is one that grants access.
func (r Reason) Granted() bool { return r == ReasonEnrolled }
