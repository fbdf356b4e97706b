package registry_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// freeEntry is the record of the free-area credential id of person.
func freeEntry(id, person string) policy.Entry {
	return policy.Entry{Credential: credential.Credential{Kind: credential.KindFreeArea, ID: id}, Person: person}
}

func TestPersonCredentials(t *testing.T) { eachBackend(t, testPersonCredentials) }

func testPersonCredentials(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	_, err := r.Apply(ctx, "s", registry.Change{Put: []policy.Item{
		policy.Person{ID: "p-1"}, policy.Person{ID: "p-2"}, policy.Person{ID: "p-<&>"}, policy.Person{ID: "p-none"},
		freeEntry("card-1", "p-1"), freeEntry("card-2", "p-2"), freeEntry("card-3", "p-1"), freeEntry("card-4", "p-1"),
		freeEntry("card-5", "p-<&>"), freeEntry("p-1", "p-2"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, "s", registry.Change{Delete: []policy.Item{freeEntry("card-4", "p-1")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, "t", registry.Change{Put: []policy.Item{policy.Person{ID: "p-1"}, freeEntry("card-9", "p-1")}}); err != nil {
		t.Fatal(err)
	}
	sorted := func(ids ...string) []string {
		var out []string
		for _, id := range ids {
			out = append(out, credHex(t, id))
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		name, site, person string
		want               []string
		wantErr            error
	}{
		{"several, one deleted", "s", "p-1", sorted("card-1", "card-3"), nil},
		{"a credential named like another person", "s", "p-2", sorted("card-2", "p-1"), nil},
		{"escaped in JSON", "s", "p-<&>", sorted("card-5"), nil},
		{"no credential", "s", "p-none", nil, nil},
		{"unknown person", "s", "p-9", nil, nil},
		{"other site", "t", "p-1", sorted("card-9"), nil},
		{"unknown site", "u", "p-1", nil, nil},
		{"bad site", "a/b", "p-1", nil, registry.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.PersonCredentials(ctx, tt.site, tt.person)
			if !slices.Equal(got, tt.want) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("PersonCredentials = %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
