package reader

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// PINLength is the length of the JPKI user-authentication PIN (4 digits).
const PINLength = 4

// PIN is a PIN being typed or typed: a fixed-capacity buffer of ASCII
// digits that its owner zeroes with Zero as soon as it has been sent. It
// never prints its digits: String, GoString and LogValue give only its
// length. The zero value is an empty PIN of capacity 0; use NewPIN.
type PIN struct {
	buf []byte
	n   int
}

// NewPIN returns an empty PIN that holds up to maxLen digits.
func NewPIN(maxLen int) *PIN { return &PIN{buf: make([]byte, max(maxLen, 0))} }

// ErrPINFull is returned by PIN.Add when the PIN already holds its maximum
// number of digits.
var ErrPINFull = errors.New("PIN buffer full")

// Add appends one digit given as 0..9 or as an ASCII '0'..'9'.
func (p *PIN) Add(d byte) error {
	switch {
	case d <= 9:
		d += '0'
	case d >= '0' && d <= '9':
	default:
		return fmt.Errorf("add to PIN: 0x%02X is not a digit", d)
	}
	if p.n == len(p.buf) {
		return fmt.Errorf("add to PIN: %w (%d digits)", ErrPINFull, len(p.buf))
	}
	p.buf[p.n] = d
	p.n++
	return nil
}

// Backspace removes the last digit, if any.
func (p *PIN) Backspace() {
	if p.n > 0 {
		p.n--
		p.buf[p.n] = 0
	}
}

// Len returns the number of digits.
func (p *PIN) Len() int { return p.n }

// Cap returns the most digits the PIN holds.
func (p *PIN) Cap() int { return len(p.buf) }

// Zero overwrites the digits and empties the PIN.
func (p *PIN) Zero() {
	if p == nil {
		return
	}
	clear(p.buf)
	p.n = 0
}

// String describes the PIN without its digits, e.g. "PIN(4 digits)".
func (p *PIN) String() string {
	if p == nil {
		return "PIN(nil)"
	}
	return fmt.Sprintf("PIN(%d digits)", p.n)
}

// GoString is String, so that %#v does not print the digits either.
func (p *PIN) GoString() string { return p.String() }

// LogValue makes slog log the PIN as its description only.
func (p *PIN) LogValue() slog.Value { return slog.StringValue(p.String()) }

// Equal reports, in constant time, whether the PIN's digits are the ASCII
// digits in b. Simulators and tests use it; the reader itself only sends
// the PIN to the card.
func (p *PIN) Equal(b []byte) bool {
	return subtle.ConstantTimeCompare(p.digits(), b) == 1
}

// digits returns the digits (aliasing the buffer).
func (p *PIN) digits() []byte { return p.buf[:p.n] }

// PINSource reads a PIN typed by the card holder: a keypad (see package
// reader/keypad). ReadPIN blocks until the holder has typed at most maxLen
// digits and confirmed, or until ctx ends. It fails with an error matching
// ErrPINTimeout when the holder took too long and ErrPINCancelled when they
// pressed cancel (or the keypad went away). The caller zeroes the returned
// PIN.
type PINSource interface {
	ReadPIN(ctx context.Context, maxLen int) (*PIN, error)
}

// JPKI files of the user-authentication key.
const (
	fidAuthKey uint16 = 0x0017 // user-authentication private key
	fidAuthPIN uint16 = 0x0018 // user-authentication PIN
)

// TriesUnknown is the TriesLeft of an Identity or Report when the counter
// was not read.
const TriesUnknown = -1

