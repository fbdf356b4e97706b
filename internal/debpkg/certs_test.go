package debpkg

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader/jpkitest"
)

// standInFiles are the files the shipped example configuration names and
// an installer adds by hand (docs/DEPLOYMENT.md, "Configure"): the JPKI CA,
// HQ's CA and the device's TLS certificate and key. The test makes
// stand-ins so that check-config can pass.
var standInFiles = []string{
	"/etc/tobira/trust/jpki-auth-ca.pem",
	"/etc/tobira/tls/hq-ca.pem",
	"/etc/tobira/tls/device.pem",
	"/etc/tobira/tls/device.key",
}

// writeStandIns writes the files of standInFiles under prefix (a root, or
// a directory the example's /etc/tobira paths were moved to): one CA from
// the project's JPKI test kit stands in for both the JPKI CA and HQ's CA.
func writeStandIns(t *testing.T, prefix string) {
	t.Helper()
	now := time.Now()
	ca, err := jpkitest.NewCA("stand-in", now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	devKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	devDER, err := ca.Issue(&x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "stand-in device"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, &devKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(devKey)
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string][]byte{
		"jpki-auth-ca.pem": pemBlock("CERTIFICATE", ca.DER),
		"hq-ca.pem":        pemBlock("CERTIFICATE", ca.DER),
		"device.pem":       pemBlock("CERTIFICATE", devDER),
		"device.key":       pemBlock("PRIVATE KEY", keyDER),
	}
	for _, f := range standInFiles {
		p := filepath.Join(prefix, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(f, ".key") {
			mode = 0o640
		}
		if err := os.WriteFile(p, contents[filepath.Base(f)], mode); err != nil {
			t.Fatal(err)
		}
	}
}

// pemBlock encodes der as one PEM block of type typ.
func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
