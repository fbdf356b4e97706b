package console

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/console/auth"
)

// TestPasskeysOff: without the console's URL the passkey routes answer
// 404 and the page says what to set.
func TestPasskeysOff(t *testing.T) {
	e := newEnv(t)
	c := e.login("clerk")
	if res, body := e.post(c, "/account/passkeys/begin", url.Values{"name": {"laptop"}}); res.StatusCode != http.StatusNotFound || !strings.Contains(body, `"error"`) {
		t.Errorf("begin: %d %s", res.StatusCode, body)
	}
	if res, _ := e.post(e.client(), "/login/passkey/begin", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("login begin: %d", res.StatusCode)
	}
	if _, body := e.get(c, "/account/passkeys"); !strings.Contains(body, `id="passkeys-off"`) {
		t.Errorf("page without the console URL:\n%s", body)
	}
	if _, body := e.get(e.client(), "/login"); strings.Contains(body, "passkey-login") || strings.Contains(body, "passkey.js") {
		t.Error("login page offers passkeys without the console URL")
	}
}

// TestPasskeyHandlers checks the passkey endpoints' refusals (the
// browser test does the ceremonies): a missing name, a finish without a
// begin, an answer that is not one (audited, rate limited), and the
// removal of one's own passkey only.
func TestPasskeyHandlers(t *testing.T) {
	e := newEnv(t)
	con, err := New(Config{HQ: e.hq, Accounts: e.acc, Audit: e.audit, Params: cheap, PublicURL: "https://console.example"})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(con)
	t.Cleanup(e.srv.Close)
	for _, name := range []string{"clerk", "auditor"} {
		u, _ := e.acc.User(t.Context(), name)
		u.Passkeys = []auth.Passkey{{ID: []byte(name), Name: "key of " + name, Created: time.Now()}}
		if err := e.acc.Update(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	c := e.login("clerk")
	steps := []struct {
		name, path string
		form       url.Values
		status     int
		text       string
	}{
		{"no name", "/account/passkeys/begin", url.Values{"name": {"  "}}, http.StatusUnprocessableEntity, "Name of the passkey"},
		{"long name", "/account/passkeys/begin", url.Values{"name": {strings.Repeat("x", 65)}}, http.StatusUnprocessableEntity, "Name of the passkey"},
		{"finish without begin", "/account/passkeys/finish", nil, http.StatusBadRequest, "no registration in progress"},
		{"begin", "/account/passkeys/begin", url.Values{"name": {"laptop"}}, http.StatusOK, `"challenge"`},
		{"finish with no answer", "/account/passkeys/finish", nil, http.StatusBadRequest, "not registered"},
		{"remove another's passkey", "/account/passkeys/" + base64.RawURLEncoding.EncodeToString([]byte("auditor")) + "/remove", nil, http.StatusNotFound, ""},
		{"remove own passkey", "/account/passkeys/" + base64.RawURLEncoding.EncodeToString([]byte("clerk")) + "/remove", nil, http.StatusSeeOther, ""},
	}
	for _, st := range steps {
		res, body := e.post(c, st.path, st.form)
		if res.StatusCode != st.status || !strings.Contains(body, st.text) {
			t.Errorf("%s: %d %s, want %d with %q", st.name, res.StatusCode, body, st.status, st.text)
		}
	}
	if u, _ := e.acc.User(t.Context(), "clerk"); len(u.Passkeys) != 0 {
		t.Errorf("own passkey not removed: %+v", u.Passkeys)
	}
	if u, _ := e.acc.User(t.Context(), "auditor"); len(u.Passkeys) != 1 {
		t.Errorf("another's passkey removed: %+v", u.Passkeys)
	}

	anon := e.client()
	if res, _ := e.post(anon, "/login/passkey/finish", nil); res.StatusCode != http.StatusBadRequest {
		t.Errorf("login finish without begin: %d", res.StatusCode)
	}
	for range loginFailsPerAddr {
		e.post(anon, "/login/passkey/begin", nil)
		if res, _ := e.post(anon, "/login/passkey/finish", nil); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("login finish with no answer: %d", res.StatusCode)
		}
	}
	if res, body := e.post(anon, "/login/passkey/finish", nil); res.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed logins") {
		t.Errorf("after %d failures: %d %s", loginFailsPerAddr, res.StatusCode, body)
	}
	acts := strings.Join(e.actions(), " ")
	for _, want := range []string{"clerk:add_passkey", "clerk:remove_passkey", ":login_failed", ":login_refused"} {
		if !strings.Contains(acts, want) {
			t.Errorf("audit lacks %s: %s", want, acts)
		}
	}
}
