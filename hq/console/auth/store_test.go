package auth_test

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/auth/authtest"
)

// TestStore runs the accounts contract on the bbolt store.
func TestStore(t *testing.T) {
	authtest.Run(t, func(t *testing.T, now func() time.Time) authtest.Accounts {
		db, err := bolt.Open(filepath.Join(t.TempDir(), "console.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := auth.NewStore(db, now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
