package proto

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	"github.com/tobira-ac/tobira/internal/signed"
)

// The signed messages of the contract (Command, Manifest, MarkBatch,
// ReleaseOffer) are JSON payloads in a signed envelope of their kind. HQ
// signs them with Sign*, a device opens them with Open*, which verify the
// signature against the device's pinned keys and the payload's form.

// validator is a payload that checks its own form.
type validator interface{ Validate() error }

// signJSON checks p, encodes it as JSON and signs it as kind.
func signJSON(priv ed25519.PrivateKey, kind string, p validator) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", kind, err)
	}
	return signed.Sign(kind, b, priv)
}

// openJSON verifies an envelope of kind with v and decodes its payload
// with decodeJSON.
func openJSON[T validator](v *signed.Verifier, kind string, envelope []byte, max int) (T, error) {
	payload, _, err := v.Open(kind, envelope)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s envelope: %w", kind, err)
	}
	return decodeJSON[T](kind, payload, max)
}

// decodeJSON decodes a JSON payload of at most max bytes into a T and
// checks it. A T that decodes but is malformed is returned with the error,
// so that the receiver can name it (its ID) in its result. Errors wrap
// ErrMalformed.
func decodeJSON[T validator](what string, payload []byte, max int) (T, error) {
	var x T
	if len(payload) > max {
		return x, fmt.Errorf("%w: %s payload is %d bytes, max %d", ErrMalformed, what, len(payload), max)
	}
	if err := json.Unmarshal(payload, &x); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: %s payload: %w", ErrMalformed, what, err)
	}
	return x, x.Validate()
}
