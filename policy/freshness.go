package policy

import (
	"slices"
	"strings"
	"time"
)

// Freshness is how current the store's data is, read without changing
// anything (TrustTime, by contrast, moves the trusted time forward): what
// `tobira doctor` checks before a controller goes live.
type Freshness struct {
	// Version is the snapshot's version (0: no snapshot yet).
	Version uint64
	// AppliedAt is when this process applied the snapshot, or opened the
	// store holding it (zero without a snapshot).
	AppliedAt time.Time
	// RevocationsAt is when HQ's revocation data in the snapshot was
	// current (Site.RevocationsAt; zero when the snapshot does not say).
	RevocationsAt time.Time
	// MaxRevocationAge is how old RevocationsAt may get before the
	// revocation data counts as stale (0: never stale by age).
	MaxRevocationAge time.Duration
	// TrustedTime is the last trusted time the store holds: a clock behind
	// it is not trusted (see TrustTime). Zero when none was recorded yet.
	TrustedTime time.Time
	// CRLs are the imported CRLs, by issuer key ID (hex), with their
	// nextUpdate: past it, a CRL is stale.
	CRLs []CRLFreshness
}

// CRLFreshness is one imported CRL's validity.
type CRLFreshness struct {
	// IssuerKeyID is the issuing CA's key ID.
	IssuerKeyID []byte
	// NextUpdate is the CRL's nextUpdate.
	NextUpdate time.Time
}

// RevocationsStale reports whether the snapshot's revocation data is older
// at now than the site allows: the rule DecideAt applies.
func (f Freshness) RevocationsStale(now time.Time) bool {
	r := rules{site: Site{RevocationsAt: f.RevocationsAt, MaxRevocationAge: f.MaxRevocationAge}}
	return r.revocationsStale(now)
}

// Freshness returns the snapshot's version, apply time and revocation data
// age, the trusted time and the imported CRLs' nextUpdate.
func (s *Store) Freshness() (Freshness, error) {
	v, err := s.Version()
	if err != nil {
		return Freshness{}, err
	}
	f := Freshness{Version: v}
	if r := s.rules.Load(); r != nil {
		f.RevocationsAt, f.MaxRevocationAge, f.AppliedAt = r.site.RevocationsAt, r.site.MaxRevocationAge, r.appliedAt
	}
	s.local.mu.Lock()
	f.TrustedTime = s.local.trusted
	s.local.mu.Unlock()
	s.local.crlMu.RLock()
	for kid, p := range s.local.crls {
		f.CRLs = append(f.CRLs, CRLFreshness{IssuerKeyID: []byte(kid), NextUpdate: p.nextUpdate})
	}
	s.local.crlMu.RUnlock()
	slices.SortFunc(f.CRLs, func(a, b CRLFreshness) int { return strings.Compare(string(a.IssuerKeyID), string(b.IssuerKeyID)) })
	return f, nil
}
