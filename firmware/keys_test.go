package firmware

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tobira-ac/tobira/internal/signed"
)

// TestReadKeys reads release keys in the PEM format keygen writes and in
// the base64 text of the first releases, and refuses anything else.
func TestReadKeys(t *testing.T) {
	dir := t.TempDir()
	priv := testKey("release")
	pub := priv.Public().(ed25519.PublicKey)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemKey, pemPub := filepath.Join(dir, "pem.key"), filepath.Join(dir, "pem.pub")
	if err := signed.WriteKeyPair(pemKey, pemPub, priv); err != nil {
		t.Fatal(err)
	}
	legacyKey := write("legacy.key", base64.StdEncoding.EncodeToString(priv.Seed())+"\n")
	legacyPub := write("legacy.pub", base64.StdEncoding.EncodeToString(pub)+"\n")
	for _, tt := range []struct {
		name, key, pub string
	}{{"pem", pemKey, pemPub}, {"legacy base64", legacyKey, legacyPub}} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ReadPrivateKey(tt.key)
			if err != nil || !k.Equal(priv) {
				t.Errorf("ReadPrivateKey(%s) = %v; want the key", tt.key, err)
			}
			p, err := ReadPublicKey(tt.pub)
			if err != nil || !p.Equal(pub) {
				t.Errorf("ReadPublicKey(%s) = %v; want the key", tt.pub, err)
			}
		})
	}
	v, err := ReadVerifier(pemPub, legacyPub)
	if err != nil {
		t.Fatal(err)
	}
	env, err := Sign(manifestForBytes("1.0.0", []byte("bin")), priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(env); err != nil {
		t.Errorf("verifier from both formats refuses the key's manifest: %v", err)
	}

	for _, tt := range []struct {
		name string
		read func(string) error
		path string
		want error
	}{
		{"public key as private", func(p string) error { _, err := ReadPrivateKey(p); return err }, pemPub, signed.ErrBadKeyFile},
		{"private key as public", func(p string) error { _, err := ReadPublicKey(p); return err }, pemKey, signed.ErrBadKeyFile},
		{"short base64", func(p string) error { _, err := ReadPublicKey(p); return err }, write("short.pub", "AAAA\n"), ErrMalformed},
		{"not a key", func(p string) error { _, err := ReadPrivateKey(p); return err }, write("junk.key", "hello"), ErrMalformed},
		{"missing", func(p string) error { _, err := ReadPublicKey(p); return err }, filepath.Join(dir, "none.pub"), os.ErrNotExist},
		{"no keys", func(string) error { _, err := ReadVerifier(); return err }, "", ErrMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.read(tt.path); !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}
