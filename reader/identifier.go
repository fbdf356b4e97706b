package reader

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/credential"
)

// Mode is how a door identifies the card holder; it is chosen per door in
// the configuration.
type Mode string

// The identification modes.
const (
	// ModeSerial reads and verifies the user-authentication certificate
	// (no PIN). The credential is issuer key ID + certificate serial.
	ModeSerial Mode = "serial"
	// ModePIN is ModeSerial, then the holder's PIN on a keypad and an
	// on-card signature of a fresh challenge, verified with the
	// certificate's key (two factors).
	ModePIN Mode = "pin"
	// ModeFreeArea reads an organisation's user ID from a configured
	// free-area profile.
	ModeFreeArea Mode = "freearea"
	// ModeEnroll is ModePIN producing an EnrollmentRecord for HQ.
	ModeEnroll Mode = "enroll"
)

// Modes lists the identification modes.
var Modes = []Mode{ModeSerial, ModePIN, ModeFreeArea, ModeEnroll}

// ParseMode parses a mode name as written in the configuration; "" is
// ModeSerial.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return ModeSerial, nil
	}
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown identification mode %q (want serial, pin, freearea or enroll)", s)
}

// ChallengeLen is the length of the random challenge the card signs in
// modes pin and enroll.
const ChallengeLen = 32

// EnrollmentRecord is the proof, made in mode enroll, that the holder of a
// certificate authenticated with the card's PIN and that the card holds
// the certificate's key: the card signed SHA-256(Challenge) with the
// user-authentication key after the PIN was verified. HQ adds the
// credential to the allowlist from it; VerifyEnrollment checks it again.
//
// Certificate carries notAfter, which hints at the holder's birthday: send
// the record only to HQ's enrollment intake, never in the event stream or
// logs.
type EnrollmentRecord struct {
	// Credential is the certificate credential (issuer key ID + serial).
	Credential credential.Credential
	// Token is the token type of the card.
	Token TokenType
	// Certificate is the DER user-authentication certificate.
	Certificate []byte
	// Challenge is the random challenge the card signed.
	Challenge []byte
	// Signature is the card's PKCS #1 v1.5 signature over the DigestInfo of
	// SHA-256(Challenge).
	Signature []byte
	// PINVerified is true: the card accepted the PIN before signing.
	PINVerified bool
	// Time is when the signature was verified (the identification time).
	Time time.Time
}

// VerifyEnrollment checks an enrollment record with v at now: the
// certificate verifies (chain, profile, validity), the record's credential
// is the certificate's, and the signature over the challenge verifies with
// the certificate's key. Errors match ErrSignature or the certificate
// errors of Verifier.Verify.
func VerifyEnrollment(rec *EnrollmentRecord, v *Verifier, now time.Time) error {
	if rec == nil || v == nil {
		return errors.New("verify enrollment: nil record or verifier")
	}
	var id Identity
	if err := verifyInto(&id, v, rec.Certificate, now); err != nil {
		return fmt.Errorf("verify enrollment: %w", err)
	}
	want, _ := id.Credential.Key()
	got, err := rec.Credential.Key()
	if err != nil || string(got) != string(want) {
		return fmt.Errorf("verify enrollment: %w: record credential %v is not the certificate's %v", ErrSignature, rec.Credential, id.Credential)
	}
	pub := id.Cert.PublicKey.(*rsa.PublicKey) // checkProfile admits RSA only
	if err := verifySignature(pub, rec.Challenge, rec.Signature); err != nil {
		return fmt.Errorf("verify enrollment of %v: %w", rec.Credential, err)
	}
	return nil
}

// IdentifierConfig configures an Identifier (one per door).
type IdentifierConfig struct {
	// Mode is the identification mode; "" means ModeSerial.
	Mode Mode
	// Verifier checks certificates; required in modes serial, pin and
	// enroll. Share one Verifier between doors to share its cache.
	Verifier *Verifier
	// Keypad reads the PIN; required in modes pin and enroll, and in mode
	// freearea when the profile verifies a PIN.
	Keypad PINSource
	// FreeArea is the free-area profile; required in mode freearea.
	FreeArea *FreeAreaProfile
	// AllowLastTry lets the door VERIFY the PIN when the card has only one
	// try left. By default such a card is refused with ErrPINNearlyBlocked,
	// so that a door is never the reason a card's PIN gets blocked.
	AllowLastTry bool
	// CommandTimeout bounds each card command; 0 means
	// DefaultCommandTimeout.
	CommandTimeout time.Duration
	// SignTimeout bounds the signing command; 0 means DefaultSignTimeout.
	SignTimeout time.Duration
	// Rand is the source of challenges; nil means crypto/rand.
	Rand io.Reader
	// Clock times the identification (Identity.Elapsed and its split); nil
	// means the system clock.
	Clock clock.Clock
	// Log receives debug logs; nil means slog.Default(). Nothing personal
	// is logged: no PIN, no notAfter.
	Log *slog.Logger
}

