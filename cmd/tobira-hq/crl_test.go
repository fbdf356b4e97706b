package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader/jpkitest"
)

// TestCRLImportTwiceSaysZeroNew imports one CRL twice with the CLI: the
// second import reports "(0 new)" (it printed "-1 new"), and a newer CRL
// with one more serial "(1 new)".
func TestCRLImportTwiceSaysZeroNew(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := jpkitest.NewCA("crl", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	caFile := writeCSV(t, dir, "ca.der", string(ca.DER))
	crl := func(name string, this time.Time, serials ...int64) string {
		var entries []x509.RevocationListEntry
		for _, s := range serials {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: this})
		}
		b, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: this,
			NextUpdate: now.Add(time.Hour), RevokedCertificateEntries: entries}, ca.Cert, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return writeCSV(t, dir, name, string(b))
	}
	first := crl("a.crl", now.Add(-time.Minute), 5, 6, 7)
	reg := filepath.Join(dir, "registry.db")
	for _, tt := range []struct{ file, want string }{
		{first, "3 serials (3 new)"},
		{first, "3 serials (0 new)"},
		{crl("b.crl", now.Add(-time.Second), 5, 6, 7, 9), "4 serials (1 new)"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"crl", "import", "--registry", reg, "--site", "s1", "--crl", tt.file, "--ca", caFile}, &out, &out); err != nil {
			t.Fatalf("crl import %s: %v\n%s", tt.file, err, &out)
		}
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("crl import %s printed %q, want %q", filepath.Base(tt.file), out.String(), tt.want)
		}
	}
}
