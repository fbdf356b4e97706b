package reader

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by Identify, Identifier.Identify
// and Verifier.Verify satisfies errors.Is with exactly one of the sentinels
// below (ErrReaderNotFound aside, which only a reader/pcsc Source returns),
// unless it comes from the Transmitter itself (a transport failure) or from
// the caller's context.
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

// Sentinel errors of the PIN, signature and free-area steps (modes pin,
// enroll and freearea). PINWrongError carries the tries left of a wrong
// PIN.
var (
	// ErrPINWrong means the card refused the PIN; the error is a
	// *PINWrongError that tells how many tries are left.
	ErrPINWrong = errors.New("wrong PIN")

	// ErrPINNearlyBlocked means only one PIN try is left and the door is not
	// configured to spend it: the PIN was not verified and the counter is
	// unchanged. The holder must see the administrator (or the
	// municipality) to reset the PIN.
	ErrPINNearlyBlocked = errors.New("PIN nearly blocked - see the administrator")

	// ErrPINBlocked means the card has no PIN tries left (63 C0 or 69 84).
	ErrPINBlocked = errors.New("PIN blocked")

	// ErrPINTimeout means the holder did not finish typing the PIN in time.
	ErrPINTimeout = errors.New("PIN entry timed out")

	// ErrPINCancelled means the holder pressed the cancel key, or the keypad
	// went away, before finishing the PIN.
	ErrPINCancelled = errors.New("PIN entry cancelled")

	// ErrPINFormat means the typed PIN is not 4 digits; it was not sent to
	// the card, so no try was spent.
	ErrPINFormat = errors.New("PIN is not 4 digits")

	// ErrSignature means the card's signature over the challenge did not
	// verify with the certificate's public key, or the card refused to sign
	// after a correct PIN: the card does not hold the certificate's key.
	ErrSignature = errors.New("card signature invalid")

	// ErrCardTimeout means the card did not answer one command within its
	// per-command timeout (the caller's context had not ended).
	ErrCardTimeout = errors.New("card did not answer in time")

	// ErrFreeAreaNotFound means the card has no application with the
	// configured free-area AID, or no such file in it.
	ErrFreeAreaNotFound = errors.New("free-area application not found")

	// ErrFreeAreaData means the free-area file does not hold a usable ID at
	// the configured place (missing TLV tag, bad encoding, empty or too
	// long an ID).
	ErrFreeAreaData = errors.New("bad free-area data")
)

// PINWrongError is returned when the card refused the PIN. errors.Is(err,
// ErrPINWrong) is true for it.
type PINWrongError struct {
	// TriesLeft is the number of tries the card reports as left (1 or 2 on
	// a My Number Card; 0 is reported as ErrPINBlocked instead).
	TriesLeft int
}

// Error says that the PIN was wrong and how many tries are left.
func (e *PINWrongError) Error() string {
	return fmt.Sprintf("%v: %d tries left", ErrPINWrong, e.TriesLeft)
}

// Is makes every PINWrongError match ErrPINWrong.
func (e *PINWrongError) Is(target error) bool { return target == ErrPINWrong }

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
