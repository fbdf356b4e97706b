package reader

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
)

// PolicyUserAuthentication is the certificate policy OID that marks a JPKI
// user-authentication certificate (the signing certificate carries
// 1.2.392.200149.8.5.1.1.20 instead).
const PolicyUserAuthentication = "1.2.392.200149.8.5.1.3.30"

// minRSABits is the smallest RSA modulus accepted in a user-authentication
// certificate (real cards carry RSA-2048).
const minRSABits = 2048

var oidUserAuthentication = mustOID(PolicyUserAuthentication)

func mustOID(s string) x509.OID {
	oid, err := x509.ParseOID(s)
	if err != nil {
		panic(fmt.Sprintf("parse OID %q: %v", s, err))
	}
	return oid
}

// Verifier checks user-authentication certificates against a fixed set of
// trust anchors. Several anchors may be configured at once, because the
// JPKI user-authentication CA key has several generations that are valid
// side by side (they may even share one subject name). A Verifier is safe
// for concurrent use.
//
// A Verifier caches the certificates whose chain and profile it has
// verified, keyed by the SHA-256 of their DER, in a bounded LRU cache: a
// repeated tap of the same card skips parsing and RSA work, while the
// validity of the certificate and of its anchor is still checked against
// the time of each call.
type Verifier struct {
	anchors []anchor
	cache   *certCache // nil: no caching
}

// DefaultCacheSize is the number of verified certificates a Verifier keeps
// unless WithCacheSize says otherwise (about 2 KB each).
const DefaultCacheSize = 4096

// VerifierOption configures a Verifier made by NewVerifier.
type VerifierOption func(*Verifier)

// WithCacheSize sets the number of verified certificates kept in the
// Verifier's cache; 0 or less turns the cache off.
func WithCacheSize(n int) VerifierOption {
	return func(v *Verifier) {
		if n <= 0 {
			v.cache = nil
			return
		}
		v.cache = newCertCache(n)
	}
}

// CacheStats counts the lookups of a Verifier's certificate cache.
type CacheStats struct {
	// Hits is the number of verifications served from the cache.
	Hits uint64
	// Misses is the number of verifications that parsed and checked the
	// certificate.
	Misses uint64
	// Entries is the number of certificates cached now.
	Entries int
}

// CacheStats returns the cache counters (all zero when the cache is off).
func (v *Verifier) CacheStats() CacheStats {
	if v.cache == nil {
		return CacheStats{}
	}
	return v.cache.stats()
}

// anchor is one trust anchor with the key ID credentials use for it.
type anchor struct {
	cert *x509.Certificate
	// spkiKeyID is the SHA-1 of the anchor's subjectPublicKey bits (RFC 5280
	// 4.2.1.2 method 1), the issuer key ID of certificates that carry no
	// usable authority key ID.
	spkiKeyID []byte
}

// NewVerifier returns a Verifier trusting anchors, with a certificate cache
// of DefaultCacheSize entries unless an option says otherwise. It fails
// when the set is empty or holds a nil or non-CA certificate.
func NewVerifier(anchors []*x509.Certificate, opts ...VerifierOption) (*Verifier, error) {
	if len(anchors) == 0 {
		return nil, errors.New("new verifier: no trust anchors given")
	}
	v := &Verifier{anchors: make([]anchor, 0, len(anchors))}
	for i, c := range anchors {
		if c == nil {
			return nil, fmt.Errorf("new verifier: trust anchor %d is nil", i)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("new verifier: trust anchor %d (%s) is not a CA certificate", i, c.Subject)
		}
		kid, err := spkiKeyID(c.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("new verifier: trust anchor %d (%s): %w", i, c.Subject, err)
		}
		v.anchors = append(v.anchors, anchor{cert: c, spkiKeyID: kid})
	}
	v.cache = newCertCache(DefaultCacheSize)
	for _, o := range opts {
		o(v)
	}
	return v, nil
}

