package reader_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader"
)

// sentinels are the errors Identify and Verify classify failures with.
var sentinels = []error{
	reader.ErrCardRemoved, reader.ErrNotMyNumberCard, reader.ErrUntrustedIssuer,
	reader.ErrExpired, reader.ErrNotYetValid, reader.ErrBadCertificate, reader.ErrCardResponse,
	reader.ErrPINWrong, reader.ErrPINNearlyBlocked, reader.ErrPINBlocked, reader.ErrPINTimeout,
	reader.ErrPINCancelled, reader.ErrPINFormat, reader.ErrSignature, reader.ErrCardTimeout,
	reader.ErrFreeAreaNotFound, reader.ErrFreeAreaData,
}

// matchedSentinels returns the sentinels err matches.
func matchedSentinels(err error) []error {
	var got []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			got = append(got, s)
		}
	}
	return got
}

// bothGenerations returns a verifier trusting the gen1 and gen2 fixture CAs
// (which share one subject name) and the CA whose validity ended in 2020.
func bothGenerations(t testing.TB) *reader.Verifier {
	t.Helper()
	v, err := reader.NewVerifier([]*x509.Certificate{
		fixtureCert(t, "ca-gen1.pem"), fixtureCert(t, "ca-gen2.der"), fixtureCert(t, "ca-expired.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	v := bothGenerations(t)
	tests := []struct {
		file       string
		now        time.Time
		wantErr    error
		wantSerial uint64
	}{
		{"auth-gen1.der", fixtureNow, nil, 0x1A2B3C4D},
		{"auth-gen2.der", fixtureNow, nil, 0x2B3C4D5E},
		{"auth-noaki.der", fixtureNow, nil, 0xABCDEF},
		{"auth-gen1.der", date(2020), nil, 0x1A2B3C4D}, // first instant of validity
		{"auth-gen1.der", date(2020).Add(-time.Second), reader.ErrNotYetValid, 0x1A2B3C4D},
		{"auth-gen1.der", date(2030), nil, 0x1A2B3C4D}, // last instant of validity
		{"auth-gen1.der", date(2030).Add(time.Second), reader.ErrExpired, 0x1A2B3C4D},
		{"auth-expired.der", fixtureNow, reader.ErrExpired, 0x10000003},
		{"auth-notyet.der", fixtureNow, reader.ErrNotYetValid, 0x10000004},
		{"auth-by-expired-ca.der", fixtureNow, reader.ErrExpired, 0x10000006}, // leaf valid, anchor expired
		{"auth-other.der", fixtureNow, reader.ErrUntrustedIssuer, 0},          // same issuer name, other key
		{"auth-nopolicy.der", fixtureNow, reader.ErrBadCertificate, 0},
		{"auth-signpolicy.der", fixtureNow, reader.ErrBadCertificate, 0},
		{"auth-keyusage.der", fixtureNow, reader.ErrBadCertificate, 0},
		{"auth-ecdsa.der", fixtureNow, reader.ErrBadCertificate, 0},
		{"auth-rsa1024.der", fixtureNow, reader.ErrBadCertificate, 0},
		{"auth-ca.der", fixtureNow, reader.ErrBadCertificate, 0},
		{"ca-gen2.der", fixtureNow, reader.ErrBadCertificate, 0}, // a CA certificate is no auth certificate
	}
	for _, tt := range tests {
		t.Run(tt.file+"@"+tt.now.Format(time.DateTime), func(t *testing.T) {
			cert, err := v.Verify(readFixture(t, tt.file), tt.now)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			if got := matchedSentinels(err); tt.wantErr != nil && (len(got) != 1 || got[0] != tt.wantErr) {
				t.Fatalf("Verify() error = %v, matches %v, want exactly %v", err, got, tt.wantErr)
			}
			if tt.wantSerial == 0 {
				if cert != nil {
					t.Errorf("Verify() returned a certificate with error %v", err)
				}
				return
			}
			if cert == nil || cert.SerialNumber.Uint64() != tt.wantSerial {
				t.Fatalf("Verify() cert = %v, want serial %X", cert, tt.wantSerial)
			}
			if err != nil && strings.Contains(err.Error(), cert.NotAfter.Format("2006")) {
				t.Errorf("error %q mentions the notAfter year", err)
			}
		})
	}
}

func TestVerifyGarbage(t *testing.T) {
	v := bothGenerations(t)
	good := readFixture(t, "auth-gen1.der")
	flipped := bytes.Clone(good)
	flipped[len(flipped)-10] ^= 0x01 // break the signature
	tests := map[string]struct {
		der  []byte
		want error
	}{
		"empty":            {nil, reader.ErrBadCertificate},
		"not DER":          {[]byte("hello"), reader.ErrBadCertificate},
		"truncated":        {good[:len(good)-1], reader.ErrBadCertificate},
		"trailing data":    {append(bytes.Clone(good), 0x00), reader.ErrBadCertificate},
		"oversize":         {make([]byte, reader.MaxCertificateSize+1), reader.ErrBadCertificate},
		"broken signature": {flipped, reader.ErrUntrustedIssuer},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cert, err := v.Verify(tt.der, fixtureNow)
			if !errors.Is(err, tt.want) || cert != nil {
				t.Fatalf("Verify() = %v, %v, want nil, %v", cert, err, tt.want)
			}
		})
	}
}

func TestVerifyOnlyConfiguredGeneration(t *testing.T) {
	v, err := reader.NewVerifier([]*x509.Certificate{fixtureCert(t, "ca-gen1.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(readFixture(t, "auth-gen1.der"), fixtureNow); err != nil {
		t.Fatalf("gen1 certificate: %v", err)
	}
	if _, err := v.Verify(readFixture(t, "auth-gen2.der"), fixtureNow); !errors.Is(err, reader.ErrUntrustedIssuer) {
		t.Fatalf("gen2 certificate with only gen1 trusted: %v, want ErrUntrustedIssuer", err)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	tests := map[string][]*x509.Certificate{
		"empty":  nil,
		"nil":    {nil},
		"not CA": {fixtureCert(t, "auth-gen1.der")},
	}
	for name, anchors := range tests {
		t.Run(name, func(t *testing.T) {
			if v, err := reader.NewVerifier(anchors); err == nil {
				t.Fatalf("NewVerifier() = %v, want error", v)
			}
		})
	}
}

func TestLoadTrustAnchors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gen1 := fixtureCert(t, "ca-gen1.pem")
	gen2 := fixtureCert(t, "ca-gen2.der")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
	tests := []struct {
		name    string
		paths   []string
		want    []*x509.Certificate
		wantErr string // substring; "" for success
	}{
		{"one PEM", []string{"testdata/ca-gen1.pem"}, []*x509.Certificate{gen1}, ""},
		{"one DER", []string{"testdata/ca-gen2.der"}, []*x509.Certificate{gen2}, ""},
		{"PEM bundle", []string{"testdata/anchors-both.pem"}, []*x509.Certificate{gen1, gen2}, ""},
		{"DER concatenation", []string{"testdata/anchors-both.der"}, []*x509.Certificate{gen1, gen2}, ""},
		{"two files", []string{"testdata/ca-gen1.pem", "testdata/ca-gen2.der"}, []*x509.Certificate{gen1, gen2}, ""},
		{"no paths", nil, nil, "no files given"},
		{"missing file", []string{filepath.Join(dir, "nope.pem")}, nil, "nope.pem"},
		{"garbage DER", []string{write("garbage.der", []byte("garbage"))}, nil, "garbage.der"},
		{"empty file", []string{write("empty.der", nil)}, nil, "empty.der"},
		{"PEM with a key", []string{write("key.pem", append(readFixture(t, "ca-gen1.pem"), keyPEM...))}, nil, `key.pem: PEM block 2 is "PRIVATE KEY"`},
		{"PEM without blocks", []string{write("broken.pem", []byte("-----BEGIN nothing"))}, nil, "broken.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reader.LoadTrustAnchors(tt.paths...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadTrustAnchors() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadTrustAnchors() error = %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d certificates, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Errorf("certificate %d = %s, want %s", i, got[i].Subject, tt.want[i].Subject)
				}
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	for _, name := range []string{"auth-gen1.der", "auth-noaki.der", "auth-ecdsa.der", "auth-expired.der"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x30, 0x00})
	v := bothGenerations(f)
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := v.Verify(der, fixtureNow)
		if err == nil {
			if cert == nil {
				t.Fatal("nil certificate without error")
			}
			return
		}
		if got := matchedSentinels(err); len(got) != 1 {
			t.Fatalf("error %v matches %d sentinels, want 1", err, len(got))
		}
		if cert != nil && !errors.Is(err, reader.ErrExpired) && !errors.Is(err, reader.ErrNotYetValid) {
			t.Fatalf("certificate returned with error %v", err)
		}
	})
}
