package signed_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tobira-ac/tobira/internal/signed"
)

// fixedKey returns a deterministic key pair for seed byte b.
func fixedKey(b byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = b
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return priv.Public().(ed25519.PublicKey), priv
}

// tamper decodes env, applies f and re-encodes it.
func tamper(t *testing.T, env []byte, f func(e *signed.Envelope)) []byte {
	t.Helper()
	var e signed.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	f(&e)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpen(t *testing.T) {
	pubA, privA := fixedKey(1)
	pubB, privB := fixedKey(2)
	_, privC := fixedKey(3) // not pinned
	v, err := signed.NewVerifier(pubA, pubB)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"action":"unlock"}`)
	good, err := signed.Sign("command", payload, privA)
	if err != nil {
		t.Fatal(err)
	}
	byB, _ := signed.Sign("command", payload, privB)
	byC, _ := signed.Sign("command", payload, privC)
	other, _ := signed.Sign("snapshot", payload, privA)

	tests := []struct {
		name    string
		env     []byte
		wantErr error
		wantKey string
	}{
		{"first pinned key", good, nil, signed.KeyID(pubA)},
		{"second pinned key (rotation)", byB, nil, signed.KeyID(pubB)},
		{"unpinned key", byC, signed.ErrUnknownKey, ""},
		{"other kind", other, signed.ErrWrongKind, ""},
		{"kind relabelled", tamper(t, other, func(e *signed.Envelope) { e.Kind = "command" }), signed.ErrBadSignature, ""},
		{"payload altered", tamper(t, good, func(e *signed.Envelope) { e.Payload = []byte(`{"action":"lockdown"}`) }), signed.ErrBadSignature, ""},
		{"signature flipped", tamper(t, good, func(e *signed.Envelope) { e.Sig[0] ^= 1 }), signed.ErrBadSignature, ""},
		{"key ID swapped", tamper(t, good, func(e *signed.Envelope) { e.Key = signed.KeyID(pubB) }), signed.ErrBadSignature, ""},
		{"signature short", tamper(t, good, func(e *signed.Envelope) { e.Sig = e.Sig[:10] }), signed.ErrMalformed, ""},
		{"no payload", tamper(t, good, func(e *signed.Envelope) { e.Payload = nil }), signed.ErrMalformed, ""},
		{"not JSON", []byte("garbage"), signed.ErrMalformed, ""},
		{"too big", make([]byte, signed.MaxEnvelope+1), signed.ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, key, err := v.Open("command", tt.env)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (string(got) != string(payload) || key != tt.wantKey) {
				t.Fatalf("Open = %q by %s, want %q by %s", got, key, payload, tt.wantKey)
			}
		})
	}
}

func TestEnvelopeFixture(t *testing.T) {
	// testdata/command.env was signed by fixedKey(1); it pins the format.
	pub, priv := fixedKey(1)
	b, err := os.ReadFile("testdata/command.env")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := signed.NewVerifier(pub)
	payload, _, err := v.Open("command", b)
	if err != nil {
		t.Fatalf("fixture does not open: %v", err)
	}
	again, err := signed.Sign("command", payload, priv)
	if err != nil {
		t.Fatal(err)
	}
	if string(again)+"\n" != string(b) {
		t.Fatalf("signing the fixture's payload again gives\n%s\nwant\n%s", again, b)
	}
}

func TestNewVerifierRefusesNoKeys(t *testing.T) {
	if _, err := signed.NewVerifier(); !errors.Is(err, signed.ErrNoKeys) {
		t.Fatalf("NewVerifier() = %v, want ErrNoKeys", err)
	}
	if _, err := signed.NewVerifier(ed25519.PublicKey{1, 2}); err == nil {
		t.Fatal("NewVerifier accepted a 2-byte key")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "hq.key"), filepath.Join(dir, "hq.pub")
	wantPub, k, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := signed.WriteKeyPair(priv, pub, k); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if err := signed.WriteKeyPair(priv, pub, k); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second WriteKeyPair = %v, want ErrExist", err)
	}
	gotPriv, err := signed.ReadPrivateKey(priv)
	if err != nil || !gotPriv.Equal(k) {
		t.Fatalf("ReadPrivateKey = %v; want the written key", err)
	}
	gotPub, err := signed.ReadPublicKey(pub)
	if err != nil || !gotPub.Equal(wantPub) {
		t.Fatalf("ReadPublicKey = %v; want the written key", err)
	}
	if _, err := signed.ReadPublicKey(priv); !errors.Is(err, signed.ErrBadKeyFile) {
		t.Fatalf("ReadPublicKey(private key file) = %v, want ErrBadKeyFile", err)
	}
}

func FuzzOpen(f *testing.F) {
	pub, priv := fixedKey(1)
	good, _ := signed.Sign("command", []byte(`{"a":1}`), priv)
	f.Add(good)
	f.Add([]byte(`{"kind":"command","key":"x","payload":"","sig":""}`))
	f.Add([]byte(`null`))
	v, _ := signed.NewVerifier(pub)
	f.Fuzz(func(t *testing.T, env []byte) {
		payload, key, err := v.Open("command", env)
		if err != nil {
			if payload != nil || key != "" {
				t.Fatalf("Open failed (%v) but returned payload or key", err)
			}
			return
		}
		// Whatever opens must have been signed by the pinned key: it
		// re-signs to the same signature (Ed25519 is deterministic).
		again, err := signed.Sign("command", payload, priv)
		if err != nil {
			t.Fatal(err)
		}
		var a, b signed.Envelope
		json.Unmarshal(again, &a)
		json.Unmarshal(env, &b)
		if string(a.Sig) != string(b.Sig) || key != signed.KeyID(pub) {
			t.Fatalf("Open accepted a signature the pinned key did not make")
		}
	})
}
