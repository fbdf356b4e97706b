// Package signed is tobira's Ed25519 signed envelope: HQ signs what changes
// a door's behaviour (commands, snapshot manifests, ticket marks, release
// offers), and the device opens it only with a key it pins. KeyID and the
// PEM key files are shared with firmware's release manifests, so that an
// HQ key and a release key are named and stored the same way.
//
// # Format
//
// An envelope is a JSON object:
//
//	{"kind":"command","key":"3f5e0a1b2c3d4e5f","payload":"<base64>","sig":"<base64>"}
//
// kind names what the payload is; key is the signer's KeyID (hex of the
// first 8 bytes of SHA-256 of the raw 32-byte public key); payload is the
// signed bytes in standard base64; sig is the 64-byte Ed25519 signature in
// standard base64 over
//
//	"tobira-signed-v1" 0x00 kind 0x00 payload
//
// so that a signature made for one kind can never be replayed as another.
// The key ID only selects among pinned keys; trust comes from the pinned
// public key, never from the envelope. Expiry, nonces and versions live in
// the payload and are the receiver's business.
package signed

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/tobira-ac/tobira/internal/atomicfile"
)

// MaxEnvelope is the largest envelope Open accepts, in bytes.
const MaxEnvelope = 256 << 10

// domain prefixes every signed message.
const domain = "tobira-signed-v1"

// Errors returned by Open and the key file functions. They are wrapped with
// details; test with errors.Is.
var (
	// ErrMalformed means the envelope is not valid JSON of the format, is
	// too big, or misses a field.
	ErrMalformed = errors.New("malformed signed envelope")
	// ErrWrongKind means the envelope is valid but of another kind than
	// the receiver expects.
	ErrWrongKind = errors.New("envelope of another kind")
	// ErrUnknownKey means the envelope names a key that is not pinned.
	ErrUnknownKey = errors.New("signing key not pinned")
	// ErrBadSignature means the signature does not verify with the pinned
	// key the envelope names: the payload was forged or altered.
	ErrBadSignature = errors.New("bad signature")
	// ErrNoKeys means a Verifier was made with no keys: it would refuse
	// everything, which is a configuration mistake, not a policy.
	ErrNoKeys = errors.New("no pinned keys")
	// ErrBadKeyFile means a key file does not hold a key of the expected
	// type.
	ErrBadKeyFile = errors.New("bad key file")
)

// Envelope is the wire form of a signed message.
type Envelope struct {
	// Kind names what the payload is, e.g. "command".
	Kind string `json:"kind"`
	// Key is the signer's KeyID.
	Key string `json:"key"`
	// Payload is the signed bytes.
	Payload []byte `json:"payload"`
	// Sig is the Ed25519 signature over the domain, kind and payload.
	Sig []byte `json:"sig"`
}

// KeyID returns the hex of the first 8 bytes of SHA-256 of pub.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// message returns the bytes that are signed.
func message(kind string, payload []byte) []byte {
	m := make([]byte, 0, len(domain)+2+len(kind)+len(payload))
	m = append(m, domain...)
	m = append(m, 0)
	m = append(m, kind...)
	m = append(m, 0)
	return append(m, payload...)
}

// Sign returns the JSON envelope of payload signed with priv as kind.
func Sign(kind string, payload []byte, priv ed25519.PrivateKey) ([]byte, error) {
	if kind == "" || bytes.IndexByte([]byte(kind), 0) >= 0 {
		return nil, fmt.Errorf("sign: kind %q must be non-empty without NUL", kind)
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign %s: private key is %d bytes, want %d", kind, len(priv), ed25519.PrivateKeySize)
	}
	pub := priv.Public().(ed25519.PublicKey)
	b, err := json.Marshal(Envelope{
		Kind:    kind,
		Key:     KeyID(pub),
		Payload: payload,
		Sig:     ed25519.Sign(priv, message(kind, payload)),
	})
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", kind, err)
	}
	if len(b) > MaxEnvelope {
		return nil, fmt.Errorf("sign %s: envelope is %d bytes, max %d", kind, len(b), MaxEnvelope)
	}
	return b, nil
}

