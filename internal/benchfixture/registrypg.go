package benchfixture

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/policy"
)

// RegistryPG returns a registry on PostgreSQL with the records and names
// of Registry: a cluster (run by internal/pgtest, fsync off) cached as
// the directory $TMPDIR/tobira-hq-registry-pg-<n>, started for tb and
// stopped by its cleanup. Without PostgreSQL tb is skipped (failed under
// CI=true).
func RegistryPG(tb testing.TB, n int) *registry.Registry {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("tobira-hq-registry-pg-%d", n))
	build(tb, dir, func(build string) error { return buildRegistryPG(tb, build, n) })
	srv, url := startPG(tb, dir)
	tb.Cleanup(func() { srv.Stop() })
	r, err := pgstore.OpenRegistry(tb.Context(), url, registry.Options{Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// startPG starts the cluster in dir and returns it and the URL of its
// database "postgres", which holds the fixture, with the schema.
func startPG(tb testing.TB, dir string) (*pgtest.Server, string) {
	srv, err := pgtest.Start(tb.Context(), pgtest.Options{Dir: dir})
	if err != nil {
		pgtest.Unavailable(tb, err)
	}
	url := srv.URL("postgres")
	if _, err := pgstore.Migrate(tb.Context(), url); err != nil {
		srv.Stop()
		tb.Fatal(err)
	}
	return srv, url
}

// pgBatch is how many credentials (and people, and names) one statement
// of the PostgreSQL fixture inserts (a variable: the test makes batches
// small).
var pgBatch = 1_000_000

// buildRegistryPG builds the fixture in a cluster in dir: one credential
// and one person (number n, placeholders) imported through the registry,
// copied n times in SQL with their IDs replaced (generate_series), the
// placeholders deleted, and the names inserted.
func buildRegistryPG(tb testing.TB, dir string, n int) error {
	ctx := tb.Context()
	srv, url := startPG(tb, dir)
	defer srv.Stop()
	r, err := pgstore.OpenRegistry(ctx, url, registry.Options{Logger: quiet})
	if err != nil {
		return err
	}
	defer r.Close()
	if err := importPeople(ctx, r, n, n+1); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The placeholders, apart from the copies that will join them.
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE placeholders AS SELECT * FROM registry_records WHERE site = $1`, RegistrySite); err != nil {
		return err
	}
	for first := 0; first < n; first += pgBatch {
		if err := copyPlaceholders(ctx, conn, n, first, min(n, first+pgBatch)); err != nil {
			return fmt.Errorf("copy the placeholders %d..%d: %w", first, min(n, first+pgBatch), err)
		}
	}
	ch := registry.Change{Delete: []policy.Item{policy.Person{ID: PersonID(n)}, credentialItem(n)}}
	if _, err := r.Apply(ctx, RegistrySite, ch); err != nil {
		return err
	}
	if err := r.SetNames(RegistrySite, map[string]string{PersonID(n): ""}); err != nil {
		return err
	}
	for _, table := range []string{"registry_records", "registry_names"} {
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
			return err
		}
	}
	return checkRegistry(r, n)
}

// credentialItem returns the identity of credential i (for Get).
func credentialItem(i int) policy.Item {
	it, err := registry.ItemOfKey(CredentialKey(i))
	if err != nil {
		panic(err)
	}
	return it
}

// copyPlaceholders inserts credentials, people and names [first, end)
// copied from the placeholder records of number n (in the temporary
// table placeholders).
func copyPlaceholders(ctx context.Context, conn *pgx.Conn, n, first, end int) error {
	cred, person := RegistryCredential(n), PersonID(n)
	hexOf := func(s string) string { return hex.EncodeToString([]byte(s)) }
	// repl replaces the placeholders' IDs (as text and as hex) in x.
	repl := func(x string) string {
		return fmt.Sprintf("replace(replace(replace(replace(%s, $4, v.c), $5, v.ch), $6, v.p), $7, v.ph)", x)
	}
	q := `INSERT INTO registry_records (site, kind, key, id, body, rev, created, deleted, hist)
		SELECT t.site, t.kind, decode(` + repl("encode(t.key, 'hex')") + `, 'hex'), ` + repl("t.id") + `, (` + repl("t.body::text") + `)::json,
			t.rev, t.created, t.deleted, t.hist
		FROM generate_series($1::int, $2::int - 1) g,
			LATERAL (SELECT 'fa' || lpad(g::text, 10, '0') AS c, 'p' || lpad(g::text, 10, '0') AS p) i,
			LATERAL (SELECT i.c, i.p, encode(convert_to(i.c, 'UTF8'), 'hex') AS ch, encode(convert_to(i.p, 'UTF8'), 'hex') AS ph) v,
			placeholders t
		WHERE t.site = $3`
	if _, err := conn.Exec(ctx, q, first, end, RegistrySite, cred, hexOf(cred), person, hexOf(person)); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, `INSERT INTO registry_names (site, person, name)
		SELECT $3, 'p' || lpad(g::text, 10, '0'), 'Person ' || g FROM generate_series($1::int, $2::int - 1) g`, first, end, RegistrySite)
	return err
}

// checkRegistry checks a few records of the fixture in r: the first,
// the middle and the last credential give their person's name, and the
// counts are n.
func checkRegistry(r *registry.Registry, n int) error {
	for _, i := range []int{0, n / 2, n - 1} {
		cred := "02" + hex.EncodeToString([]byte(RegistryCredential(i)))
		if name, ok, err := r.PersonName(RegistrySite, cred); err != nil || name != PersonName(i) {
			return fmt.Errorf("credential %d: name %q %v %w", i, name, ok, err)
		}
	}
	for _, k := range []policy.RecordKind{policy.KindCredential, policy.KindPerson} {
		if c, err := r.Count(RegistrySite, k); err != nil || c != n {
			return fmt.Errorf("%d %s records, want %d: %w", c, k, n, err)
		}
	}
	return nil
}
