package policy

import (
	"context"
	"testing"
	"time"
)

func TestFreshness(t *testing.T) {
	s, _ := openStore(t)
	f, err := s.Freshness()
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 0 || !f.TrustedTime.IsZero() || len(f.CRLs) != 0 || f.RevocationsStale(baseTime) {
		t.Fatalf("empty store: Freshness() = %+v", f)
	}
	revAt := baseTime.Add(-48 * time.Hour)
	mustApply(t, s, Snapshot{Version: 3, Site: &Site{RevocationsAt: revAt, MaxRevocationAge: 72 * time.Hour}})
	s.TrustTime(baseTime)
	ca := newTestCA(t, 9)
	next := baseTime.Add(7 * 24 * time.Hour)
	if _, err := s.ImportCRL(context.Background(), ca.crl(t, 1, baseTime.Add(-time.Hour), next, 0x10), ca.cert, baseTime); err != nil {
		t.Fatal(err)
	}
	if f, err = s.Freshness(); err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || !f.RevocationsAt.Equal(revAt) || f.MaxRevocationAge != 72*time.Hour || !f.TrustedTime.Equal(baseTime) {
		t.Fatalf("Freshness() = %+v", f)
	}
	if len(f.CRLs) != 1 || string(f.CRLs[0].IssuerKeyID) != string(keyID(9)) || !f.CRLs[0].NextUpdate.Equal(next.Truncate(time.Second)) {
		t.Fatalf("Freshness().CRLs = %+v", f.CRLs)
	}
	for _, tt := range []struct {
		now   time.Time
		stale bool
	}{{baseTime, false}, {revAt.Add(72 * time.Hour), false}, {revAt.Add(73 * time.Hour), true}} {
		if got := f.RevocationsStale(tt.now); got != tt.stale {
			t.Errorf("RevocationsStale(%v) = %t, want %t", tt.now, got, tt.stale)
		}
	}
}
