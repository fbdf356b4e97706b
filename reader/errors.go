package reader

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by Identify and Verifier.Verify
// satisfies errors.Is with exactly one of the first seven sentinels below,
// unless it comes from the Transmitter itself (a transport failure) or from
// the context.
var (
	// ErrCardRemoved means the card left the reader during the exchange
	// (PC/SC: removed or reset card, no smart card, reader gone).
	ErrCardRemoved = errors.New("card removed")

	// ErrNotMyNumberCard means the card has no JPKI application (SELECT
	// answers 6A82 or another error status) or its token label is not one of
	// the known JPKI labels.
	ErrNotMyNumberCard = errors.New("not a My Number Card")

	// ErrUntrustedIssuer means the certificate does not chain to any of the
	// configured trust anchors.
	ErrUntrustedIssuer = errors.New("certificate issuer not trusted")

	// ErrExpired means the certificate, or the anchor that issued it, was no
	// longer valid at the check time.
	ErrExpired = errors.New("certificate expired")

	// ErrNotYetValid means the certificate, or the anchor that issued it, was
	// not yet valid at the check time.
	ErrNotYetValid = errors.New("certificate not yet valid")

	// ErrBadCertificate means the certificate is not parseable DER or does
	// not have the JPKI user-authentication profile (RSA key, key usage
	// digitalSignature, policy 1.2.392.200149.8.5.1.3.30, not a CA, a serial
	// of 1 to 20 bytes).
	ErrBadCertificate = errors.New("bad certificate")

	// ErrCardResponse means the card answered something unusable: too short
	// or too long an answer, truncated data, an oversize length or an
	// unexpected status word (see StatusError).
	ErrCardResponse = errors.New("bad card response")

	// ErrReaderNotFound means the configured PC/SC reader name is not among
	// the readers pcscd lists; the error message lists the available ones.
	ErrReaderNotFound = errors.New("reader not found")
)

// StatusError is returned when the card answers a command with a status
// word the exchange did not expect. errors.Is(err, ErrCardResponse) is true
// for every StatusError.
type StatusError struct {
	// Command names the command that failed, e.g. "SELECT EF 000A". It never
	// contains command data (a PIN, for instance).
	Command string
	// SW is the status word, SW1 in the high byte.
	SW uint16
}

// Error returns a message naming the command, the status word and, when
// known, its ISO 7816-4 meaning.
func (e *StatusError) Error() string {
	if text := statusText(e.SW); text != "" {
		return fmt.Sprintf("%s: card answered status %04X (%s)", e.Command, e.SW, text)
	}
	return fmt.Sprintf("%s: card answered status %04X", e.Command, e.SW)
}

// Is makes every StatusError match ErrCardResponse.
func (e *StatusError) Is(target error) bool { return target == ErrCardResponse }
