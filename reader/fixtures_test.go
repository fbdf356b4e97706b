package reader_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader/jpkitest"
)

// The fixtures in testdata/ are made by TestGenerateFixtures with
// -update-fixtures (keys are random, so regenerating changes every file).
// All of them are judged at fixtureNow.
var updateFixtures = flag.Bool("update-fixtures", false, "regenerate the certificate fixtures in testdata/")

var fixtureNow = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

func date(y int) time.Time { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC) }

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// fixtureCert reads a DER or PEM certificate fixture.
func fixtureCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	b := readFixture(t, name)
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		t.Fatalf("parse fixture %s: %v", name, err)
	}
	return c
}

func TestGenerateFixtures(t *testing.T) {
	if !*updateFixtures {
		t.Skip("run with -update-fixtures to regenerate testdata/")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	gen1, err := jpkitest.NewCA("", date(2014), date(2040))
	must(err)
	gen2, err := jpkitest.NewCA("", date(2023), date(2045))
	must(err)
	other, err := jpkitest.NewCA("", date(2014), date(2040))
	must(err)
	expiredCA, err := jpkitest.NewCA("expired generation", date(2000), date(2020))
	must(err)
	key, err := jpkitest.NewKey()
	must(err)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	must(err)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)

	write := func(name string, data []byte) {
		t.Helper()
		must(os.WriteFile(filepath.Join("testdata", name), data, 0o644))
	}
	pemOf := func(der ...[]byte) []byte {
		var out []byte
		for _, d := range der {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
		}
		return out
	}
	issue := func(name string, ca *jpkitest.CA, serial uint32, from, to time.Time) {
		t.Helper()
		der, err := ca.IssueAuthCert(serial, from, to, key)
		must(err)
		write(name, der)
	}
	// variant issues a gen1 certificate from a modified template.
	variant := func(name string, serial uint32, pub any, edit func(*x509.Certificate)) {
		t.Helper()
		tmpl, err := gen1.AuthTemplate(serial, date(2020), date(2030))
		must(err)
		edit(tmpl)
		der, err := gen1.Issue(tmpl, pub)
		must(err)
		write(name, der)
	}

	write("ca-gen1.pem", pemOf(gen1.DER))
	write("ca-gen2.der", gen2.DER)
	write("ca-other.pem", pemOf(other.DER))
	write("ca-expired.pem", pemOf(expiredCA.DER))
	write("anchors-both.pem", pemOf(gen1.DER, gen2.DER))
	write("anchors-both.der", append(append([]byte(nil), gen1.DER...), gen2.DER...))

	issue("auth-gen1.der", gen1, 0x1A2B3C4D, date(2020), date(2030))
	issue("auth-gen2.der", gen2, 0x2B3C4D5E, date(2024), date(2029))
	issue("auth-expired.der", gen1, 0x10000003, date(2015), date(2020))
	issue("auth-notyet.der", gen1, 0x10000004, date(2031), date(2036))
	issue("auth-other.der", other, 0x10000005, date(2020), date(2030))
	issue("auth-by-expired-ca.der", expiredCA, 0x10000006, date(2018), date(2030))

	noAKI := *gen1
	noAKICert := *gen1.Cert
	noAKICert.SubjectKeyId = nil
	noAKI.Cert = &noAKICert
	tmpl, err := gen1.AuthTemplate(0x00ABCDEF, date(2020), date(2030))
	must(err)
	der, err := noAKI.Issue(tmpl, &key.PublicKey)
	must(err)
	write("auth-noaki.der", der)

	signPolicy, err := asn1.Marshal([]struct{ Policy asn1.ObjectIdentifier }{{asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 1, 1, 20}}})
	must(err)
	variant("auth-nopolicy.der", 0x10000010, &key.PublicKey, func(c *x509.Certificate) {
		c.ExtraExtensions = c.ExtraExtensions[1:] // drop certificate policies
	})
	variant("auth-signpolicy.der", 0x10000011, &key.PublicKey, func(c *x509.Certificate) {
		c.ExtraExtensions[0].Value = signPolicy
	})
	variant("auth-keyusage.der", 0x10000012, &key.PublicKey, func(c *x509.Certificate) {
		c.KeyUsage = x509.KeyUsageKeyEncipherment
	})
	variant("auth-ecdsa.der", 0x10000013, &ec.PublicKey, func(*x509.Certificate) {})
	variant("auth-rsa1024.der", 0x10000014, &small.PublicKey, func(*x509.Certificate) {})
	variant("auth-ca.der", 0x10000015, &key.PublicKey, func(c *x509.Certificate) {
		c.BasicConstraintsValid, c.IsCA = true, true
	})
}
