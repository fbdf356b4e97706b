package console

import (
	"encoding/csv"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// cardHex is the hex key of the free-area credential id, as events name
// it.
func cardHex(t *testing.T, id string) string {
	t.Helper()
	k, err := credential.Credential{Kind: credential.KindFreeArea, ID: id}.Key()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k)
}

// TestEventsPersonFilter: the events page and its CSV export select a
// person's events through the registry's credentials of the person at the
// filter's site, and name the person field's errors in both languages.
func TestEventsPersonFilter(t *testing.T) {
	e := newEnv(t)
	card := func(id, person string) policy.Entry {
		return policy.Entry{Credential: credential.Credential{Kind: credential.KindFreeArea, ID: id}, Person: person}
	}
	_, err := e.reg.Apply(t.Context(), "tokyo", registry.Change{Put: []policy.Item{
		policy.Person{ID: "p-1"}, policy.Person{ID: "p-2"}, policy.Person{ID: "p-none"},
		card("card-1", "p-1"), card("card-2", "p-1"), card("card-3", "p-2"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	// p-1's cards at tokyo (3 events), p-2's (1), and card-1 at osaka,
	// where p-1 has no record.
	for i, ev := range []struct{ site, card string }{
		{"tokyo", "card-1"}, {"tokyo", "card-2"}, {"tokyo", "card-1"}, {"tokyo", "card-3"}, {"osaka", "card-1"},
	} {
		se := hq.StoredEvent{Site: ev.site, Device: "gate-2"}
		se.Seq, se.Type, se.Door, se.Granted, se.Time = uint64(i+1), "decision", "main", true, time.Date(2026, 4, 2, 9, 0, i, 0, time.UTC)
		se.Credential = cardHex(t, ev.card)
		e.hq.events = append(e.hq.events, se)
	}
	tests := []struct {
		name, user, query, lang string
		status                  int
		rows                    int      // events shown (or CSV rows)
		want                    []string // in the body
	}{
		{"a person's events", "admin", "site=tokyo&person=p-1", "", http.StatusOK, 3,
			[]string{cardHex(t, "card-1"), cardHex(t, "card-2"), `id="f-person" value="p-1"`}},
		{"another person's", "tokyo-op", "site=tokyo&person=p-2", "", http.StatusOK, 1, []string{cardHex(t, "card-3")}},
		{"with another filter", "admin", "site=tokyo&person=p-1&door=side", "", http.StatusOK, 0, []string{`id="no-events"`}},
		{"unknown person", "admin", "site=tokyo&person=p-9", "", http.StatusUnprocessableEntity, 0,
			[]string{`id="error-person"`, "Person ID: no person with this ID holds a credential at the site."}},
		{"unknown person, Japanese", "admin", "site=tokyo&person=p-9", "ja", http.StatusUnprocessableEntity, 0,
			[]string{`id="error-person"`, "人物 ID：このサイトに資格情報を持つ、この ID の人物はいません。"}},
		{"person without a credential", "admin", "site=tokyo&person=p-none", "", http.StatusUnprocessableEntity, 0, []string{`id="error-person"`}},
		{"person at a site without them", "admin", "site=osaka&person=p-1", "", http.StatusUnprocessableEntity, 0, []string{`id="error-person"`}},
		{"person without a site", "admin", "person=p-1", "", http.StatusUnprocessableEntity, 0,
			[]string{`id="error-person"`, "Person ID: choose a site too (people&#39;s IDs are per site)."}},
		{"person without a site, Japanese", "admin", "person=p-1", "ja", http.StatusUnprocessableEntity, 0,
			[]string{"人物 ID：サイトも指定してください（人物 ID はサイトごとです）。"}},
		{"person at a site not granted", "tokyo-op", "site=osaka&person=p-1", "", http.StatusForbidden, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.login(tt.user)
			res, body := e.get(c, "/events?"+tt.query, "Accept-Language", tt.lang)
			if n := strings.Count(body, "<tr class="); res.StatusCode != tt.status || n != tt.rows {
				t.Fatalf("events: %d with %d rows, want %d with %d", res.StatusCode, n, tt.status, tt.rows)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("events page lacks %q", w)
				}
			}
			if tt.rows > 0 && strings.Contains(body, cardHex(t, "card-3")) != (tt.name == "another person's") {
				t.Error("events of another person shown")
			}
			res, body = e.get(c, "/events.csv?"+tt.query)
			if tt.status != http.StatusOK {
				if res.StatusCode != tt.status {
					t.Errorf("CSV: %d, want %d", res.StatusCode, tt.status)
				}
				return
			}
			rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
			if res.StatusCode != http.StatusOK || err != nil || len(rows) != tt.rows+1 {
				t.Errorf("CSV: %d, %d rows, %v; want %d rows and a header", res.StatusCode, len(rows), err, tt.rows)
			}
		})
	}
}