// Verifier opens envelopes signed by any of its pinned keys (several, so
// that HQ can rotate keys: pin the new one, switch signing, unpin the old).
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier pins keys. It refuses an empty list (ErrNoKeys) and keys of
// the wrong size.
func NewVerifier(keys ...ed25519.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for i, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("pinned key %d is %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
		v.keys[KeyID(k)] = bytes.Clone(k)
	}
	return v, nil
}

// KeyIDs returns the IDs of the pinned keys.
func (v *Verifier) KeyIDs() []string {
	ids := make([]string, 0, len(v.keys))
	for id := range v.keys {
		ids = append(ids, id)
	}
	return ids
}

// Open checks envelope and returns its payload and the ID of the key that
// signed it. The envelope must be of kind, name a pinned key and carry a
// valid signature by that key.
func (v *Verifier) Open(kind string, envelope []byte) (payload []byte, keyID string, err error) {
	if len(envelope) > MaxEnvelope {
		return nil, "", fmt.Errorf("%w: %d bytes, max %d", ErrMalformed, len(envelope), MaxEnvelope)
	}
	var e Envelope
	if err := json.Unmarshal(envelope, &e); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case e.Kind == "" || e.Key == "" || e.Payload == nil || e.Sig == nil:
		return nil, "", fmt.Errorf("%w: kind, key, payload and sig are required", ErrMalformed)
	case len(e.Sig) != ed25519.SignatureSize:
		return nil, "", fmt.Errorf("%w: signature is %d bytes, want %d", ErrMalformed, len(e.Sig), ed25519.SignatureSize)
	case e.Kind != kind:
		return nil, "", fmt.Errorf("%w: %q, want %q", ErrWrongKind, e.Kind, kind)
	}
	pub, ok := v.keys[e.Key]
	if !ok {
		return nil, "", fmt.Errorf("%w: key %q", ErrUnknownKey, e.Key)
	}
	if !ed25519.Verify(pub, message(e.Kind, e.Payload), e.Sig) {
		return nil, "", fmt.Errorf("%w: %s envelope by key %s", ErrBadSignature, kind, e.Key)
	}
	return e.Payload, e.Key, nil
}

// GenerateKey returns a new Ed25519 key pair from crypto/rand.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	return pub, priv, nil
}

// WriteKeyPair writes priv as a PKCS #8 "PRIVATE KEY" PEM file at privPath
// (mode 0600) and its public key as a PKIX "PUBLIC KEY" PEM file at
// pubPath (mode 0644). It refuses to overwrite either file. Each file is
// written to a temporary name, synced and renamed, so a crash leaves no
// half key.
func WriteKeyPair(privPath, pubPath string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encode private key for %s: %w", privPath, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return fmt.Errorf("encode public key for %s: %w", pubPath, err)
	}
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("write key %s: %w", p, os.ErrExist)
		}
	}
	if err := atomicfile.Write(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// ReadPrivateKey reads a PKCS #8 PEM Ed25519 private key written by
// WriteKeyPair.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKeyFile, path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds a %T, want an Ed25519 key", ErrBadKeyFile, path, k)
	}
	return priv, nil
}

// ReadPublicKey reads a PKIX PEM Ed25519 public key written by
// WriteKeyPair.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	return ParsePublicKeyDER(der)
}

// ParsePublicKeyDER parses a PKIX DER Ed25519 public key.
func ParsePublicKeyDER(der []byte) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T, want an Ed25519 key", ErrBadKeyFile, k)
	}
	return pub, nil
}

// readPEM returns the DER of the single PEM block of type typ in path.
func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%w: %s has no %q PEM block", ErrBadKeyFile, path, typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: %s has data after the %q PEM block", ErrBadKeyFile, path, typ)
	}
	return blk.Bytes, nil
}
