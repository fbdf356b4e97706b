package jpkitest

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Kit is a ready-made set of test PKI for bring-up, demos and tests: two
// trusted CA generations, an untrusted CA with the same name, and card
// certificates that cover the usual outcomes. All card certificates share
// one key.
type Kit struct {
	// CA is the CA to configure as trust anchor.
	CA *CA
	// Gen2 is a second, newer CA generation with the same name, trusted
	// alongside CA (JPKI runs several generations at once).
	Gen2 *CA
	// Other is a CA that is not meant to be trusted; its name is the same as
	// CA's, so only the signature tells them apart.
	Other *CA
	// CardKey is the key of every card certificate.
	CardKey *rsa.PrivateKey
	// Cards are the card certificates, in a fixed order.
	Cards []KitCard
}

// KitCard is one card certificate of a Kit.
type KitCard struct {
	// Name is the file stem, e.g. "card-1".
	Name string
	// Serial is the certificate serial.
	Serial uint32
	// DER is the certificate.
	DER []byte
	// Outcome says what a verifier trusting Kit.CA and Kit.Gen2 must
	// conclude at the kit's reference time: "valid", "expired",
	// "not-yet-valid" or "untrusted".
	Outcome string
}

// NewKit makes a Kit whose certificates are judged relative to now: valid
// cards from a year before to four years after (two from CA, one from
// Gen2), one expired a year ago, one valid from a year on, and one issued
// by the untrusted CA.
func NewKit(now time.Time) (*Kit, error) {
	year := 365 * 24 * time.Hour
	ca, err := NewCA("", now.Add(-10*year), now.Add(20*year))
	if err != nil {
		return nil, fmt.Errorf("new kit: %w", err)
	}
	gen2, err := NewCA("", now.Add(-2*year), now.Add(25*year))
	if err != nil {
		return nil, fmt.Errorf("new kit: %w", err)
	}
	other, err := NewCA("", now.Add(-10*year), now.Add(20*year))
	if err != nil {
		return nil, fmt.Errorf("new kit: %w", err)
	}
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("new kit: %w", err)
	}
	k := &Kit{CA: ca, Gen2: gen2, Other: other, CardKey: key}
	specs := []struct {
		name     string
		serial   uint32
		issuer   *CA
		from, to time.Time
		outcome  string
	}{
		{"card-1", 0x10000001, ca, now.Add(-year), now.Add(4 * year), "valid"},
		{"card-2", 0x10000002, ca, now.Add(-year), now.Add(4 * year), "valid"},
		{"card-gen2", 0x10000006, gen2, now.Add(-year), now.Add(4 * year), "valid"},
		{"card-expired", 0x10000003, ca, now.Add(-6 * year), now.Add(-year), "expired"},
		{"card-not-yet-valid", 0x10000004, ca, now.Add(year), now.Add(6 * year), "not-yet-valid"},
		{"card-untrusted", 0x10000005, other, now.Add(-year), now.Add(4 * year), "untrusted"},
	}
	for _, s := range specs {
		der, err := s.issuer.IssueAuthCert(s.serial, s.from, s.to, key)
		if err != nil {
			return nil, fmt.Errorf("new kit: %s: %w", s.name, err)
		}
		k.Cards = append(k.Cards, KitCard{Name: s.name, Serial: s.serial, DER: der, Outcome: s.outcome})
	}
	return k, nil
}

// Card returns the kit card with the given name, or false.
func (k *Kit) Card(name string) (KitCard, bool) {
	for _, c := range k.Cards {
		if c.Name == name {
			return c, true
		}
	}
	return KitCard{}, false
}

// WriteDir writes the kit into dir (created if needed) and returns the
// paths written: ca.der and ca-gen2.der (the two generations), ca.pem (the
// trust anchors: both generations), other-ca.pem, card-key.pem (the cards'
// test key, PKCS #8, for a simulated card that signs) and <card>.der for
// each card.
func (k *Kit) WriteDir(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("write kit: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(k.CardKey)
	if err != nil {
		return nil, fmt.Errorf("write kit: marshal card key: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"ca.der", k.CA.DER},
		{"ca-gen2.der", k.Gen2.DER},
		{"ca.pem", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.CA.DER}),
			pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Gen2.DER})...)},
		{"other-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Other.DER})},
		{"card-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
	}
	for _, c := range k.Cards {
		files = append(files, struct {
			name string
			data []byte
		}{c.Name + ".der", c.DER})
	}
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("write kit: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
