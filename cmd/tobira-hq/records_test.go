package main

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/sync/proto"
)

// oneEventHQ is an HQ with one event, of credential cred at site s1.
type oneEventHQ struct{ cred string }

func (h oneEventHQ) event() hq.StoredEvent {
	ev := hq.StoredEvent{Site: "s1", Device: "gate-1"}
	ev.Seq, ev.Type, ev.Door, ev.Granted, ev.Time, ev.Credential = 1, "decision", "main", true, time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC), h.cred
	return ev
}
func (oneEventHQ) Fleet() ([]hq.DeviceInfo, error) { return nil, nil }
func (h oneEventHQ) Query(_ hq.EventQuery, fn func(hq.StoredEvent) error) error {
	return fn(h.event())
}
func (h oneEventHQ) QueryPage(context.Context, hq.EventQuery, hq.Cursor, int) (hq.EventPage, error) {
	return hq.EventPage{Events: []hq.StoredEvent{h.event()}}, nil
}
func (oneEventHQ) Result(string) (proto.Result, bool, error) { return proto.Result{}, false, nil }

// TestConsoleRegistryNames: with a registry, serve's console shows the
// registry's people's names to the roles allowed (administrator) and
// audits each view; an operator sees none; the record pages read the
// same file.
func TestConsoleRegistryNames(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	reg := filepath.Join(dir, "registry.db")
	c := credential.Credential{Kind: credential.KindFreeArea, ID: "F-1"}
	r, err := registry.Open(reg, registry.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(t.Context(), "s1", registry.Change{Put: []policy.Item{policy.Entry{Credential: c, Person: "p-1"}, policy.Person{ID: "p-1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetNames("s1", map[string]string{"p-1": "Yamada Hanako"}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	cs, err := openConsole(t.Context(), "127.0.0.1:0", filepath.Join(dir, "console.db"), hq.Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.close()
	cs.useRegistry(&sharedRegistry{at: registryAt{path: reg}, log: log}, log)
	hash, err := auth.HashPassword("a long test password", auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]auth.Role{"admin": auth.Administrator, "op": auth.Operator} {
		if err := cs.stores.Accounts.Add(auth.User{Name: name, Role: role, Sites: []string{auth.AllSites}, PasswordHash: hash}); err != nil {
			t.Fatal(err)
		}
	}
	key, _ := c.Key()
	con, err := console.New(cs.config(oneEventHQ{cred: hex.EncodeToString(key)}, log))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con)
	defer srv.Close()
	get := func(user, path string) string {
		jar, _ := cookiejar.New(nil)
		cl := &http.Client{Jar: jar}
		res, err := cl.PostForm(srv.URL+"/login", url.Values{"user": {user}, "password": {"a long test password"}, "next": {path}})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", user, path, res.StatusCode)
		}
		return string(b)
	}
	if body := get("admin", "/events"); !strings.Contains(body, "Yamada Hanako") {
		t.Errorf("the administrator sees no name:\n%s", body)
	}
	if body := get("admin", "/records/credentials?site=s1"); !strings.Contains(body, "Yamada Hanako") || !strings.Contains(body, "F-1") {
		t.Errorf("the credentials page lacks the record or its name:\n%s", body)
	}
	if body := get("admin", "/records/people/edit?site=s1&key="+hex.EncodeToString([]byte("Pp-1"))); !strings.Contains(body, `value="Yamada Hanako"`) {
		t.Errorf("the person form lacks the name:\n%s", body)
	}
	if body := get("op", "/events"); strings.Contains(body, "Yamada Hanako") {
		t.Error("an operator sees a name")
	}
	views := 0
	_ = cs.stores.Audit.Each(func(e audit.Entry) error {
		if e.Action == "view_names" && e.Actor == "admin" {
			views++
		}
		return nil
	})
	if views != 3 {
		t.Errorf("%d audited views of names, want 3", views)
	}
}
