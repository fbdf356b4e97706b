package benchfixture

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tobira-ac/tobira/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestRegistryFixtures builds both registry fixtures small and checks
// them (each build checks itself: the names of the first, middle and
// last credential, and the counts), the PostgreSQL one in several
// batches.
func TestRegistryFixtures(t *testing.T) {
	const n = 3_000
	path := filepath.Join(t.TempDir(), "registry.db")
	if err := buildRegistry(t.Context(), path, n); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tobira-benchfixture-") // not t.TempDir: its parent is closed to the postgres user
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	defer func(b int) { pgBatch = b }(pgBatch)
	pgBatch = n / 3 // several batches
	if err := buildRegistryPG(t, filepath.Join(dir, "pg"), n); err != nil {
		t.Fatal(err)
	}
}
