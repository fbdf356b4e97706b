package hq_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend is one kind of HQ store that the Service tests run on.
type backend struct {
	name string
	// newStore returns where a new, empty store is: a bbolt path or a
	// database URL.
	newStore func(t *testing.T) string
	// config returns cfg with the store at loc.
	config func(t *testing.T, cfg hq.Config, loc string) hq.Config
}

// backends are bbolt (the default) and PostgreSQL (a fresh, migrated
// database on the test binary's server; skipped without PostgreSQL unless
// CI=true).
var backends = []backend{
	{
		name:     "bbolt",
		newStore: func(t *testing.T) string { return filepath.Join(t.TempDir(), "hq.db") },
		config:   func(_ *testing.T, cfg hq.Config, loc string) hq.Config { cfg.Path = loc; return cfg },
	},
	{
		name: "postgres",
		newStore: func(t *testing.T) string {
			url := pgtest.DB(t)
			if _, err := pgstore.Migrate(t.Context(), url); err != nil {
				t.Fatal(err)
			}
			return url
		},
		config: func(t *testing.T, cfg hq.Config, loc string) hq.Config {
			st, err := pgstore.Open(context.Background(), loc, pgstore.Options{Logger: cfg.Logger})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Store = st
			cfg.Marks = st.Marks()
			return cfg
		},
	},
}

// eachBackend runs fn as a subtest per backend.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}
