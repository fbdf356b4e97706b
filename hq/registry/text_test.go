package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// TestControlCharactersRefused imports person and credential IDs holding
// NUL, newlines and other control characters, by CSV (the error names
// file:line: column) and by Apply, the path of enroll and approve (the
// error names the field). Nothing is stored.
func TestControlCharactersRefused(t *testing.T) { eachBackend(t, testControlCharactersRefused) }

func testControlCharactersRefused(t *testing.T, open opener) {
	ctx := context.Background()
	csvTests := []struct {
		name, table, text, want string
	}{
		{"NUL in a person", "people", "person,groups\np-1,staff\np\x002,staff\n", "people.csv:3: person: cell \"p\\x002\" has control character U+0000 at byte 1"},
		{"newline in a person", "people", "person\n\"p-1\nforged: line\"\n", "people.csv:2: person: cell \"p-1\\nforged: line\" has control character U+000A at byte 3"},
		{"escape in a group", "people", "person,groups\np-1,\x1b[2Jstaff\n", "people.csv:2: groups: cell \"\\x1b[2Jstaff\" has control character U+001B"},
		{"CR in a free-area ID", "credentials", "type,free_area_id,person\nfreearea,\"T-1\r\",p-1\n", "credentials.csv:2: free_area_id: cell \"T-1\\r\" has control character U+000D"},
		{"line separator in a ticket's person", "credentials", "type,free_area_id,person\nfreearea,T-1,p\u20281\n", `credentials.csv:2: person: cell "p\u20281" has control character U+2028`},
	}
	for _, tt := range csvTests {
		t.Run(tt.name, func(t *testing.T) {
			r := open(t)
			_, err := r.ImportCSV(ctx, "v", tt.table, tt.table+".csv", strings.NewReader(tt.text))
			if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("import = %v, want ErrInvalid containing %q", err, tt.want)
			}
			if rev, _ := r.Revision("v"); rev != 0 {
				t.Errorf("revision %d after a refused import, want 0", rev)
			}
		})
	}
	applyTests := []struct {
		name string
		item policy.Item
		want string
	}{
		{"person ID", policy.Person{ID: "p\n1"}, `person "p\n1" has control character U+000A`},
		{"person of an enrolled credential", policy.Entry{Credential: cert(7), Person: "p\x001"}, `person "p\x001" has control character U+0000`},
		{"free-area ID", policy.Entry{Credential: credential.Credential{Kind: credential.KindFreeArea, ID: "T\x7f1"}, Person: "p"}, `free-area ID "T\x7f1" has control character U+007F`},
		{"event of a ticket", policy.Entry{Credential: cert(8), Person: "p", Event: "e\t1"}, `event ID "e\t1" has control character U+0009`},
		{"group", policy.Person{ID: "p", Groups: []string{"g\u0085"}}, `group ID "g\u0085" has control character U+0085`},
	}
	for _, tt := range applyTests {
		t.Run(tt.name, func(t *testing.T) {
			r := open(t)
			_, err := r.Apply(ctx, "v", registry.Change{Put: []policy.Item{tt.item}})
			if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply = %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
}
