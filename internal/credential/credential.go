// Package credential defines what a card proved at a reader, in the form
// the reader produces and policy decides on. It holds no personal data: a
// certificate serial identifies a certificate, not a person, and a free-area
// ID is an opaque identifier assigned by the organisation.
package credential

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Kind says what sort of identifier a Credential carries.
type Kind uint8

const (
	// KindCertSerial is a JPKI user-authentication certificate, identified by
	// the issuing CA's key ID and the certificate serial.
	KindCertSerial Kind = 1
	// KindFreeArea is an organisation's ID read from the card's free area.
	KindFreeArea Kind = 2
)

// String returns the kind's name as used in events and docs.
func (k Kind) String() string {
	switch k {
	case KindCertSerial:
		return "cert"
	case KindFreeArea:
		return "freearea"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// KeyIDLen is the fixed width of an issuer key ID in a Key (a SHA-1 sized
// subject key identifier, as JPKI CAs use).
const KeyIDLen = 20

// MaxSerialLen is the longest certificate serial RFC 5280 allows (20 octets).
const MaxSerialLen = 20

// MaxFreeAreaIDLen bounds a free-area ID.
const MaxFreeAreaIDLen = 64

// Errors returned by Key and Parse.
var (
	// ErrInvalid means a credential's fields are out of range.
	ErrInvalid = errors.New("invalid credential")
)

// Credential is one identifier presented at a reader.
type Credential struct {
	// Kind says which of the fields below are set.
	Kind Kind
	// IssuerKeyID is the issuing CA's key identifier (the certificate's
	// authority key ID), exactly KeyIDLen bytes, for KindCertSerial.
	IssuerKeyID []byte
	// Serial is the certificate serial as unsigned big-endian bytes without
	// leading zeros, for KindCertSerial.
	Serial []byte
	// ID is the free-area identifier, for KindFreeArea.
	ID string
}

// Key returns the credential's fixed-layout binary key, used by the snapshot
// store: for a certificate, 0x01 || issuer key ID (20 bytes) || serial; for a
// free-area ID, 0x02 || ID bytes.
func (c Credential) Key() ([]byte, error) {
	switch c.Kind {
	case KindCertSerial:
		if len(c.IssuerKeyID) != KeyIDLen {
			return nil, fmt.Errorf("%w: issuer key ID is %d bytes, want %d", ErrInvalid, len(c.IssuerKeyID), KeyIDLen)
		}
		if len(c.Serial) == 0 || len(c.Serial) > MaxSerialLen {
			return nil, fmt.Errorf("%w: serial is %d bytes, want 1..%d", ErrInvalid, len(c.Serial), MaxSerialLen)
		}
		k := make([]byte, 0, 1+KeyIDLen+len(c.Serial))
		k = append(k, byte(KindCertSerial))
		k = append(k, c.IssuerKeyID...)
		return append(k, c.Serial...), nil
	case KindFreeArea:
		if c.ID == "" || len(c.ID) > MaxFreeAreaIDLen {
			return nil, fmt.Errorf("%w: free-area ID is %d bytes, want 1..%d", ErrInvalid, len(c.ID), MaxFreeAreaIDLen)
		}
		return append([]byte{byte(KindFreeArea)}, c.ID...), nil
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrInvalid, uint8(c.Kind))
	}
}

// SerialHex returns the serial in lower-case hex ("" when there is none).
func (c Credential) SerialHex() string { return hex.EncodeToString(c.Serial) }

// String returns a short, log-safe description: kind, issuer key ID prefix
// and serial, or the free-area ID.
func (c Credential) String() string {
	switch c.Kind {
	case KindCertSerial:
		kid := c.IssuerKeyID
		if len(kid) > 4 {
			kid = kid[:4]
		}
		return fmt.Sprintf("cert:%x…/%x", kid, c.Serial)
	case KindFreeArea:
		return "freearea:" + c.ID
	default:
		return c.Kind.String()
	}
}

// Parse is the inverse of Key.
func Parse(key []byte) (Credential, error) {
	if len(key) == 0 {
		return Credential{}, fmt.Errorf("%w: empty key", ErrInvalid)
	}
	switch Kind(key[0]) {
	case KindCertSerial:
		if len(key) < 1+KeyIDLen+1 || len(key) > 1+KeyIDLen+MaxSerialLen {
			return Credential{}, fmt.Errorf("%w: certificate key is %d bytes", ErrInvalid, len(key))
		}
		return Credential{
			Kind:        KindCertSerial,
			IssuerKeyID: append([]byte(nil), key[1:1+KeyIDLen]...),
			Serial:      append([]byte(nil), key[1+KeyIDLen:]...),
		}, nil
	case KindFreeArea:
		if len(key) < 2 || len(key) > 1+MaxFreeAreaIDLen {
			return Credential{}, fmt.Errorf("%w: free-area key is %d bytes", ErrInvalid, len(key))
		}
		return Credential{Kind: KindFreeArea, ID: string(key[1:])}, nil
	default:
		return Credential{}, fmt.Errorf("%w: unknown kind byte 0x%02x", ErrInvalid, key[0])
	}
}
