package firmware

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/internal/signed"
)

// Limits on outside bytes.
const (
	// MaxEnvelopeSize bounds a signed envelope; bigger input is refused
	// before it is decoded.
	MaxEnvelopeSize = 64 << 10
	// MaxSignatures bounds the signatures one envelope may carry.
	MaxSignatures = 8
	// MaxReleaseSize bounds the size of a release binary.
	MaxReleaseSize = 512 << 20
	// MaxTargets bounds the target list of a manifest.
	MaxTargets = 4096
)

// signingContext prefixes the signed bytes so that a release signature can
// never be mistaken for a signature over another kind of tobira message.
const signingContext = "tobira-release-manifest-v1\x00"

// Manifest describes one release of the edge binary. It is signed as the
// exact JSON bytes carried in an Envelope, so no canonical encoding is
// needed: the device verifies the bytes, then decodes them.
type Manifest struct {
	// Version is the release's version (MAJOR.MINOR.PATCH).
	Version string `json:"version"`
	// Arch is the target platform as GOOS/GOARCH, e.g. "linux/arm64".
	Arch string `json:"arch"`
	// Size is the binary's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the lower-case hex SHA-256 digest of the binary.
	SHA256 string `json:"sha256"`
	// MinFromVersion, if set, is the oldest running version this release
	// may be installed from.
	MinFromVersion string `json:"min_from_version,omitempty"`
	// Floor, if set, raises the device's anti-rollback floor once this
	// release commits: releases older than Floor are refused from then on.
	// It must not exceed Version.
	Floor string `json:"floor,omitempty"`
	// Issued is when the manifest was signed (informative).
	Issued time.Time `json:"issued"`
	// Expires is when the manifest stops being installable. Required.
	Expires time.Time `json:"expires"`
	// Targets, if not empty, limits the release to devices named
	// "device:<id>" or members of "group:<name>".
	Targets []string `json:"targets,omitempty"`
	// URL, if set, is an https URL the binary may be fetched from.
	URL string `json:"url,omitempty"`
	// Notes is free text for admins (changelog line).
	Notes string `json:"notes,omitempty"`
}

// Validate checks the manifest's own consistency (not the device's
// policy). Errors wrap ErrMalformed.
func (m Manifest) Validate() error {
	v, err := ParseVersion(m.Version)
	if err != nil {
		return fmt.Errorf("manifest version: %w", err)
	}
	if _, err := optVersion("manifest min_from_version", m.MinFromVersion); err != nil {
		return err
	}
	floor, err := optVersion("manifest floor", m.Floor)
	if err != nil {
		return err
	}
	if floor.Compare(v) > 0 {
		return fmt.Errorf("%w: manifest %s: floor %s above the release's own version", ErrMalformed, m.Version, m.Floor)
	}
	if os, arch, ok := strings.Cut(m.Arch, "/"); !ok || os == "" || arch == "" || strings.ContainsAny(arch, "/ ") {
		return fmt.Errorf("%w: manifest %s: arch %q: want GOOS/GOARCH", ErrMalformed, m.Version, m.Arch)
	}
	if m.Size <= 0 || m.Size > MaxReleaseSize {
		return fmt.Errorf("%w: manifest %s: size %d outside 1..%d", ErrMalformed, m.Version, m.Size, MaxReleaseSize)
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != sha256.Size || m.SHA256 != strings.ToLower(m.SHA256) {
		return fmt.Errorf("%w: manifest %s: sha256 %q: want 64 lower-case hex digits", ErrMalformed, m.Version, m.SHA256)
	}
	if m.Expires.IsZero() {
		return fmt.Errorf("%w: manifest %s: no expiry", ErrMalformed, m.Version)
	}
	if len(m.Targets) > MaxTargets {
		return fmt.Errorf("%w: manifest %s: %d targets, at most %d", ErrMalformed, m.Version, len(m.Targets), MaxTargets)
	}
	for _, t := range m.Targets {
		kind, name, _ := strings.Cut(t, ":")
		if (kind != "device" && kind != "group") || name == "" {
			return fmt.Errorf("%w: manifest %s: target %q: want device:<id> or group:<name>", ErrMalformed, m.Version, t)
		}
	}
	if m.URL != "" {
		u, err := url.Parse(m.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%w: manifest %s: url %q: want an absolute https URL", ErrMalformed, m.Version, m.URL)
		}
	}
	return nil
}

// version returns the parsed Version of a validated manifest.
func (m Manifest) version() Version {
	v, _ := ParseVersion(m.Version)
	return v
}

// Envelope is the signed form of a manifest as it travels and is stored.
type Envelope struct {
	// Manifest holds the exact manifest JSON bytes that were signed
	// (base64 in JSON).
	Manifest []byte `json:"manifest"`
	// Signatures holds one signature per release key that signed.
	Signatures []Signature `json:"signatures"`
}

// Signature is one Ed25519 signature of an envelope's manifest bytes.
type Signature struct {
	// KeyID names the signing key (signed.KeyID: the same identifier as
	// the HQ keys of the signed envelope).
	KeyID string `json:"key_id"`
	// Sig is the 64-byte Ed25519 signature (base64 in JSON).
	Sig []byte `json:"sig"`
}

// Sign validates m, encodes it and signs the bytes with every key. The
// result is the envelope's JSON encoding.
func Sign(m Manifest, keys ...ed25519.PrivateKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("sign manifest: no release key")
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.Version, err)
	}
	env := Envelope{Manifest: body}
	for _, k := range keys {
		env.Signatures = append(env.Signatures, Signature{
			KeyID: signed.KeyID(k.Public().(ed25519.PublicKey)),
			Sig:   ed25519.Sign(k, signedBytes(body)),
		})
	}
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode envelope of %s: %w", m.Version, err)
	}
	return append(out, '\n'), nil
}

