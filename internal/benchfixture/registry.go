package benchfixture

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// RegistrySite is the site of the registry fixtures' records.
const RegistrySite = "s0"

// RegistryCredential is the free-area ID of credential i of the registry
// fixtures; its person is PersonID(i).
func RegistryCredential(i int) string { return fmt.Sprintf("fa%010d", i) }

// CredentialKey is the record key (registry.RecordKey) of credential i:
// its kind, the free-area type byte 0x02 and its ID, in hex.
func CredentialKey(i int) string {
	return hex.EncodeToString(append([]byte{byte(policy.KindCredential), 0x02}, RegistryCredential(i)...))
}

// PersonID is the ID of person i of the registry fixtures, named
// PersonName(i). Zero-padded: IDs in key order are in number order.
func PersonID(i int) string { return fmt.Sprintf("p%010d", i) }

// PersonName is the name of person i.
func PersonName(i int) string { return fmt.Sprintf("Person %d", i) }

// quiet discards the registry's logs of the fixture's imports.
var quiet = slog.New(slog.DiscardHandler)

// registryBatch is how many credentials one import of the bbolt fixture
// writes (and people, and names).
const registryBatch = 250_000

// Registry returns a bbolt registry holding, at RegistrySite, n
// free-area credentials, each of its own person, n people records and n
// names, cached as $TMPDIR/tobira-hq-registry-v2-<n>.db; tb's cleanup
// closes it.
func Registry(tb testing.TB, n int) *registry.Registry {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("tobira-hq-registry-v2-%d.db", n))
	build(tb, path, func(build string) error { return buildRegistry(tb.Context(), build, n) })
	r, err := registry.Open(path, registry.Options{Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// buildRegistry imports the registry fixture into a bbolt file at path,
// in imports of registryBatch lines in key order.
func buildRegistry(ctx context.Context, path string, n int) error {
	r, err := registry.Open(path, registry.Options{Logger: quiet})
	if err != nil {
		return err
	}
	defer r.Close()
	for first := 0; first < n; first += registryBatch {
		if err := importPeople(ctx, r, first, min(n, first+registryBatch)); err != nil {
			return err
		}
	}
	if err := checkRegistry(r, n); err != nil {
		return err
	}
	return r.Close()
}

// importPeople imports credentials, people and names [first, end) of the
// registry fixture into r.
func importPeople(ctx context.Context, r *registry.Registry, first, end int) error {
	tables := []struct {
		table, header string
		line          func(i int) string
	}{
		{"credentials", "type,free_area_id,person", func(i int) string {
			return fmt.Sprintf("freearea,%s,%s\n", RegistryCredential(i), PersonID(i))
		}},
		{"people", "person", func(i int) string { return PersonID(i) + "\n" }},
	}
	for _, t := range tables {
		if _, err := r.ImportCSV(ctx, RegistrySite, t.table, t.table+".csv", csvLines(t.header, first, end, t.line)); err != nil {
			return err
		}
	}
	names := make(map[string]string, end-first)
	for i := first; i < end; i++ {
		names[PersonID(i)] = PersonName(i)
	}
	return r.SetNames(RegistrySite, names)
}

// csvLines returns a CSV of header and line(i) for i in [first, end).
func csvLines(header string, first, end int, line func(i int) string) io.Reader {
	var w strings.Builder
	w.WriteString(header + "\n")
	for i := first; i < end; i++ {
		w.WriteString(line(i))
	}
	return strings.NewReader(w.String())
}
