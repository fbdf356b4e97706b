// Package pgstoretest opens hq/pgstore stores for tests: n stores, each
// on its own connection pool, on one fresh database of internal/pgtest's
// server with the schema migrated, as n tobira-hq replicas (or one
// restarted) would have. Call pgtest.Main from the test binary's TestMain.
package pgstoretest

import (
	"context"
	"testing"

	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/pgtest"
)

// Replicas returns n stores on one new, migrated database; t's cleanup
// closes them.
func Replicas(t testing.TB, n int) []*pgstore.Store {
	t.Helper()
	url := pgtest.DB(t)
	if _, err := pgstore.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	out := make([]*pgstore.Store, n)
	for i := range out {
		st, err := pgstore.Open(context.Background(), url, pgstore.Options{}) // t.Context ends before the cleanup
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		out[i] = st
	}
	return out
}
