package reader

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
)

// Transmitter sends one command APDU and returns the response APDU
// (data || SW1 SW2).
type Transmitter interface {
	Transmit(ctx context.Context, cmd []byte) ([]byte, error)
}

// Card is one card session at a reader.
type Card interface {
	Transmitter
	// Done ends the session: disconnect, then wait (bounded by ctx) until the
	// card has left the reader, so the same tap is not read twice.
	Done(ctx context.Context) error
}

// JPKI application and file identifiers (see the project's JPKI notes).
var aidJPKI = []byte{0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01}

const (
	fidToken      uint16 = 0x0006 // token information: a 32-byte label
	fidAuthCert   uint16 = 0x000A // user-authentication certificate
	tokenLabelLen        = 32
)

// TokenType is the kind of JPKI token read from EF 0006.
type TokenType string

// The known JPKI token types.
const (
	// TokenMyNumberCard is a My Number Card (label JPKIAPICCTOKEN2).
	TokenMyNumberCard TokenType = "mynumber"
	// TokenJuki is an old 住基 card (label JPKIAPICCTOKEN).
	TokenJuki TokenType = "juki"
	// TokenAndroid is the smartphone certificate on Android (label
	// JPKIAPGPSETOKEN).
	TokenAndroid TokenType = "android"
	// TokenIOS is the smartphone certificate on iPhone (label
	// JPKIAPIOSTOKEN; unverified).
	TokenIOS TokenType = "ios"
)

// tokenTypes maps the EF 0006 labels to token types.
var tokenTypes = map[string]TokenType{
	"JPKIAPICCTOKEN2": TokenMyNumberCard,
	"JPKIAPICCTOKEN":  TokenJuki,
	"JPKIAPGPSETOKEN": TokenAndroid,
	"JPKIAPIOSTOKEN":  TokenIOS,
}

// Token is the JPKI token information read from EF 0006.
type Token struct {
	// Label is the label with its space/NUL padding removed.
	Label string
	// Type is the token kind the label stands for.
	Type TokenType
}

// ParseToken parses the contents of EF 0006: a label of up to 32 bytes,
// padded with spaces or NULs, possibly followed by more bytes. A label that
// is not one of the known JPKI labels gives ErrNotMyNumberCard.
func ParseToken(b []byte) (Token, error) {
	if len(b) > tokenLabelLen {
		b = b[:tokenLabelLen]
	}
	label := string(bytes.TrimRight(b, " \x00"))
	typ, ok := tokenTypes[label]
	if !ok {
		return Token{}, fmt.Errorf("%w: token label %q", ErrNotMyNumberCard, label)
	}
	return Token{Label: label, Type: typ}, nil
}

// Identity is what identification yields.
type Identity struct {
	// Mode is the identification mode that produced the Identity.
	Mode Mode
	// Credential is the identifier the card proved. In modes serial, pin
	// and enroll it is a KindCertSerial credential: IssuerKeyID is the
	// certificate's authority key ID (20 bytes; if absent or of another
	// length, the SHA-1 of the matching anchor's subjectPublicKey bits) and
	// Serial is the certificate serial. In mode freearea it is a
	// KindFreeArea credential.
	Credential credential.Credential
	// Token is the token information of the card (zero in mode freearea).
	Token Token
	// Cert is the verified certificate (nil in mode freearea). Never log its
	// NotAfter: it hints at the holder's birthday. It may be shared through
	// the Verifier's cache: do not modify it.
	Cert *x509.Certificate
	// PINVerified is true when the card accepted the holder's PIN in this
	// session (and, in modes pin and enroll, signed the challenge with the
	// certificate's key).
	PINVerified bool
	// TriesLeft is the PIN tries-left counter as last learnt: read before
	// VERIFY, or reported by the card after a wrong PIN. TriesUnknown when
	// it was not read.
	TriesLeft int
	// Enrollment is the enrollment record, in mode enroll after success.
	Enrollment *EnrollmentRecord
	// APDUs is the number of command APDUs sent, for benchmarks.
	APDUs int
	// Elapsed is the time the identification took; CardIO the part spent
	// waiting for the card and PINEntry the part spent waiting for the
	// holder to type the PIN. OwnWork gives the rest.
	Elapsed, CardIO, PINEntry time.Duration
}

// OwnWork returns the time tobira itself spent (parsing, verifying,
// signature checks): Elapsed less card I/O and PIN entry.
func (id Identity) OwnWork() time.Duration { return id.Elapsed - id.CardIO - id.PINEntry }

// Identify reads and verifies the user-authentication certificate of the
// card behind t, at time now (mode serial, see Identifier for the other
// modes): SELECT the JPKI-AP, SELECT and READ the token EF 0006, SELECT EF
// 000A and read the certificate (the first 256-byte read carries the DER
// header, which gives the length; the rest follows in chunks of at most 256
// bytes, ceil(length/256) reads in all), then verify it with v.
//
// Errors satisfy errors.Is with ErrNotMyNumberCard, ErrCardResponse,
// ErrCardTimeout, ErrBadCertificate, ErrUntrustedIssuer, ErrExpired or
// ErrNotYetValid, or are passed through from t (ErrCardRemoved, transport
// and context errors). On error the returned Identity holds what was learnt
// so far: APDUs always, Token once read, and Credential and Cert when the
// certificate chained to a trust anchor but was expired or not yet valid.
func Identify(ctx context.Context, t Transmitter, v *Verifier, now time.Time) (Identity, error) {
	if v == nil {
		return Identity{}, errors.New("identify: nil verifier")
	}
	c := NewClient(t)
	start := c.Clock.Now()
	id, err := identify(ctx, c, v, now)
	id.APDUs, id.CardIO, id.Elapsed = c.Sent(), c.IOTime(), c.Clock.Now().Sub(start)
	return id, err
}

