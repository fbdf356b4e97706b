package policy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// TestReasonsDocumented checks that docs/REASONS.md has exactly one row per
// entry of Reasons, in the same order, with the right grant/deny column.
func TestReasonsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "REASONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (grant|deny) \\|")
	var names []Reason
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		r := Reason(m[1])
		names = append(names, r)
		if got := m[2] == "grant"; got != r.Granted() {
			t.Errorf("docs/REASONS.md says %q is %s, but Granted() = %v", r, m[2], r.Granted())
		}
	}
	if !slices.Equal(names, Reasons) {
		t.Errorf("docs/REASONS.md rows = %q, want policy.Reasons = %q", names, Reasons)
	}
}

func TestReasonsAreDistinct(t *testing.T) {
	seen := map[Reason]bool{}
	grants := 0
	for _, r := range Reasons {
		if seen[r] {
			t.Errorf("reason %q listed twice", r)
		}
		seen[r] = true
		if r.Granted() {
			grants++
		}
	}
	if grants != 8 || !ReasonEnrolled.Granted() || ReasonNotEnrolled.Granted() {
		t.Errorf("%d granting reasons, want the 8 documented grants", grants)
	}
}

func TestFlagsString(t *testing.T) {
	for _, tt := range []struct {
		f    Flags
		want string
	}{
		{0, ""},
		{FlagRenewed, "renewed"},
		{FlagRenewed | FlagClockUntrusted, "renewed,clock_untrusted"},
		{FlagStaleRevocations | 0x80, "stale_revocations,0x80"},
	} {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("Flags(%d).String() = %q, want %q", tt.f, got, tt.want)
		}
	}
}
