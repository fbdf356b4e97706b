package jpkitest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var (
	t0  = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	day = 24 * time.Hour
)

func TestNewCA(t *testing.T) {
	ca, err := NewCA("", t0.Add(-day), t0.Add(365*day))
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("not a CA: IsCA %v, key usage %v", c.IsCA, c.KeyUsage)
	}
	checkRDNs(t, c.RawSubject, "JP", "JPKI", "JPKI for user authentication", "Japan Agency for Local Authority Information Systems")
	if !bytes.Equal(c.RawSubject, c.RawIssuer) {
		t.Error("CA is not self-signed")
	}
	kid, err := KeyID(&ca.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SubjectKeyId) != 20 || !bytes.Equal(c.SubjectKeyId, kid) {
		t.Errorf("SubjectKeyId = %X, want SHA-1 of the key %X", c.SubjectKeyId, kid)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("self-signature: %v", err)
	}

	tagged, err := NewCAWithKey("2023", t0, t0.Add(day), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	checkRDNs(t, tagged.Cert.RawSubject, "JP", "JPKI", "JPKI for user authentication", "Japan Agency for Local Authority Information Systems", "2023")
}

// checkRDNs checks that a DER name holds exactly the given values in order,
// each in an RDN of its own (as real JPKI names are encoded).
func checkRDNs(t *testing.T, raw []byte, values ...string) {
	t.Helper()
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(raw, &rdns); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rdn := range rdns {
		if len(rdn) != 1 {
			t.Errorf("multi-valued RDN %v", rdn)
		}
		for _, atv := range rdn {
			got = append(got, fmt.Sprint(atv.Value))
		}
	}
	if !slices.Equal(got, values) {
		t.Errorf("name values = %q, want %q", got, values)
	}
}

func TestIssueAuthCert(t *testing.T) {
	ca, err := NewCA("", t0.Add(-day), t0.Add(3650*day))
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueAuthCert(0x1234ABCD, t0, t0.Add(365*day), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(der) < 1200 || len(der) > 1600 {
		t.Errorf("certificate is %d bytes, want a realistic 1200..1600", len(der))
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("signature: %v", err)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"version 3", c.Version == 3},
		{"4-byte serial", len(c.SerialNumber.Bytes()) == 4 && c.SerialNumber.Uint64() == 0x1234ABCD},
		{"SHA256WithRSA", c.SignatureAlgorithm == x509.SHA256WithRSA},
		{"RSA-2048 e=65537", c.PublicKey.(*rsa.PublicKey).N.BitLen() == 2048 && c.PublicKey.(*rsa.PublicKey).E == 65537},
		{"subject C=JP CN=<23 chars>", c.Subject.String() == "CN="+SubjectID(0x1234ABCD)+",C=JP" && len(SubjectID(0x1234ABCD)) == 23},
		{"key usage digitalSignature only", c.KeyUsage == x509.KeyUsageDigitalSignature},
		{"EKU clientAuth", len(c.ExtKeyUsage) == 1 && c.ExtKeyUsage[0] == x509.ExtKeyUsageClientAuth},
		{"not a CA", !c.IsCA},
		{"authority key ID = CA SKI", bytes.Equal(c.AuthorityKeyId, ca.Cert.SubjectKeyId)},
		{"issuer = CA subject", bytes.Equal(c.RawIssuer, ca.Cert.RawSubject)},
		{"validity", c.NotBefore.Equal(t0) && c.NotAfter.Equal(t0.Add(365*day))},
		{"no unhandled critical extension", len(c.UnhandledCriticalExtensions) == 0},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("profile: %s", ch.what)
		}
	}
	var policyCritical, keyUsageCritical bool
	for _, e := range c.Extensions {
		switch {
		case e.Id.Equal(oidCertificatePolicies):
			policyCritical = e.Critical
		case e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 15}):
			keyUsageCritical = e.Critical
		}
	}
	if !policyCritical || !keyUsageCritical {
		t.Errorf("critical: policies %v, key usage %v; want both", policyCritical, keyUsageCritical)
	}
	if len(c.PolicyIdentifiers) != 1 || !c.PolicyIdentifiers[0].Equal(OIDUserAuthentication) {
		t.Errorf("policies = %v, want %v", c.PolicyIdentifiers, OIDUserAuthentication)
	}
}

func TestKit(t *testing.T) {
	k, err := NewKit(t0)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(k.CA.Cert)
	for _, card := range k.Cards {
		c, err := x509.ParseCertificate(card.DER)
		if err != nil {
			t.Fatalf("%s: %v", card.Name, err)
		}
		signed := c.CheckSignatureFrom(k.CA.Cert) == nil || c.CheckSignatureFrom(k.Gen2.Cert) == nil
		inTime := !t0.Before(c.NotBefore) && !t0.After(c.NotAfter)
		var got string
		switch {
		case !signed:
			got = "untrusted"
		case t0.Before(c.NotBefore):
			got = "not-yet-valid"
		case !inTime:
			got = "expired"
		default:
			got = "valid"
		}
		if got != card.Outcome || c.SerialNumber.Uint64() != uint64(card.Serial) {
			t.Errorf("%s: outcome %s serial %X, kit says %s %X", card.Name, got, c.SerialNumber, card.Outcome, card.Serial)
		}
	}
	if _, ok := k.Card("card-1"); !ok {
		t.Error(`Card("card-1") not found`)
	}
	if _, ok := k.Card("nope"); ok {
		t.Error(`Card("nope") found`)
	}

	dir := filepath.Join(t.TempDir(), "pki")
	paths, err := k.WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 5+len(k.Cards) {
		t.Errorf("wrote %d files, want %d", len(paths), 5+len(k.Cards))
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(caPEM)
	if blk == nil || !bytes.Equal(blk.Bytes, k.CA.DER) {
		t.Error("ca.pem does not start with the CA")
	}
	if blk, _ = pem.Decode(rest); blk == nil || !bytes.Equal(blk.Bytes, k.Gen2.DER) {
		t.Error("ca.pem does not hold Gen2 after the CA")
	}
	if c, ok := k.Card("card-gen2"); !ok || c.Outcome != "valid" {
		t.Errorf(`Card("card-gen2") = %+v, %v; want a valid card`, c, ok)
	}
	card1, err := os.ReadFile(filepath.Join(dir, "card-1.der"))
	if err != nil || !bytes.Equal(card1, k.Cards[0].DER) {
		t.Errorf("card-1.der: %v", err)
	}
}
