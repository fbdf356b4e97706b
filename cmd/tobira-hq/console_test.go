package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/auth/pgaccounts"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/policy"
)

// runConsoleCommand runs tobira-hq with args and no settings from the
// environment, and returns what it printed.
func runConsoleCommand(t *testing.T, args ...string) (string, error) {
	src := settingsSource{lookupEnv: func(string) (string, bool) { return "", false }}
	var out bytes.Buffer
	err := cli.Execute(t.Context(), newRoot(src), args, &out, &out)
	return out.String(), err
}

// TestConsoleAccounts bootstraps an administrator and recovers its lost
// password from the command line, as docs/CONSOLE.md tells.
func TestConsoleAccounts(t *testing.T) {
	db := filepath.Join(t.TempDir(), "console.db")
	run := func(args ...string) (string, error) { return runConsoleCommand(t, args...) }
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
	u, err := st.Accounts.User(t.Context(), "admin")
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

// TestRegistryEnrollments: the console's enrollments list the registry's
// pending enrollments with their credential, approve only what chains to
// the anchors (adding it to the allowlist), and reject.
func TestRegistryEnrollments(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	kit := writeKit(t, dir, now)
	reg := filepath.Join(dir, "registry.db")
	cred, rec := enrollmentRecord(t, kit, now)
	r, err := registry.Open(reg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := range uint64(2) {
		id, err := r.AddPending(registry.Pending{Site: "s1", Device: "desk", Seq: seq + 1, Received: now, Record: rec})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	r.Close()

	log := slog.New(slog.DiscardHandler)
	shared := &sharedRegistry{at: registryAt{path: reg}, log: log}
	if e, err := newRegistryEnrollments(shared, "", log); e != nil || err != nil {
		t.Fatalf("without anchors: %v, %v; want none", e, err)
	}
	untrusted, err := newRegistryEnrollments(shared, filepath.Join(dir, "pki", "other-ca.pem"), log)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newRegistryEnrollments(shared, filepath.Join(dir, "pki", "ca.pem"), log)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := cred.Key()
	list, err := e.Pending()
	if err != nil || len(list) != 2 || list[0].Credential != hex.EncodeToString(key) || list[0].Site != "s1" {
		t.Fatalf("pending %+v, %v; want 2 at s1 with credential %x", list, err, key)
	}
	if _, err := untrusted.Approve(t.Context(), ids[0], "p-9", time.Time{}); err == nil {
		t.Fatal("approved against an untrusted CA")
	}
	got, err := e.Approve(t.Context(), ids[0], "p-9", now.AddDate(1, 0, 0))
	if err != nil || got != hex.EncodeToString(key) {
		t.Fatalf("approve: %q, %v", got, err)
	}
	if err := e.Reject(ids[1]); err != nil {
		t.Fatal(err)
	}
	if list, err := e.Pending(); err != nil || len(list) != 0 {
		t.Fatalf("pending after approve and reject: %+v, %v", list, err)
	}
	if err := e.Reject(ids[1]); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("rejecting twice: %v, want ErrNotFound", err)
	}
	r, err = registry.Open(reg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := r.Count("s1", policy.KindCredential); err != nil || n != 1 {
		t.Errorf("allowlist entries at s1: %d, %v; want the approved card", n, err)
	}
}

// TestRegistryImporter: the console's import opens the registry for each
// upload and applies all lines or none.
func TestRegistryImporter(t *testing.T) {
	reg := filepath.Join(t.TempDir(), "registry.db")
	ri := registryImporter{&sharedRegistry{at: registryAt{path: reg}, log: slog.New(slog.DiscardHandler)}}
	if _, err := ri.ImportCSV(t.Context(), "s1", "people", "bad.csv", strings.NewReader("person,valid_from\np-1,\np-2,soon\n")); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad file: %v, want ErrInvalid", err)
	}
	a, err := ri.ImportCSV(t.Context(), "s1", "people", "good.csv", strings.NewReader("person\np-1\np-2\n"))
	if err != nil || a.Put != 2 {
		t.Fatalf("good file: %+v, %v; want 2 put", a, err)
	}
}

// TestConsoleAccountsOnPostgres recovers a lost password with the
// accounts on PostgreSQL while serve holds the console file: the reset
// works, ends the sessions and enables the account again, and its audit
// entry is in the audit log on PostgreSQL (serve's replicas share it).
func TestConsoleAccountsOnPostgres(t *testing.T) {
	url := pgtest.DB(t)
	if _, err := pgstore.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "console.db")
	run := func(args ...string) (string, error) { return runConsoleCommand(t, args...) }
	// An account made in the file before is copied at the first start
	// on PostgreSQL.
	if _, err := run("console", "add-user", "--console-db", db, "--user", "early", "--role", "auditor"); err != nil {
		t.Fatal(err)
	}
	cs, err := openConsoleStores(t.Context(), db, url, console.Shared{})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := cs.Accounts.User(t.Context(), "early"); err != nil || u.Role != auth.Auditor {
		t.Errorf("account of the file on PostgreSQL: %+v, %v", u, err)
	}
	cs.close()
	if _, err := run("console", "add-user", "--console-db", db, "--store-url", url, "--user", "admin", "--role", "administrator"); err != nil {
		t.Fatal(err)
	}
	held, err := console.OpenStores(db, nil) // as tobira-hq serve would
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	acc, err := pgaccounts.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	u, _ := acc.User(t.Context(), "admin")
	u.Disabled = true
	if err := acc.Add(t.Context(), auth.User{Name: "other", Role: auth.Administrator, Sites: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	if err := acc.Update(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	_ = acc.Commit("token", []byte("x"), time.Now().Add(time.Hour))
	out, err := run("console", "reset-password", "--console-db", db, "--store-url", url, "--user", "admin")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pgstore.Open(t.Context(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	entries, err := audit.NewLog(ps.AuditChain(), nil).Page(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+" "+e.Target)
	}
	if !slices.Contains(actions, "reset_password admin") {
		t.Errorf("audit log on PostgreSQL = %q, want the reset of admin", actions)
	}
	_, pw, _ := strings.Cut(out, "one-time password: ")
	u, err = acc.User(t.Context(), "admin")
	if err != nil || u.Disabled || !u.MustChange || u.Generation != 1 {
		t.Fatalf("account after the reset %+v, %v", u, err)
	}
	if ok, _ := auth.CheckPassword(u.PasswordHash, strings.Fields(pw)[0]); !ok {
		t.Error("the new password does not work")
	}
	if _, ok, _ := acc.Find("token"); ok {
		t.Error("a session survived the reset")
	}
}
