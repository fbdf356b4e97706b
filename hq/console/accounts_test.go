package console

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
)

// TestAccountForms checks every field's validation of the new-account
// and edit forms: the field named, nothing changed.
func TestAccountForms(t *testing.T) {
	e := newEnv(t)
	c := e.login("admin")
	tests := []struct {
		name, path string
		form       url.Values
		field      string
	}{
		{"bad name", "/accounts/new", url.Values{"name": {"a b"}, "role": {"operator"}, "sites": {"*"}}, "error-name"},
		{"no name", "/accounts/new", url.Values{"role": {"operator"}, "sites": {"*"}}, "error-name"},
		{"existing name", "/accounts/new", url.Values{"name": {"clerk"}, "role": {"operator"}, "sites": {"*"}}, "error-name"},
		{"bad role", "/accounts/new", url.Values{"name": {"new1"}, "role": {"root"}, "sites": {"*"}}, "error-role"},
		{"no site", "/accounts/new", url.Values{"name": {"new1"}, "role": {"operator"}, "sites": {" , "}}, "error-sites"},
		{"bad site", "/accounts/new", url.Values{"name": {"new1"}, "role": {"operator"}, "sites": {"tokyo os/aka"}}, "error-sites"},
		{"edit: bad role", "/accounts/clerk", url.Values{"role": {""}, "sites": {"*"}}, "error-role"},
		{"edit: bad site", "/accounts/clerk", url.Values{"role": {"clerk"}, "sites": {"a$b"}}, "error-sites"},
		{"edit: last admin disabled", "/accounts/admin", url.Values{"role": {"administrator"}, "sites": {"*"}, "disabled": {"on"}}, "error-form"},
		{"edit: last admin demoted", "/accounts/admin", url.Values{"role": {"operator"}, "sites": {"*"}}, "error-form"},
		{"edit: last admin narrowed", "/accounts/admin", url.Values{"role": {"administrator"}, "sites": {"tokyo"}}, "error-form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.post(c, tt.path, tt.form)
			if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="`+tt.field+`"`) {
				t.Errorf("status %d, want 422 naming %s:\n%s", res.StatusCode, tt.field, body)
			}
		})
	}
	users, _ := e.acc.Users(t.Context())
	if len(users) != 7 {
		t.Errorf("%d accounts after refused forms, want 7", len(users))
	}
	for _, name := range []string{"admin", "clerk"} {
		if u, _ := e.acc.User(t.Context(), name); u.Disabled || u.Role != map[string]auth.Role{"admin": auth.Administrator, "clerk": auth.Clerk}[name] {
			t.Errorf("%s changed by a refused form: %+v", name, u)
		}
	}
}

// oneTimePassword returns the one-time password a page shows.
func oneTimePassword(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`id="one-time-password">([^<]+)<`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no one-time password in:\n%s", body)
	}
	return m[1]
}

// TestAccountLifecycle creates an account, logs it in with its
// one-time password, changes its role, resets its password and disables
// it, each audited with before and after; the sessions of a reset or
// disabled account end at once.
func TestAccountLifecycle(t *testing.T) {
	e := newEnv(t)
	admin := e.login("admin")
	res, body := e.post(admin, "/accounts/new", url.Values{"name": {"dora"}, "role": {"operator"}, "sites": {"tokyo, osaka tokyo"}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("create: %d\n%s", res.StatusCode, body)
	}
	pw := oneTimePassword(t, body)
	u, err := e.acc.User(t.Context(), "dora")
	if err != nil || !u.MustChange || strings.Join(u.Sites, " ") != "osaka tokyo" {
		t.Fatalf("created %+v, %v", u, err)
	}
	dora := e.client()
	if res, _ := e.post(dora, "/login", url.Values{"user": {"dora"}, "password": {pw}, "next": {"/fleet"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with the one-time password: %d", res.StatusCode)
	}
	if res, _ := e.get(dora, "/fleet"); res.Header.Get("Location") != "/account/password" {
		t.Errorf("a one-time password is not forced to change: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if _, body := e.get(admin, "/accounts"); !strings.Contains(body, `id="account-dora"`) {
		t.Errorf("list without dora:\n%s", body)
	}

	if res, body := e.post(admin, "/accounts/dora", url.Values{"role": {"auditor"}, "sites": {"*"}}); res.StatusCode != http.StatusOK || !strings.Contains(body, `id="account-saved"`) {
		t.Fatalf("edit: %d\n%s", res.StatusCode, body)
	}
	res, body = e.post(admin, "/accounts/dora/reset", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("reset: %d", res.StatusCode)
	}
	pw2 := oneTimePassword(t, body)
	if res, _ := e.get(dora, "/account/password"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Errorf("session survived the reset: %d", res.StatusCode)
	}
	if res, _ := e.post(dora, "/login", url.Values{"user": {"dora"}, "password": {pw}}); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("old one-time password: %d", res.StatusCode)
	}
	if res, _ := e.post(dora, "/login", url.Values{"user": {"dora"}, "password": {pw2}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("new one-time password: %d", res.StatusCode)
	}
	if res, _ := e.post(admin, "/accounts/dora", url.Values{"role": {"auditor"}, "sites": {"*"}, "disabled": {"on"}}); res.StatusCode != http.StatusOK {
		t.Fatalf("disable: %d", res.StatusCode)
	}
	if res, _ := e.get(dora, "/account/password"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Errorf("session survived disabling: %d", res.StatusCode)
	}
	if res, body := e.post(e.client(), "/login", url.Values{"user": {"dora"}, "password": {pw2}}); res.StatusCode != http.StatusForbidden || !strings.Contains(body, "disabled") {
		t.Errorf("disabled account's login: %d", res.StatusCode)
	}

	var got []string
	_ = e.audit.Each(func(en audit.Entry) error {
		if en.Target == "dora" || en.Actor == "dora" {
			got = append(got, en.Actor+":"+en.Action+" "+en.Before+" -> "+en.After)
		}
		return nil
	})
	want := []string{
		`admin:add_user  -> {"role":"operator","sites":["osaka","tokyo"],"disabled":false,"passkeys":[]}`,
		`dora:login  -> password`,
		`admin:update_user {"role":"operator","sites":["osaka","tokyo"],"disabled":false,"passkeys":[]} -> {"role":"auditor","sites":["*"],"disabled":false,"passkeys":[]}`,
		`admin:reset_password  -> one-time password, sessions ended`,
		`dora:login_failed  -> `,
		`dora:login  -> password`,
		`admin:update_user {"role":"auditor","sites":["*"],"disabled":false,"passkeys":[]} -> {"role":"auditor","sites":["*"],"disabled":true,"passkeys":[]}`,
		`dora:login_refused  -> account disabled (password)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAccountPermissions: only an administrator of every site manages
// accounts; the server refuses the others, also for accounts it does
// not have.
func TestAccountPermissions(t *testing.T) {
	e := newEnv(t)
	u, _ := e.acc.User(t.Context(), "clerk")
	u.Passkeys = []auth.Passkey{{ID: []byte{9}, Name: "key", Created: time.Now()}}
	if err := e.acc.Update(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	remove := "/accounts/clerk/passkeys/" + base64.RawURLEncoding.EncodeToString([]byte{9}) + "/remove"
	steps := []struct {
		method, path string
	}{
		{http.MethodGet, "/accounts"},
		{http.MethodGet, "/accounts/new"},
		{http.MethodPost, "/accounts/new"},
		{http.MethodGet, "/accounts/clerk"},
		{http.MethodPost, "/accounts/clerk"},
		{http.MethodPost, "/accounts/clerk/reset"},
		{http.MethodPost, remove},
	}
	for _, user := range []string{"tokyo-admin", "operator", "clerk", "auditor"} {
		c := e.login(user)
		for _, st := range steps {
			var res *http.Response
			if st.method == http.MethodPost {
				res, _ = e.post(c, st.path, url.Values{"name": {"x1"}, "role": {"administrator"}, "sites": {"*"}})
			} else {
				res, _ = e.get(c, st.path)
			}
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s %s: %d, want 403", user, st.method, st.path, res.StatusCode)
			}
		}
	}
	admin := e.login("admin")
	if res, _ := e.get(admin, "/accounts/nobody"); res.StatusCode != http.StatusNotFound {
		t.Errorf("missing account: %d", res.StatusCode)
	}
	if res, _ := e.post(admin, "/accounts/clerk/passkeys/AAAA/remove", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("missing passkey: %d", res.StatusCode)
	}
	if res, _ := e.post(admin, remove, nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("remove passkey: %d", res.StatusCode)
	}
	if u, _ := e.acc.User(t.Context(), "clerk"); len(u.Passkeys) != 0 {
		t.Errorf("passkey not removed: %+v", u.Passkeys)
	}
	if acts := strings.Join(e.actions(), " "); !strings.Contains(acts, "admin:remove_passkey") || !strings.Contains(acts, "tokyo-admin:denied") {
		t.Errorf("audit %s", acts)
	}
}
