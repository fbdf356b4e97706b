package firmware

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRefusalReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("check release 1.0.0: %w", ErrWrongArch), RefusedWrongArch},
		{fmt.Errorf("check: %w", fmt.Errorf("verify: %w", ErrBadSignature)), RefusedBadSignature},
		{fmt.Errorf("activate: %w: door lobby open", ErrBusy), RefusedBusy},
		{fmt.Errorf("%w: %w", ErrMalformed, errors.New("bad json")), RefusedMalformed},
		{errors.New("disk full"), RefusedOther},
	}
	for _, tc := range tests {
		if got := RefusalReason(tc.err); got != tc.want {
			t.Errorf("RefusalReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	for _, r := range reasonOf { // every sentinel has its own code
		if got := RefusalReason(fmt.Errorf("x: %w", r.err)); got != r.reason {
			t.Errorf("%v maps to %q, want %q", r.err, got, r.reason)
		}
	}
}

func TestPeekManifest(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := Manifest{Version: "1.2.3", Arch: "linux/arm64", Size: 10, SHA256: strings.Repeat("ab", 32), Issued: now, Expires: now.Add(time.Hour)}
	env, err := Sign(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PeekManifest(env)
	if err != nil || got.Version != m.Version || got.SHA256 != m.SHA256 || got.Size != m.Size {
		t.Fatalf("PeekManifest = %+v, %v", got, err)
	}
	if _, err := PeekManifest([]byte(`{"manifest":"e30=","signatures":[]}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("envelope without signatures: %v, want ErrMalformed", err)
	}
}