// Identifier identifies card holders in one mode. It is safe for
// concurrent use (each call is its own card session).
type Identifier struct {
	cfg IdentifierConfig
	fa  *freeArea
}

// NewIdentifier checks cfg and returns an Identifier.
func NewIdentifier(cfg IdentifierConfig) (*Identifier, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeSerial
	}
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return nil, fmt.Errorf("new identifier: %w", err)
	}
	i := &Identifier{cfg: cfg}
	switch cfg.Mode {
	case ModeSerial, ModePIN, ModeEnroll:
		if cfg.Verifier == nil {
			return nil, fmt.Errorf("new identifier: mode %s needs a verifier (trust anchors)", cfg.Mode)
		}
	case ModeFreeArea:
		if cfg.FreeArea == nil {
			return nil, fmt.Errorf("new identifier: mode %s needs a free-area profile", cfg.Mode)
		}
		fa, err := cfg.FreeArea.compile()
		if err != nil {
			return nil, fmt.Errorf("new identifier: %w", err)
		}
		i.fa = fa
	}
	if i.needsKeypad() && cfg.Keypad == nil {
		return nil, fmt.Errorf("new identifier: mode %s needs a keypad", cfg.Mode)
	}
	if i.cfg.CommandTimeout <= 0 {
		i.cfg.CommandTimeout = DefaultCommandTimeout
	}
	if i.cfg.SignTimeout <= 0 {
		i.cfg.SignTimeout = DefaultSignTimeout
	}
	if i.cfg.Rand == nil {
		i.cfg.Rand = rand.Reader
	}
	if i.cfg.Clock == nil {
		i.cfg.Clock = clock.System{}
	}
	if i.cfg.Log == nil {
		i.cfg.Log = slog.Default()
	}
	return i, nil
}

func (i *Identifier) needsKeypad() bool {
	switch i.cfg.Mode {
	case ModePIN, ModeEnroll:
		return true
	case ModeFreeArea:
		return i.fa.pinFID != 0
	}
	return false
}

// Mode returns the identifier's mode.
func (i *Identifier) Mode() Mode { return i.cfg.Mode }

// Identify runs one identification in the identifier's mode with the card
// behind t, at time now (used for certificate validity and the enrollment
// record).
//
// Mode serial is the package-level Identify. Modes pin and enroll then
// read the PIN tries-left counter (no try spent), refuse a blocked card
// (ErrPINBlocked) and, unless AllowLastTry, a card with one try left
// (ErrPINNearlyBlocked, counter unchanged), read the PIN from the keypad
// (ErrPINTimeout, ErrPINCancelled, ErrPINFormat), VERIFY it (a wrong PIN
// gives a *PINWrongError with the tries left), have the card sign SHA-256
// of a fresh random challenge with the user-authentication key and verify
// that signature with the certificate's key (ErrSignature). A smartphone
// token whose certificate needs the PIN first is handled by verifying the
// PIN before the certificate is read. Mode freearea reads the ID of the
// configured profile (ErrFreeAreaNotFound, ErrFreeAreaData).
//
// Besides those, errors match the sentinels listed at Identify. On error
// the Identity holds what was learnt so far (APDUs, token, credential,
// TriesLeft).
func (i *Identifier) Identify(ctx context.Context, t Transmitter, now time.Time) (Identity, error) {
	c := NewClient(t)
	c.Timeout, c.Clock = i.cfg.CommandTimeout, i.cfg.Clock
	start := i.cfg.Clock.Now()
	var id Identity
	var err error
	switch i.cfg.Mode {
	case ModeFreeArea:
		id, err = i.identifyFreeArea(ctx, c)
	case ModeSerial:
		id, err = identify(ctx, c, i.cfg.Verifier, now)
	default:
		id, err = i.identifyPIN(ctx, c, now)
	}
	id.Mode = i.cfg.Mode
	id.APDUs, id.CardIO = c.Sent(), c.IOTime()
	id.Elapsed = i.cfg.Clock.Now().Sub(start)
	i.cfg.Log.Debug("card identified", "mode", id.Mode, "credential", id.Credential, "token", id.Token.Type,
		"pin_verified", id.PINVerified, "apdus", id.APDUs, "elapsed", id.Elapsed, "card_io", id.CardIO, "err", err)
	return id, err
}

