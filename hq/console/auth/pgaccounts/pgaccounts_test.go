package pgaccounts_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/console/auth/authtest"
	"github.com/tobira-ac/tobira/hq/console/auth/pgaccounts"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestStore runs the accounts contract on PostgreSQL.
func TestStore(t *testing.T) {
	authtest.Run(t, func(t *testing.T, now func() time.Time) authtest.Accounts {
		url := pgtest.DB(t)
		if _, err := pgstore.Migrate(t.Context(), url); err != nil {
			t.Fatal(err)
		}
		s, err := pgaccounts.Open(t.Context(), url, now)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestOpenUnmigrated checks that a database without the tables is
// refused with the advice to migrate.
func TestOpenUnmigrated(t *testing.T) {
	_, err := pgaccounts.Open(t.Context(), pgtest.DB(t), nil)
	if !errors.Is(err, pgaccounts.ErrSchema) {
		t.Errorf("Open of an empty database: %v, want ErrSchema", err)
	}
}