// spkiKeyID returns the SHA-1 of the subjectPublicKey BIT STRING of a DER
// SubjectPublicKeyInfo.
func spkiKeyID(rawSPKI []byte) ([]byte, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(rawSPKI, &spki)
	if err != nil {
		return nil, fmt.Errorf("parse subject public key info: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("parse subject public key info: %d trailing bytes", len(rest))
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}

// Verify parses der as an X.509 certificate and checks it at now: the JPKI
// user-authentication profile (ErrBadCertificate), a signature by one of
// the trust anchors (ErrUntrustedIssuer), then the validity of the
// certificate and of that anchor (ErrExpired, ErrNotYetValid). For
// ErrExpired and ErrNotYetValid the parsed certificate is returned with the
// error, because its chain was trusted; for every other error it is nil.
//
// The certificate's notAfter hints at the holder's birthday: Verify never
// puts it in an error message, and callers must not log it.
func (v *Verifier) Verify(der []byte, now time.Time) (*x509.Certificate, error) {
	cert, _, err := v.verify(der, now)
	return cert, err
}

// verify is Verify that also returns the issuer key ID of the credential.
// The returned certificate may be shared with other callers through the
// cache: it must not be modified.
func (v *Verifier) verify(der []byte, now time.Time) (*x509.Certificate, []byte, error) {
	if len(der) > MaxCertificateSize {
		return nil, nil, fmt.Errorf("%w: %d bytes exceed %d", ErrBadCertificate, len(der), MaxCertificateSize)
	}
	var key [sha256.Size]byte
	if v.cache != nil {
		key = sha256.Sum256(der)
		if e, ok := v.cache.get(key); ok {
			return checkTimes(e.cert, bytes.Clone(e.keyID), e.anchor, now)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: parse: %w", ErrBadCertificate, err)
	}
	if err := checkProfile(cert); err != nil {
		return nil, nil, err
	}
	a, err := v.issuer(cert)
	if err != nil {
		return nil, nil, err
	}
	keyID := cert.AuthorityKeyId
	if len(keyID) != credential.KeyIDLen {
		keyID = a.spkiKeyID
	}
	keyID = bytes.Clone(keyID)
	if v.cache != nil {
		v.cache.put(key, cacheEntry{cert: cert, keyID: bytes.Clone(keyID), anchor: a})
	}
	return checkTimes(cert, keyID, a, now)
}

// checkTimes checks the validity of a certificate whose chain is trusted,
// and of its anchor, at now.
func checkTimes(cert *x509.Certificate, keyID []byte, a *anchor, now time.Time) (*x509.Certificate, []byte, error) {
	switch {
	case now.Before(cert.NotBefore):
		return cert, keyID, fmt.Errorf("%w: certificate serial %X", ErrNotYetValid, cert.SerialNumber)
	case now.After(cert.NotAfter):
		return cert, keyID, fmt.Errorf("%w: certificate serial %X", ErrExpired, cert.SerialNumber)
	case now.Before(a.cert.NotBefore):
		return cert, keyID, fmt.Errorf("%w: issuing trust anchor %s (serial %X)", ErrNotYetValid, a.cert.Subject, a.cert.SerialNumber)
	case now.After(a.cert.NotAfter):
		return cert, keyID, fmt.Errorf("%w: issuing trust anchor %s (serial %X)", ErrExpired, a.cert.Subject, a.cert.SerialNumber)
	}
	return cert, keyID, nil
}

// checkProfile checks the JPKI user-authentication certificate profile.
func checkProfile(c *x509.Certificate) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadCertificate, fmt.Sprintf(format, args...))
	}
	if c.Version != 3 {
		return bad("X.509 version %d, want 3", c.Version)
	}
	if len(c.UnhandledCriticalExtensions) > 0 {
		return bad("unhandled critical extension %v", c.UnhandledCriticalExtensions[0])
	}
	if c.IsCA {
		return bad("certificate is a CA certificate")
	}
	if c.SerialNumber == nil || c.SerialNumber.Sign() <= 0 || len(c.SerialNumber.Bytes()) > credential.MaxSerialLen {
		return bad("serial must be positive and at most %d bytes", credential.MaxSerialLen)
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return bad("public key algorithm %v, want RSA", c.PublicKeyAlgorithm)
	}
	if n := pub.N.BitLen(); n < minRSABits {
		return bad("RSA key of %d bits, want at least %d", n, minRSABits)
	}
	if c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return bad("key usage lacks digitalSignature")
	}
	for _, p := range c.Policies {
		if p.Equal(oidUserAuthentication) {
			return nil
		}
	}
	return bad("certificate policy %s (user authentication) missing", PolicyUserAuthentication)
}

// issuer returns the trust anchor that signed c.
func (v *Verifier) issuer(c *x509.Certificate) (*anchor, error) {
	var sigErr error
	for i := range v.anchors {
		a := &v.anchors[i]
		if !bytes.Equal(a.cert.RawSubject, c.RawIssuer) {
			continue
		}
		if len(c.AuthorityKeyId) > 0 && len(a.cert.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, a.cert.SubjectKeyId) {
			continue
		}
		if err := c.CheckSignatureFrom(a.cert); err != nil {
			sigErr = err
			continue
		}
		return a, nil
	}
	if sigErr != nil {
		return nil, fmt.Errorf("%w: issuer %s: signature check: %w", ErrUntrustedIssuer, c.Issuer, sigErr)
	}
	return nil, fmt.Errorf("%w: no trust anchor matches issuer %s, authority key ID %X", ErrUntrustedIssuer, c.Issuer, c.AuthorityKeyId)
}

// LoadTrustAnchors reads trust anchor certificates from files. A file is
// either PEM holding one or more CERTIFICATE blocks (no other block types)
// or DER holding one or more concatenated certificates. Errors name the
// file. At least one path must be given and each file must hold at least
// one certificate.
func LoadTrustAnchors(paths ...string) ([]*x509.Certificate, error) {
	if len(paths) == 0 {
		return nil, errors.New("load trust anchors: no files given")
	}
	var certs []*x509.Certificate
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load trust anchors: %w", err)
		}
		got, err := parseAnchors(data)
		if err != nil {
			return nil, fmt.Errorf("load trust anchors from %s: %w", path, err)
		}
		certs = append(certs, got...)
	}
	return certs, nil
}

// parseAnchors parses the contents of one trust anchor file.
func parseAnchors(data []byte) ([]*x509.Certificate, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		certs, err := x509.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("parse DER: %w", err)
		}
		if len(certs) == 0 {
			return nil, errors.New("file holds no certificate")
		}
		return certs, nil
	}
	var certs []*x509.Certificate
	rest := data
	for i := 1; ; i++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", i, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PEM block %d: %w", i, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// parseForDisplay parses der without any check, for Inspect's report.
func parseForDisplay(der []byte) (*x509.Certificate, error) {
	if len(der) > MaxCertificateSize {
		return nil, fmt.Errorf("%w: %d bytes exceed %d", ErrBadCertificate, len(der), MaxCertificateSize)
	}
	return x509.ParseCertificate(der)
}
