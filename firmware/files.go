package firmware

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
)

// Release files on an admin's machine: a binary, the signed manifest
// envelope of it (RELEASE.json), and a release store of published
// versions (store/<version>/{release.json,tobira}).

// SignFile signs a release of binary: m gets the binary's size and
// SHA-256, is signed with every key, and the envelope is written to out.
// It returns the manifest as signed.
func SignFile(out, binary string, m Manifest, keys ...ed25519.PrivateKey) (Manifest, error) {
	var err error
	if m.Size, m.SHA256, err = binaryDigest(binary); err != nil {
		return Manifest{}, err
	}
	env, err := Sign(m, keys...)
	if err != nil {
		return Manifest{}, err
	}
	if err := writeFileAtomic(out, env, 0o644); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// VerifyFile verifies the envelope at envPath with v and, when binary is
// not empty, the binary against its manifest (ErrHashMismatch).
func VerifyFile(v *Verifier, envPath, binary string) (Manifest, error) {
	data, err := os.ReadFile(envPath)
	if err != nil {
		return Manifest{}, fmt.Errorf("read release manifest: %w", err)
	}
	m, err := v.Verify(data)
	if err != nil {
		return Manifest{}, fmt.Errorf("release manifest %s: %w", envPath, err)
	}
	if binary == "" {
		return m, nil
	}
	size, sum, err := binaryDigest(binary)
	if err != nil {
		return Manifest{}, err
	}
	if size != m.Size || sum != m.SHA256 {
		return Manifest{}, fmt.Errorf("%w: %s: %d bytes sha256 %s, manifest %s says %d bytes sha256 %s",
			ErrHashMismatch, binary, size, sum, m.Version, m.Size, m.SHA256)
	}
	return m, nil
}

// binaryDigest returns the size and the hex SHA-256 of a release binary.
func binaryDigest(path string) (int64, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, "", fmt.Errorf("release binary: %w", err)
	}
	sum, err := fileSHA256(path)
	return fi.Size(), sum, err
}

// Publish copies a verified release (VerifyFile) into
// store/<version>/{release.json,tobira} and returns that directory.
func Publish(store string, m Manifest, envPath, binary string) (string, error) {
	dir := filepath.Join(store, m.Version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create release store %s: %w", dir, err)
	}
	for _, f := range []struct{ src, dst string }{{binary, BinaryName}, {envPath, "release.json"}} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return "", fmt.Errorf("publish %s: %w", m.Version, err)
		}
		if err := writeFileAtomic(filepath.Join(dir, f.dst), data, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}
