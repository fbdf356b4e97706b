package registry_test

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// credHex returns the hex key of the free-area credential id, as events
// carry it.
func credHex(t *testing.T, id string) string {
	t.Helper()
	k, err := credential.Credential{Kind: credential.KindFreeArea, ID: id}.Key()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k)
}

func TestPersonName(t *testing.T) { eachBackend(t, testPersonName) }

func testPersonName(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	a, err := r.Apply(ctx, "s", registry.Change{Put: []policy.Item{
		policy.Person{ID: "p-1"}, policy.Person{ID: "p-2"}, policy.Person{ID: "p-3"},
		freeEntry("card-1", "p-1"), freeEntry("card-2", "p-2"), freeEntry("card-3", "p-3"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetNames("s", map[string]string{"p-1": "山田 太郎", "p-2": "Suzuki Hanako"}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetNames("s", map[string]string{"p-2": ""}); err != nil { // forgotten
		t.Fatal(err)
	}
	if rev, err := r.Revision("s"); err != nil || rev != a.Rev {
		t.Errorf("names changed the revision: %d, %v; want %d", rev, err, a.Rev)
	}
	tests := []struct {
		name, site, cred string
		want             string
		wantErr          error
	}{
		{"named", "s", credHex(t, "card-1"), "山田 太郎", nil},
		{"upper-case hex", "s", strings.ToUpper(credHex(t, "card-1")), "山田 太郎", nil},
		{"name forgotten", "s", credHex(t, "card-2"), "", nil},
		{"person without a name", "s", credHex(t, "card-3"), "", nil},
		{"unknown credential", "s", credHex(t, "card-9"), "", nil},
		{"other site", "t", credHex(t, "card-1"), "", nil},
		{"not hex", "s", "zz", "", registry.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := r.PersonName(tt.site, tt.cred)
			if got != tt.want || ok != (tt.want != "") || !errors.Is(err, tt.wantErr) {
				t.Fatalf("PersonName = %q, %v, %v; want %q, error %v", got, ok, err, tt.want, tt.wantErr)
			}
			if n, ok := r.Name(tt.site, tt.cred); n != tt.want || ok != (tt.want != "") {
				t.Fatalf("Name = %q, %v; want %q", n, ok, tt.want)
			}
		})
	}
}

func TestSetNamesInvalid(t *testing.T) { eachBackend(t, testSetNamesInvalid) }

func testSetNamesInvalid(t *testing.T, open opener) {
	r := open(t)
	tests := []struct {
		name, site string
		names      map[string]string
	}{
		{"bad site", "a/b", map[string]string{"p": "x"}},
		{"empty person", "s", map[string]string{"": "x"}},
		{"long name", "s", map[string]string{"p": strings.Repeat("x", registry.MaxNameLen+1)}},
	}
	for _, tt := range tests {
		if err := r.SetNames(tt.site, tt.names); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.name, err)
		}
	}
}
