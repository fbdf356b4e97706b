package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/auth"
)

// TestConsoleAccounts bootstraps an administrator and recovers its lost
// password from the command line, as docs/CONSOLE.md tells.
func TestConsoleAccounts(t *testing.T) {
	db := filepath.Join(t.TempDir(), "console.db")
	src := settingsSource{lookupEnv: func(string) (string, bool) { return "", false }}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := cli.Execute(t.Context(), newRoot(src), args, &out, &out)
		return out.String(), err
	}
	password := func(out string) string {
		_, pw, ok := strings.Cut(out, "one-time password: ")
		if !ok {
			t.Fatalf("no password in %q", out)
		}
		return strings.Fields(pw)[0]
	}
	out, err := run("console", "add-user", "--console-db", db, "--user", "admin", "--role", "administrator")
	if err != nil {
		t.Fatal(err)
	}
	first := password(out)
	if _, err := run("console", "add-user", "--console-db", db, "--user", "x", "--role", "root"); err == nil || !strings.Contains(err.Error(), "role") {
		t.Errorf("bad role: %v", err)
	}
	if _, err := run("console", "reset-password", "--console-db", db, "--user", "nobody"); err == nil {
		t.Error("reset of a missing account succeeded")
	}
	out, err = run("console", "reset-password", "--console-db", db, "--user", "admin")
	if err != nil {
		t.Fatal(err)
	}
	second := password(out)
	st, err := console.OpenStores(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.Accounts.User("admin")
	if err != nil || !u.MustChange || !u.AllSites() {
		t.Fatalf("account %+v, %v", u, err)
	}
	if ok, _ := auth.CheckPassword(u.PasswordHash, first); ok {
		t.Error("the old password still works")
	}
	if ok, _ := auth.CheckPassword(u.PasswordHash, second); !ok {
		t.Error("the new password does not work")
	}
	if n, _, err := st.Audit.Verify(); n != 2 || err != nil {
		t.Errorf("audit: %d entries, %v", n, err)
	}
}