// readTries selects the user-authentication PIN EF and reads its tries-left
// counter with VERIFY without data (63 Cx). It spends no try. 63 C0 and
// 69 84 give 0 (blocked) without error.
func readTries(ctx context.Context, c *Client, fid uint16) (int, error) {
	if err := selectEF(ctx, c, fid); err != nil {
		return TriesUnknown, err
	}
	cmd := Command{Name: fmt.Sprintf("VERIFY EF %04X (tries left)", fid), CLA: 0x00, INS: 0x20, P1: 0x00, P2: 0x80}
	r, err := c.Do(ctx, cmd)
	if err != nil {
		return TriesUnknown, err
	}
	switch {
	case r.SW&0xFFF0 == 0x63C0:
		return int(r.SW & 0x0F), nil
	case r.SW == SWAuthBlocked:
		return 0, nil
	}
	return TriesUnknown, &StatusError{Command: cmd.Name, SW: r.SW}
}

// verifyPIN sends VERIFY with the PIN to the currently selected PIN EF. The
// command bytes holding the digits are zeroed after the transmit; errors
// never carry them.
func verifyPIN(ctx context.Context, c *Client, fid uint16, pin *PIN) error {
	d := pin.digits()
	if len(d) != PINLength {
		return fmt.Errorf("%w: %d digits typed", ErrPINFormat, len(d))
	}
	data := make([]byte, PINLength)
	copy(data, d)
	defer clear(data)
	cmd := Command{Name: fmt.Sprintf("VERIFY EF %04X", fid), CLA: 0x00, INS: 0x20, P1: 0x00, P2: 0x80, Data: data, Secret: true}
	r, err := c.Do(ctx, cmd)
	if err != nil {
		return err
	}
	switch {
	case r.SW == SWOK:
		return nil
	case r.SW == 0x63C0 || r.SW == SWAuthBlocked:
		return fmt.Errorf("%s: %w (status %04X)", cmd.Name, ErrPINBlocked, r.SW)
	case r.SW&0xFFF0 == 0x63C0:
		return fmt.Errorf("%s: %w", cmd.Name, &PINWrongError{TriesLeft: int(r.SW & 0x0F)})
	}
	return &StatusError{Command: cmd.Name, SW: r.SW}
}

// digestInfoSHA256 is the DER prefix of a DigestInfo holding a SHA-256
// hash (RFC 8017 9.2 note 1); the 32-byte hash follows.
var digestInfoSHA256 = []byte{
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
}

// signChallenge has the card sign SHA-256(challenge) with the
// user-authentication key (SELECT EF 0017, then 80 2A 00 80 with the
// DigestInfo) and checks the signature with pub. The PIN must have been
// verified in this session. A refusal to sign (69 82) after a verified PIN,
// or a signature that does not verify, gives ErrSignature.
func signChallenge(ctx context.Context, c *Client, pub *rsa.PublicKey, challenge []byte, timeout time.Duration) ([]byte, error) {
	if err := selectEF(ctx, c, fidAuthKey); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(challenge)
	data := append(append([]byte(nil), digestInfoSHA256...), sum[:]...)
	cmd := Command{
		Name: "COMPUTE DIGITAL SIGNATURE EF 0017", CLA: 0x80, INS: 0x2A, P1: 0x00, P2: 0x80,
		Data: data, Ne: MaxResponseData, Timeout: timeout,
	}
	r, err := c.Do(ctx, cmd)
	if err != nil {
		return nil, err
	}
	switch r.SW {
	case SWOK:
	case SWSecurityNotSatisfied:
		return nil, fmt.Errorf("%s: %w: the card refused to sign after the PIN was verified (status %04X)", cmd.Name, ErrSignature, r.SW)
	default:
		return nil, &StatusError{Command: cmd.Name, SW: r.SW}
	}
	if err := verifySignature(pub, challenge, r.Data); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.Name, err)
	}
	return r.Data, nil
}

// verifySignature checks a PKCS #1 v1.5 signature over SHA-256(challenge)
// with pub; failure gives ErrSignature.
func verifySignature(pub *rsa.PublicKey, challenge, sig []byte) error {
	if len(challenge) == 0 {
		return fmt.Errorf("%w: empty challenge", ErrSignature)
	}
	sum := sha256.Sum256(challenge)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("%w: %d-byte signature does not verify with the certificate key: %w", ErrSignature, len(sig), err)
	}
	return nil
}
