package firmware

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"

	"github.com/tobira-ac/tobira/internal/signed"
)

// Release keys are written in one format, the PEM files of every tobira
// signing key (signed.WriteKeyPair: PKCS #8 for the secret half, PKIX for
// the public half), by `tobira-release release keygen` and
// `tobira-hq keygen` alike. The first releases wrote base64 text (the
// public key's 32 bytes, the private key's 32-byte seed); such files are
// still read, so that pinned keys and offline release keys keep working.

// ReadPublicKey reads a release public key file: PEM, or the base64 text
// of the first releases.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read release public key: %w", err)
	}
	if isPEM(b) {
		return signed.ReadPublicKey(path)
	}
	k, err := parseLegacyPublicKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("release public key %s: %w", path, err)
	}
	return k, nil
}

// ReadPrivateKey reads a release private key file: PEM, or the base64
// seed text of the first releases.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read release key: %w", err)
	}
	if isPEM(b) {
		return signed.ReadPrivateKey(path)
	}
	k, err := parseLegacyPrivateKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("release key %s: %w", path, err)
	}
	return k, nil
}

// ReadVerifier builds a Verifier from release public key files (at least
// one: NewVerifier refuses none).
func ReadVerifier(paths ...string) (*Verifier, error) {
	keys := make([]ed25519.PublicKey, 0, len(paths))
	for _, p := range paths {
		k, err := ReadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return NewVerifier(keys...)
}

// isPEM reports whether a key file is PEM rather than base64 text.
func isPEM(b []byte) bool { return bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN ")) }