func signedBytes(body []byte) []byte {
	return append([]byte(signingContext), body...)
}

// ParseEnvelope decodes a signed envelope without verifying it. Errors wrap
// ErrMalformed.
func ParseEnvelope(data []byte) (Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return Envelope{}, fmt.Errorf("%w: envelope of %d bytes, at most %d", ErrMalformed, len(data), MaxEnvelopeSize)
	}
	var env Envelope
	if err := strictUnmarshal(data, &env); err != nil {
		return Envelope{}, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	if len(env.Manifest) == 0 {
		return Envelope{}, fmt.Errorf("%w: envelope without manifest", ErrMalformed)
	}
	if len(env.Signatures) == 0 || len(env.Signatures) > MaxSignatures {
		return Envelope{}, fmt.Errorf("%w: envelope with %d signatures, want 1..%d", ErrMalformed, len(env.Signatures), MaxSignatures)
	}
	for i, s := range env.Signatures {
		if len(s.Sig) != ed25519.SignatureSize {
			return Envelope{}, fmt.Errorf("%w: envelope signature %d (key %q): %d bytes, want %d", ErrMalformed, i, s.KeyID, len(s.Sig), ed25519.SignatureSize)
		}
	}
	return env, nil
}

// strictUnmarshal decodes one JSON value, refusing unknown fields and
// trailing data: a field this device does not understand may be a
// constraint it would otherwise ignore.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// Verifier checks envelopes against the release public keys a device pins.
// More than one key may be pinned so that keys can be rotated: a new key is
// pinned by a release signed with the old one, then releases are signed
// with the new key, then the old key is unpinned.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier returns a Verifier that trusts keys. It needs at least one.
func NewVerifier(keys ...ed25519.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no release public key pinned", ErrMalformed)
	}
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for i, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: release public key %d: %d bytes, want %d", ErrMalformed, i, len(k), ed25519.PublicKeySize)
		}
		v.keys[signed.KeyID(k)] = slices.Clone(k)
	}
	return v, nil
}

// Verify parses data as an envelope, checks that at least one signature by
// a pinned key verifies, then decodes and validates the manifest. It does
// not apply the device's policy (see Policy.Check).
func (v *Verifier) Verify(data []byte) (Manifest, error) {
	env, err := ParseEnvelope(data)
	if err != nil {
		return Manifest{}, err
	}
	ok := false
	for _, s := range env.Signatures {
		if k, pinned := v.keys[s.KeyID]; pinned && ed25519.Verify(k, signedBytes(env.Manifest), s.Sig) {
			ok = true
			break
		}
	}
	if !ok {
		ids := make([]string, len(env.Signatures))
		for i, s := range env.Signatures {
			ids[i] = s.KeyID
		}
		return Manifest{}, fmt.Errorf("verify envelope signed by keys %v: %w", ids, ErrBadSignature)
	}
	var m Manifest
	if err := strictUnmarshal(env.Manifest, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: signed manifest: %w", ErrMalformed, err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// parseLegacyPublicKey decodes a release public key in the base64 text of
// the first releases (see keys.go). Surrounding white space is ignored.
// Errors wrap ErrMalformed.
func parseLegacyPublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: release public key %.16q: want PEM, or base64 of %d bytes", ErrMalformed, s, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// parseLegacyPrivateKey decodes a release private key in the base64 seed
// text of the first releases (see keys.go). Errors wrap ErrMalformed and
// never quote the key.
func parseLegacyPrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: release private key: want PEM, or base64 of a %d-byte seed", ErrMalformed, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(b), nil
}
