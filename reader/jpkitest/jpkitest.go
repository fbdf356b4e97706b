// Package jpkitest makes test PKI in the shape of JPKI: a user-authentication
// CA with the JPKI issuer name and user-authentication certificates with the
// profile seen on real My Number Cards. Tests, the demo and the card
// simulator use it so that the same verification code runs as with a real
// card. Nothing here is secret or fit for production.
package jpkitest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// KeyBits is the RSA modulus size of every key made here (as on real cards).
const KeyBits = 2048

// CA is a test user-authentication CA.
type CA struct {
	// Cert is the parsed self-signed CA certificate.
	Cert *x509.Certificate
	// DER is the CA certificate's encoding.
	DER []byte
	// Key is the CA's private key.
	Key *rsa.PrivateKey
}

// Object identifiers of the JPKI profile.
var (
	oidCertificatePolicies = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidCRLDistribution     = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidCPSQualifier        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 2, 1}

	// OIDUserAuthentication is the JPKI user-authentication certificate
	// policy.
	OIDUserAuthentication = asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 1, 3, 30}
)

// IssuerName returns the JPKI user-authentication issuer name: C=JP, O=JPKI,
// OU=JPKI for user authentication, OU=Japan Agency for Local Authority
// Information Systems, plus OU=<tag> when tag is not empty. Each OU is an
// RDN of its own, as on real certificates.
func IssuerName(tag string) pkix.Name {
	ou := []string{"JPKI for user authentication", "Japan Agency for Local Authority Information Systems"}
	if tag != "" {
		ou = append(ou, tag)
	}
	return separateRDNs([]string{"JP"}, []string{"JPKI"}, ou, "")
}

var (
	oidOrganizationalUnit = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidCommonName         = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// separateRDNs returns a name C, O, OU..., CN in which every attribute is
// its own RDN (pkix.Name would put several OUs in one multi-valued RDN).
func separateRDNs(c, o, ou []string, cn string) pkix.Name {
	n := pkix.Name{Country: c, Organization: o}
	for _, u := range ou {
		n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: oidOrganizationalUnit, Value: u})
	}
	if cn != "" {
		n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: oidCommonName, Value: cn})
	}
	return n
}

// NewKey generates an RSA key of KeyBits bits. Key generation is slow
// (hundreds of milliseconds): reuse keys across certificates in tests.
func NewKey() (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate RSA-%d key: %w", KeyBits, err)
	}
	return k, nil
}

// NewCA makes a self-signed CA with a fresh key and the JPKI issuer shape
// (see IssuerName; name is the generation tag, "" for the exact real name,
// which several generations share). Its SubjectKeyId is the 20-byte SHA-1 of
// its public key.
func NewCA(name string, notBefore, notAfter time.Time) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", name, err)
	}
	return NewCAWithKey(name, notBefore, notAfter, key)
}

// NewCAWithKey is NewCA with a given key.
func NewCAWithKey(name string, notBefore, notAfter time.Time, key *rsa.PrivateKey) (*CA, error) {
	if key == nil {
		return nil, fmt.Errorf("new CA %q: nil key", name)
	}
	ski, err := KeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               IssuerName(name),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: create certificate: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: parse own certificate: %w", name, err)
	}
	return &CA{Cert: cert, DER: der, Key: key}, nil
}

