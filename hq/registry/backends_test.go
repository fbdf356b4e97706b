package registry_test

import (
	"context"
	"os"
	"testing"

	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// opener opens a new empty registry for a test.
type opener func(t *testing.T) *registry.Registry

// backends are the registry's backends every test runs on.
var backends = []struct {
	name string
	open opener
}{
	{"bbolt", openRegistry},
	{"postgres", openPGRegistry},
}

// eachBackend runs test as a subtest per backend.
func eachBackend(t *testing.T, test func(t *testing.T, open opener)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.open) })
	}
}

// pgDB returns the URL of a new database with the schema.
func pgDB(t *testing.T) string {
	t.Helper()
	url := pgtest.DB(t)
	if _, err := pgstore.Migrate(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	return url
}

// openPGAt opens the registry in the database at url.
func openPGAt(t *testing.T, url string) *registry.Registry {
	t.Helper()
	r, err := pgstore.OpenRegistry(context.Background(), url, registry.Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// openPGRegistry opens a registry in a new database.
func openPGRegistry(t *testing.T) *registry.Registry { return openPGAt(t, pgDB(t)) }
