package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
)

// testCA is a CA that signs CRLs.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB, kid byte) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test JPKI CA"},
		NotBefore:             baseTime.AddDate(-1, 0, 0),
		NotAfter:              baseTime.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          keyID(kid),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: c, key: key}
}

// crl returns a CRL of serials valid from this to next.
func (ca testCA) crl(t testing.TB, number int64, this, next time.Time, serials ...int64) []byte {
	t.Helper()
	entries := make([]x509.RevocationListEntry, 0, len(serials))
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: this})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: this, NextUpdate: next, RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestImportCRL(t *testing.T) {
	ca := newTestCA(t, 1)
	other := newTestCA(t, 1)
	this, next := at(7, 0, 0), at(9, 0, 0)
	now := at(7, 10, 0)
	tests := []struct {
		name string
		der  []byte
		ca   testCA
		now  time.Time
		want error
	}{
		{"signed by another key", ca.crl(t, 1, this, next, 0xB0), other, now, ErrCRLSignature},
		{"garbage", []byte("not a CRL"), ca, now, ErrCRLSignature},
		{"not yet valid", ca.crl(t, 1, this, next, 0xB0), ca, at(6, 23, 0), ErrCRLNotYetValid},
		{"expired", ca.crl(t, 1, this, next, 0xB0), ca, at(9, 0, 1), ErrCRLExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openSite(t, Options{})
			_, err := s.ImportCRL(context.Background(), tt.der, tt.ca.cert, tt.now)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "Test JPKI CA") {
				t.Fatalf("ImportCRL = %v, want %v naming the CA", err, tt.want)
			}
			if d := s.DecideAt(Request{Credential: cert(1, 0xB0), Door: "hall-in", Now: now}); d.Reason != ReasonEnrolled {
				t.Errorf("after a refused CRL, DecideAt = %+v", d)
			}
		})
	}

	t.Run("import, replace, stale", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "policy.db")
		s, err := OpenWithOptions(path, Options{Log: discard})
		if err != nil {
			t.Fatal(err)
		}
		applyItems(t, s, 1, siteItems())
		info, err := s.ImportCRL(context.Background(), ca.crl(t, 1, this, next, 0xB0, 0xD0, 0x7777), ca.cert, now)
		if err != nil {
			t.Fatal(err)
		}
		if info.Serials != 3 || !info.NextUpdate.Equal(next) {
			t.Errorf("CRLInfo = %+v", info)
		}
		bob := Request{Credential: cert(1, 0xB0), Door: "hall-in", Now: now}
		if d := s.DecideAt(bob); d.Reason != ReasonRevoked {
			t.Errorf("revoked by the CRL: DecideAt = %+v", d)
		}
		if d := s.Decide(cert(1, 0xB0)); d.Reason != ReasonRevoked {
			t.Errorf("revoked by the CRL: Decide = %+v", d)
		}
		// A CRL survives a full snapshot swap and a reopen.
		applyItems(t, s, 2, siteItems())
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = OpenWithOptions(path, Options{Log: discard}); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if d := s.DecideAt(bob); d.Reason != ReasonRevoked {
			t.Errorf("after swap and reopen: DecideAt = %+v", d)
		}
		if _, err := s.ImportCRL(context.Background(), ca.crl(t, 0, this.Add(-time.Hour), next, 0xB0), ca.cert, now); !errors.Is(err, ErrCRLOlder) {
			t.Errorf("an older CRL: %v, want ErrCRLOlder", err)
		}
		// The next CRL no longer lists bob: the old set is replaced.
		if _, err := s.ImportCRL(context.Background(), ca.crl(t, 2, this.Add(time.Hour), next, 0xD0), ca.cert, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		bob.Now = now.Add(time.Hour)
		if d := s.DecideAt(bob); d.Reason != ReasonEnrolled {
			t.Errorf("after the new CRL: DecideAt = %+v", d)
		}
		bob.Now = next.Add(time.Minute)
		if d := s.DecideAt(bob); d.Reason != ReasonRevocationsStale {
			t.Errorf("CRL past nextUpdate: DecideAt = %+v, want %s", d, ReasonRevocationsStale)
		}
	})
}

func TestBreakGlassAndCorruptStore(t *testing.T) {
	master := BreakGlass{Credential: freeArea("MASTER-1"), Label: "fire brigade"}
	lost := BreakGlass{Credential: cert(1, 0xF0), Label: "lost master card"}
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("garbage ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenWithOptions(path, Options{Log: discard, BreakGlass: []BreakGlass{master, lost}})
	if err != nil {
		t.Fatalf("OpenWithOptions on a corrupt file: %v", err)
	}
	defer s.Close()
	rec := s.Recoveries()
	if len(rec) != 1 || rec[0].Path != path || !errors.Is(rec[0].Err, ErrCorrupt) || !strings.HasPrefix(rec[0].MovedTo, path+".corrupt-") {
		t.Fatalf("Recoveries = %+v, want policy.db moved aside as corrupt", rec)
	}
	if b, err := os.ReadFile(rec[0].MovedTo); err != nil || !strings.HasPrefix(string(b), "garbage") {
		t.Errorf("the corrupt file was not kept: %v", err)
	}
	now := at(7, 10, 0)
	runStepsVersion := func(name string, req Request, want Reason) {
		t.Helper()
		if d := s.DecideAt(req); d.Reason != want {
			t.Errorf("%s: DecideAt = %+v, want %s", name, d, want)
		}
	}
	runStepsVersion("break-glass on an empty store", Request{Credential: master.Credential, Door: "any", Now: now}, ReasonBreakGlass)
	runStepsVersion("anyone else on an empty store", Request{Credential: cert(1, 0xA1), Door: "front", Now: now}, ReasonUnknownDoor)
	applyItems(t, s, 1, siteItems())
	runStepsVersion("break-glass at a locked door", Request{Credential: master.Credential, Door: "front", Now: at(7, 3, 0)}, ReasonBreakGlass)
	runStepsVersion("revoked break-glass", Request{Credential: lost.Credential, Door: "front", Now: at(7, 3, 0)}, ReasonRevoked)
	if d := s.DecideAt(Request{Credential: master.Credential, Door: "front", Now: now}); d.Person != "fire brigade" || !d.Granted {
		t.Errorf("break-glass decision = %+v, want the label as person", d)
	}
	// With the store closed (unreadable), break-glass still opens.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := s.DecideAt(Request{Credential: master.Credential, Door: "front", Now: now}); d.Reason != ReasonBreakGlass {
		t.Errorf("break-glass on an unreadable store = %+v", d)
	}
	if d := s.DecideAt(Request{Credential: cert(1, 0xA1), Door: "front", Now: now}); d.Reason != ReasonStoreUnavailable {
		t.Errorf("others on an unreadable store = %+v", d)
	}
	if _, err := OpenWithOptions(filepath.Join(dir, "x.db"), Options{BreakGlass: []BreakGlass{{Credential: credential.Credential{Kind: 9}}}}); err == nil {
		t.Error("an invalid break-glass credential was accepted")
	}
}