// KeyID returns the SHA-1 of the subjectPublicKey bits of pub (RFC 5280
// 4.2.1.2 method 1): 20 bytes.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	spkiDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spkiDER, &spki); err != nil {
		return nil, fmt.Errorf("parse public key info: %w", err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// SubjectID returns the 23-character opaque subject CN used for a test
// certificate with the given serial.
func SubjectID(serial uint32) string { return fmt.Sprintf("TOBIRATEST%013d", serial) }

// AuthTemplate returns the template of a user-authentication certificate
// with the JPKI profile: v3, subject C=JP CN=SubjectID(serial), key usage
// digitalSignature (critical), extended key usage clientAuth, the critical
// certificate policy 1.2.392.200149.8.5.1.3.30 with a CPS pointer, a CRL
// distribution point given as a directory name, and OCSP and CA issuer
// URLs. Tests may alter it before calling Issue, to make certificates that
// break the profile.
func (ca *CA) AuthTemplate(serial uint32, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	policies, err := asn1.Marshal([]policyInformation{{
		Policy:     OIDUserAuthentication,
		Qualifiers: []policyQualifier{{ID: oidCPSQualifier, CPS: "http://www.jpki.test/cps/userauth.html"}},
	}})
	if err != nil {
		return nil, fmt.Errorf("marshal certificate policies: %w", err)
	}
	crldp, err := directoryNameCRLDP(serial)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          new(big.Int).SetUint64(uint64(serial)),
		Subject:               pkix.Name{Country: []string{"JP"}, CommonName: SubjectID(serial)},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: false,
		SignatureAlgorithm:    x509.SHA256WithRSA,
		OCSPServer:            []string{"http://ocsp.jpki.test/userauth/ocsp"},
		IssuingCertificateURL: []string{"http://www.jpki.test/userauth/ca.cer"},
		ExtraExtensions: []pkix.Extension{
			{Id: oidCertificatePolicies, Critical: true, Value: policies},
			{Id: oidCRLDistribution, Value: crldp},
		},
	}, nil
}

// policyInformation is RFC 5280's PolicyInformation (fields exported for
// encoding/asn1).
type policyInformation struct {
	Policy     asn1.ObjectIdentifier
	Qualifiers []policyQualifier `asn1:"optional"`
}

// policyQualifier is a CPS-pointer PolicyQualifierInfo.
type policyQualifier struct {
	ID  asn1.ObjectIdentifier
	CPS string `asn1:"ia5"`
}

// directoryNameCRLDP encodes a CRL distribution point whose full name is a
// directory name partitioned by municipality, as on real cards.
func directoryNameCRLDP(serial uint32) ([]byte, error) {
	name := separateRDNs([]string{"JP"}, []string{"JPKI"},
		[]string{"JPKI for user authentication", "CRL Distribution Points", fmt.Sprintf("Municipality %04d", serial%1000)},
		"Test City")
	rdn, err := asn1.Marshal(name.ToRDNSequence())
	if err != nil {
		return nil, fmt.Errorf("marshal CRL distribution point name: %w", err)
	}
	// DistributionPoint ::= SEQUENCE { distributionPoint [0] { fullName [0]
	// GeneralNames { directoryName [4] Name } } }
	dirName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: rdn}
	fullName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(dirName)}
	dpName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(fullName)}
	dp := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: mustMarshal(dpName)}
	out, err := asn1.Marshal([]asn1.RawValue{dp})
	if err != nil {
		return nil, fmt.Errorf("marshal CRL distribution points: %w", err)
	}
	return out, nil
}

func mustMarshal(v asn1.RawValue) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal raw ASN.1 value: %v", err)) // cannot happen for a RawValue
	}
	return b
}

// Issue signs tmpl for pub with the CA and returns the DER certificate. The
// certificate's authority key ID is the CA's SubjectKeyId; to issue one
// without it, clear ca.Cert.SubjectKeyId on a copy of the CA.
func (ca *CA) Issue(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	if tmpl == nil || pub == nil {
		return nil, errors.New("issue certificate: nil template or public key")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate serial %v: %w", tmpl.SerialNumber, err)
	}
	return der, nil
}

// IssueAuthCert issues a user-authentication certificate with the JPKI
// profile (see AuthTemplate) for key, and returns its DER. key may be nil to
// generate one, but key generation is slow: tests should reuse one key.
func (ca *CA) IssueAuthCert(serial uint32, notBefore, notAfter time.Time, key *rsa.PrivateKey) ([]byte, error) {
	if key == nil {
		var err error
		if key, err = NewKey(); err != nil {
			return nil, fmt.Errorf("issue auth certificate serial %d: %w", serial, err)
		}
	}
	tmpl, err := ca.AuthTemplate(serial, notBefore, notAfter)
	if err != nil {
		return nil, fmt.Errorf("issue auth certificate serial %d: %w", serial, err)
	}
	return ca.Issue(tmpl, &key.PublicKey)
}