func identify(ctx context.Context, c *Client, v *Verifier, now time.Time) (Identity, error) {
	id, der, err := readJPKI(ctx, c)
	if err != nil {
		return id, err
	}
	return id, verifyInto(&id, v, der, now)
}

// readJPKI selects the JPKI-AP, reads the token information and the DER
// user-authentication certificate.
func readJPKI(ctx context.Context, c *Client) (Identity, []byte, error) {
	id := Identity{Mode: ModeSerial, TriesLeft: TriesUnknown}
	if err := selectJPKI(ctx, c); err != nil {
		return id, nil, err
	}
	tokenData, err := readEF(ctx, c, fidToken, tokenLabelLen)
	if err != nil {
		return id, nil, err
	}
	if id.Token, err = ParseToken(tokenData); err != nil {
		return id, nil, fmt.Errorf("identify: %w", err)
	}
	der, err := readCertificate(ctx, c, fidAuthCert)
	return id, der, err
}

// verifyInto verifies der with v at now and fills the credential and
// certificate of id.
func verifyInto(id *Identity, v *Verifier, der []byte, now time.Time) error {
	cert, keyID, err := v.verify(der, now)
	if cert != nil {
		id.Cert = cert
		id.Credential = credential.Credential{
			Kind:        credential.KindCertSerial,
			IssuerKeyID: keyID,
			Serial:      cert.SerialNumber.Bytes(),
		}
	}
	if err != nil {
		return fmt.Errorf("verify auth certificate EF %04X: %w", fidAuthCert, err)
	}
	return nil
}

// selectJPKI selects the JPKI application. Any status other than 90 00 means
// the card has no JPKI-AP and gives ErrNotMyNumberCard.
func selectJPKI(ctx context.Context, c *Client) error {
	cmd := Command{Name: "SELECT JPKI-AP", CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x0C, Data: aidJPKI}
	r, err := c.Do(ctx, cmd)
	if err != nil {
		return err
	}
	if r.SW != SWOK {
		// Not a StatusError: the error must match ErrNotMyNumberCard only.
		return fmt.Errorf("%w: %s answered status %04X", ErrNotMyNumberCard, cmd.Name, r.SW)
	}
	return nil
}

// selectEF selects an elementary file of the current application.
func selectEF(ctx context.Context, c *Client, fid uint16) error {
	_, err := c.Expect(ctx, Command{
		Name: fmt.Sprintf("SELECT EF %04X", fid),
		CLA:  0x00, INS: 0xA4, P1: 0x02, P2: 0x0C,
		Data: []byte{byte(fid >> 8), byte(fid)},
	})
	return err
}

// readBinary reads up to n (1..256) bytes of the current EF at offset. A
// card may answer 62 82 (end of file) with the data that was there.
func readBinary(ctx context.Context, c *Client, fid uint16, off, n int) ([]byte, error) {
	cmd := Command{
		Name: fmt.Sprintf("READ BINARY EF %04X at offset %d", fid, off),
		CLA:  0x00, INS: 0xB0, P1: byte(off >> 8), P2: byte(off), Ne: n,
	}
	r, err := c.Do(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if r.SW != SWOK && r.SW != SWEndOfFile {
		return nil, &StatusError{Command: cmd.Name, SW: r.SW}
	}
	if len(r.Data) > n {
		return nil, fmt.Errorf("%s: %w: %d bytes returned, %d asked", cmd.Name, ErrCardResponse, len(r.Data), n)
	}
	return r.Data, nil
}

// readEF selects fid and reads up to n bytes from its start.
func readEF(ctx context.Context, c *Client, fid uint16, n int) ([]byte, error) {
	if err := selectEF(ctx, c, fid); err != nil {
		return nil, err
	}
	return readBinary(ctx, c, fid, 0, n)
}

// readCertificate selects fid and reads the DER certificate in it: the
// first 256-byte read carries the header that gives the length, the rest
// follows in chunks of at most 256 bytes. A chunk shorter than asked means
// the file is shorter than its DER header says: ErrCardResponse.
func readCertificate(ctx context.Context, c *Client, fid uint16) ([]byte, error) {
	first, err := readEF(ctx, c, fid, MaxResponseData)
	if err != nil {
		return nil, err
	}
	total, err := derLength(first)
	if err != nil {
		return nil, fmt.Errorf("read certificate EF %04X header: %w", fid, err)
	}
	if len(first) >= total {
		return first[:total:total], nil
	}
	if len(first) < MaxResponseData {
		return nil, fmt.Errorf("read certificate EF %04X: %w: truncated at %d of %d bytes", fid, ErrCardResponse, len(first), total)
	}
	der := make([]byte, 0, total)
	der = append(der, first...)
	for len(der) < total {
		n := min(total-len(der), MaxResponseData)
		chunk, err := readBinary(ctx, c, fid, len(der), n)
		if err != nil {
			return nil, err
		}
		if len(chunk) < n {
			return nil, fmt.Errorf("read certificate EF %04X at offset %d: %w: truncated at %d of %d bytes", fid, len(der), ErrCardResponse, len(der)+len(chunk), total)
		}
		der = append(der, chunk...)
	}
	return der, nil
}