// identifyPIN runs modes pin and enroll.
func (i *Identifier) identifyPIN(ctx context.Context, c *Client, now time.Time) (Identity, error) {
	id, der, err := readJPKI(ctx, c)
	var se *StatusError
	if errors.As(err, &se) && se.SW == SWSecurityNotSatisfied && id.Token.Type.Smartphone() {
		// A smartphone token may show its certificate only after the PIN.
		if err := i.pinStep(ctx, c, &id, fidAuthPIN); err != nil {
			return id, err
		}
		der, err = readCertificate(ctx, c, fidAuthCert)
	}
	if err != nil {
		return id, err
	}
	// The certificate is checked before the holder is asked for the PIN: a
	// card that cannot pass anyway costs no PIN try.
	if err := verifyInto(&id, i.cfg.Verifier, der, now); err != nil {
		return id, err
	}
	if !id.PINVerified {
		if err := i.pinStep(ctx, c, &id, fidAuthPIN); err != nil {
			return id, err
		}
	}
	challenge := make([]byte, ChallengeLen)
	if _, err := io.ReadFull(i.cfg.Rand, challenge); err != nil {
		return id, fmt.Errorf("make signing challenge: %w", err)
	}
	pub := id.Cert.PublicKey.(*rsa.PublicKey) // checkProfile admits RSA only
	sig, err := signChallenge(ctx, c, pub, challenge, i.cfg.SignTimeout)
	if err != nil {
		id.PINVerified = false
		return id, err
	}
	if i.cfg.Mode == ModeEnroll {
		id.Enrollment = &EnrollmentRecord{
			Credential:  id.Credential,
			Token:       id.Token.Type,
			Certificate: cloneRaw(id.Cert),
			Challenge:   challenge,
			Signature:   sig,
			PINVerified: true,
			Time:        now,
		}
	}
	return id, nil
}

func cloneRaw(c *x509.Certificate) []byte { return append([]byte(nil), c.Raw...) }

// pinStep reads the tries-left counter of the PIN EF fid, refuses a blocked
// or nearly blocked card, reads the PIN from the keypad and verifies it.
func (i *Identifier) pinStep(ctx context.Context, c *Client, id *Identity, fid uint16) error {
	tries, err := readTries(ctx, c, fid)
	id.TriesLeft = tries
	if err != nil {
		return err
	}
	switch {
	case tries == 0:
		return fmt.Errorf("PIN EF %04X: %w", fid, ErrPINBlocked)
	case tries == 1 && !i.cfg.AllowLastTry:
		return fmt.Errorf("PIN EF %04X: %w (1 try left; not spent)", fid, ErrPINNearlyBlocked)
	}
	start := i.cfg.Clock.Now()
	pin, err := i.cfg.Keypad.ReadPIN(ctx, PINLength)
	id.PINEntry += i.cfg.Clock.Now().Sub(start)
	defer pin.Zero()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return fmt.Errorf("read PIN from keypad: %w", ctx.Err())
	case errors.Is(err, ErrPINTimeout), errors.Is(err, ErrPINCancelled):
		return fmt.Errorf("read PIN from keypad: %w", err)
	default:
		return fmt.Errorf("read PIN from keypad: %w: %w", ErrPINCancelled, err)
	}
	err = verifyPIN(ctx, c, fid, pin)
	pin.Zero()
	var wrong *PINWrongError
	switch {
	case errors.As(err, &wrong):
		id.TriesLeft = wrong.TriesLeft
	case errors.Is(err, ErrPINBlocked):
		id.TriesLeft = 0
	case err == nil:
		id.PINVerified = true
	}
	return err
}

// Smartphone reports whether the token is a smartphone certificate.
func (t TokenType) Smartphone() bool { return t == TokenAndroid || t == TokenIOS }
