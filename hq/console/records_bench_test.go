package console

import (
	"fmt"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/benchfixture"
	"github.com/tobira-ac/tobira/policy"
)

// BenchmarkRecordPages times the record pages through the console's HTTP
// handler, as BenchmarkConsolePages does, over the registry fixture of
// benchfixture.RegistryScale credentials, people and names (10,000; 10
// million with TOBIRA_BENCH_SCALE=10m) on bbolt and on PostgreSQL: the
// credentials list (first page, and a deep page by cursor from the middle
// of the site, each with the 50 people's names), the people list (the
// same two), one person's form with the name, and the events page
// (newest first, names from this registry) over the event store of
// benchfixture.Events.
func BenchmarkRecordPages(b *testing.B) {
	n, rn := benchfixture.Scale(), benchfixture.RegistryScale()
	store := benchfixture.Events(b, n)
	svc, err := hq.Open(hq.Config{Store: store, Path: filepath.Join(b.TempDir(), "hq.db")})
	if err != nil {
		b.Fatal(err)
	}
	mid := rn / 2
	person, err := registry.RecordKey(policy.Person{ID: benchfixture.PersonID(mid)})
	if err != nil {
		b.Fatal(err)
	}
	site := "site=" + benchfixture.RegistrySite
	pages := []benchPage{
		{"credentials_first", "/records/credentials?" + site, benchfixture.PersonName(0) + "<"},
		{"credentials_deep", "/records/credentials?" + site + "&after=" + benchfixture.CredentialKey(mid), benchfixture.PersonName(mid+1) + "<"},
		{"people_first", "/records/people?" + site, benchfixture.PersonName(0) + "<"},
		{"people_deep", "/records/people?" + site + "&after=" + person, benchfixture.PersonName(mid+1) + "<"},
		{"person_form", "/records/people/edit?" + site + "&key=" + url.QueryEscape(person), `value="` + benchfixture.PersonName(mid) + `"`},
		{"events_newest", "/events", "Person "},
	}
	backends := []struct {
		name string
		open func(testing.TB, int) *registry.Registry
	}{
		{"bbolt", benchfixture.Registry},
		{"postgres", benchfixture.RegistryPG},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			reg := be.open(b, rn)
			_, srv, c := benchConsole(b, Config{HQ: svc, Names: fixtureNames{reg: reg, n: rn}, Records: reg, PeopleNames: reg})
			timePages(b, srv.URL, c, fmt.Sprintf("credentials=%d/events=%d", rn, n), pages)
		})
	}
}
