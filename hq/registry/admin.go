package registry

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// Pending is an enrollment record that arrived from a device and waits for
// an admin's approval. Record is opaque here (the JSON of
// reader.EnrollmentRecord, see docs/PROTOCOL.md); it holds the certificate,
// whose notAfter hints at the holder's birthday: it stays in the registry
// file and is never logged.
type Pending struct {
	// ID is the registry's ID of the pending enrollment (16 hex digits).
	ID string `json:"id"`
	// Site and Device name the device that made it.
	Site string `json:"site"`
	// Device is the device's name.
	Device string `json:"device"`
	// Seq is the device's enrollment sequence number.
	Seq uint64 `json:"seq"`
	// Received is when HQ stored it.
	Received time.Time `json:"received"`
	// Record is the enrollment record as the device sent it.
	Record json.RawMessage `json:"record"`
}

// AddPending stores an enrollment for approval and returns its ID. The same
// (site, device, seq) stored again (a device re-sending after a lost
// acknowledgement) returns the first ID and stores nothing.
func (r *Registry) AddPending(p Pending) (string, error) {
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	p.ID = hex.EncodeToString(raw[:])
	id, err := r.b.AddPending(context.Background(), p)
	if err != nil {
		return "", fmt.Errorf("store pending enrollment from %s/%s seq %d in %s: %w", p.Site, p.Device, p.Seq, r.name, err)
	}
	return id, nil
}

// PendingList returns the pending enrollments, ordered by ID.
func (r *Registry) PendingList() ([]Pending, error) {
	out, err := r.b.PendingList(context.Background())
	if err != nil {
		return nil, fmt.Errorf("list pending enrollments in %s: %w", r.name, err)
	}
	return out, nil
}

// PendingByID returns one pending enrollment (ErrNotFound when absent).
func (r *Registry) PendingByID(id string) (Pending, error) {
	p, err := r.b.PendingByID(context.Background(), id)
	if err != nil {
		return Pending{}, fmt.Errorf("read pending enrollment %s from %s: %w", id, r.name, err)
	}
	return p, nil
}

// DeletePending removes a pending enrollment (rejected, or approved).
func (r *Registry) DeletePending(id string) error {
	err := r.b.DeletePending(context.Background(), id)
	if err != nil {
		return fmt.Errorf("delete pending enrollment %s from %s: %w", id, r.name, err)
	}
	return nil
}

// Revoke revokes a certificate at the site: it adds the revocation and
// removes the certificate's allowlist entry (when there is one), in one
// revision.
func (r *Registry) Revoke(ctx context.Context, site string, c policy.CertRef) (Applied, error) {
	entry := policy.Entry{Credential: credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: c.IssuerKeyID, Serial: c.Serial}}
	a, err := r.Apply(ctx, site, Change{
		Put:    []policy.Item{policy.Revocation(c)},
		Delete: []policy.Item{entry},
	})
	if err != nil {
		return Applied{}, fmt.Errorf("revoke %x/%x: %w", c.IssuerKeyID, c.Serial, err)
	}
	return a, nil
}

// Errors of ImportCRL.
var (
	// ErrCRLSignature means the CRL does not parse or does not verify with
	// the given CA certificate.
	ErrCRLSignature = errors.New("CRL signature does not verify")
	// ErrCRLTime means now is before the CRL's thisUpdate or after its
	// nextUpdate.
	ErrCRLTime = errors.New("CRL is not current")
)

// CRLImport reports what ImportCRL did.
type CRLImport struct {
	// IssuerKeyID is the key ID the serials were revoked under (the CRL's
	// authority key ID, else the CA's subject key ID).
	IssuerKeyID []byte
	// Serials counts the CRL's entries.
	Serials int
	// ThisUpdate is the CRL's thisUpdate, now the site's RevocationsAt.
	ThisUpdate time.Time
	// New counts the revocations the site did not hold before (0 when the
	// same CRL is imported again).
	New int
	// Applied is the registry change (its Put counts the site record too
	// when RevocationsAt changed).
	Applied Applied
}

// ImportCRL imports an X.509 CRL (DER) signed by ca into the site's
// revocations: it verifies the signature and that now lies between
// thisUpdate and nextUpdate, adds a Revocation for every listed serial
// (under the CRL's authority key ID) and sets the site's RevocationsAt to
// thisUpdate, so that devices judge the revocation data's age from it. The
// revocations go to devices with the next snapshot; devices can also import
// a CRL file themselves (policy.Store.ImportCRL).
func (r *Registry) ImportCRL(ctx context.Context, site string, der []byte, ca *x509.Certificate, now time.Time) (CRLImport, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return CRLImport{}, fmt.Errorf("import CRL into site %s: %w: parse: %w", site, ErrCRLSignature, err)
	}
	if err := rl.CheckSignatureFrom(ca); err != nil {
		return CRLImport{}, fmt.Errorf("import CRL of %s into site %s: %w: %w", ca.Subject, site, ErrCRLSignature, err)
	}
	if now.Before(rl.ThisUpdate) || (!rl.NextUpdate.IsZero() && now.After(rl.NextUpdate)) {
		return CRLImport{}, fmt.Errorf("import CRL of %s into site %s: %w: thisUpdate %s, nextUpdate %s, now %s", ca.Subject, site,
			ErrCRLTime, rl.ThisUpdate.Format(time.RFC3339), rl.NextUpdate.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	kid := rl.AuthorityKeyId
	if len(kid) == 0 {
		kid = ca.SubjectKeyId
	}
	out := CRLImport{IssuerKeyID: kid, Serials: len(rl.RevokedCertificateEntries), ThisUpdate: rl.ThisUpdate.UTC()}
	ch := Change{Put: make([]policy.Item, 0, len(rl.RevokedCertificateEntries)+1)}
	seen := make(map[string]bool, len(rl.RevokedCertificateEntries))
	for i, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber == nil || e.SerialNumber.Sign() <= 0 {
			return CRLImport{}, fmt.Errorf("import CRL into site %s: %w: entry %d has a serial that is not positive", site, ErrInvalid, i)
		}
		s := e.SerialNumber.Bytes()
		if seen[string(s)] {
			continue
		}
		seen[string(s)] = true
		ch.Put = append(ch.Put, policy.Revocation{IssuerKeyID: kid, Serial: s})
	}
	st := policy.Site{}
	it, ok, err := r.Get(site, policy.Site{})
	if err != nil {
		return CRLImport{}, err
	}
	if ok {
		st = it.(policy.Site)
	}
	siteChanged := !ok || !st.RevocationsAt.Equal(out.ThisUpdate)
	st.RevocationsAt = out.ThisUpdate
	ch.Put = append(ch.Put, st)
	if out.Applied, err = r.Apply(ctx, site, ch); err != nil {
		return CRLImport{}, fmt.Errorf("import CRL of %s into site %s: %w", ca.Subject, site, err)
	}
	out.New = out.Applied.Put
	if siteChanged {
		out.New--
	}
	return out, nil
}
