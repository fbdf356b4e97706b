package console

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/i18n"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/sync/proto"
)

// cheap are argon2id parameters that keep tests fast.
var cheap = auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}

// testPassword is every test account's password.
const testPassword = "a long test password"

// fakeHQ is a fleet, events and results in memory.
type fakeHQ struct {
	mu      sync.Mutex
	devs    []hq.DeviceInfo
	events  []hq.StoredEvent
	results map[string]proto.Result
}

func (f *fakeHQ) Fleet() ([]hq.DeviceInfo, error) { return f.devs, nil }

func (f *fakeHQ) Query(q hq.EventQuery, fn func(hq.StoredEvent) error) error {
	for _, ev := range f.events {
		if (q.Site != "" && ev.Site != q.Site) || (q.Door != "" && ev.Door != q.Door) ||
			(q.Credentials != nil && !slices.Contains(q.Credentials, ev.Credential)) {
			continue
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeHQ) Result(id string) (proto.Result, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.results[id]
	return r, ok, nil
}

// fakeCommander records the commands sent.
type fakeCommander struct {
	mu   sync.Mutex
	sent []proto.Command
}

func (c *fakeCommander) SendCommand(_ context.Context, cmd proto.Command) (proto.Command, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd.ID = fmt.Sprintf("%032x", len(c.sent)+1)
	c.sent = append(c.sent, cmd)
	return cmd, nil
}

// fakeNames knows one person.
type fakeNames struct{}

func (fakeNames) Name(_, cred string) (string, bool) { return "Yamada Taro", cred == "c1" }

// env is a console on a test server with one account per role.
type env struct {
	t     *testing.T
	srv   *httptest.Server
	con   *Server
	hq    *fakeHQ
	cmd   *fakeCommander
	audit *audit.Log
	acc   Accounts
	enr   *fakeEnrollments
	reg   *registry.Registry
}

// newEnv starts a console with devices and events at sites tokyo and
// osaka, and accounts admin, operator, clerk, auditor (all sites) and
// tokyo-op, tokyo-clerk and tokyo-admin (of tokyo only). Its registry
// is a real one, empty (also the events page's People).
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, Shared{})
}

// newEnvOn is newEnv with the console's stores in a new file, the records
// sh has kept in sh (a replica's, for PostgreSQL).
func newEnvOn(t *testing.T, sh Shared) *env {
	t.Helper()
	st := testSharedStores(t, sh, []auth.User{
		{Name: "admin", Role: auth.Administrator, Sites: []string{"*"}},
		{Name: "operator", Role: auth.Operator, Sites: []string{"*"}},
		{Name: "clerk", Role: auth.Clerk, Sites: []string{"*"}},
		{Name: "auditor", Role: auth.Auditor, Sites: []string{"*"}},
		{Name: "tokyo-op", Role: auth.Operator, Sites: []string{"tokyo"}},
		{Name: "tokyo-clerk", Role: auth.Clerk, Sites: []string{"tokyo"}},
		{Name: "tokyo-admin", Role: auth.Administrator, Sites: []string{"tokyo"}},
	})
	f := &fakeHQ{results: map[string]proto.Result{}}
	for _, site := range []string{"osaka", "tokyo"} {
		f.devs = append(f.devs, hq.DeviceInfo{Site: site, Device: "gate-1", Online: true,
			Status: proto.Status{Online: true, Version: "1.2.0", Doors: []proto.DoorStatus{{Name: "main", State: "locked", Mode: "normal"}}}})
		for i := range 60 {
			ev := hq.StoredEvent{Site: site, Device: "gate-1"}
			ev.Seq, ev.Type, ev.Door, ev.Granted, ev.Time = uint64(i+1), "decision", "main", i%2 == 0, time.Date(2026, 4, 1, 9, 0, i, 0, time.UTC)
			ev.Credential, ev.Reason = "c1", "=cmd"
			f.events = append(f.events, ev)
		}
	}
	c := &fakeCommander{}
	enr := newFakeEnrollments()
	reg, err := registry.Open(filepath.Join(t.TempDir(), "registry.db"), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	con, err := New(Config{HQ: f, Commands: c, Accounts: st.Accounts, Audit: st.Audit, Alarms: st.Alarms, Ops: st.Ops, Names: fakeNames{}, Enrollments: enr,
		Import: reg, Records: reg, PeopleNames: reg, People: reg, Params: cheap})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, con: con, hq: f, cmd: c, audit: st.Audit, acc: st.Accounts, enr: enr, reg: reg}
}

// client returns an HTTP client with its own cookies that does not
// follow redirects.
func (e *env) client() *http.Client { return newClient() }

// newClient returns an HTTP client with its own cookies that does not
// follow redirects.
func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// testStores opens console stores in a temporary directory with users,
// each with testPassword; tb's cleanup closes them.
func testStores(tb testing.TB, users []auth.User) *Stores {
	tb.Helper()
	return testSharedStores(tb, Shared{}, users)
}

// testSharedStores is testStores with the records sh keeps kept in sh.
func testSharedStores(tb testing.TB, sh Shared, users []auth.User) *Stores {
	tb.Helper()
	st, err := OpenSharedStores(filepath.Join(tb.TempDir(), "console.db"), sh, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	hash, err := auth.HashPassword(testPassword, cheap)
	if err != nil {
		tb.Fatal(err)
	}
	for _, u := range users {
		u.PasswordHash = hash
		if err := st.Accounts.Add(tb.Context(), u); err != nil {
			tb.Fatal(err)
		}
	}
	return st
}

// login returns a client logged in as user.
func (e *env) login(user string) *http.Client {
	e.t.Helper()
	c := e.client()
	res, _ := e.post(c, "/login", url.Values{"user": {user}, "password": {testPassword}, "next": {"/"}})
	if res.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("login %s: status %d", user, res.StatusCode)
	}
	return c
}

// get fetches path and returns the response and body.
func (e *env) get(c *http.Client, path string, header ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// post posts form to path.
func (e *env) post(c *http.Client, path string, form url.Values) (*http.Response, string) {
	e.t.Helper()
	res, err := c.PostForm(e.srv.URL+path, form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// actions returns the actions in the audit log, oldest first.
func (e *env) actions() []string {
	var out []string
	_ = e.audit.Each(func(en audit.Entry) error { out = append(out, en.Actor+":"+en.Action); return nil })
	return out
}

// TestPermissions walks the route table for every role: the server
// refuses (403, audited) a route whose permission the role lacks, and
// sends a visitor without a session to log in.
func TestPermissions(t *testing.T) {
	e := newEnv(t)
	clients := map[auth.Role]*http.Client{}
	for _, r := range auth.Roles {
		name := map[auth.Role]string{auth.Administrator: "admin", auth.Operator: "operator", auth.Clerk: "clerk", auth.Auditor: "auditor"}[r]
		clients[r] = e.login(name)
	}
	anon := e.client()
	for _, rt := range e.con.routeTable() {
		if rt.perm == "" || rt.pattern == "POST /logout" || strings.Contains(rt.pattern, "/stream") {
			continue
		}
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.NewReplacer("{$}", "", "{id}", "0123", "{table}", "people").Replace(path)
		do := func(c *http.Client) int {
			if method == http.MethodPost {
				res, _ := e.post(c, path, url.Values{})
				return res.StatusCode
			}
			res, _ := e.get(c, path)
			return res.StatusCode
		}
		for role, c := range clients {
			t.Run(string(role)+" "+rt.pattern, func(t *testing.T) {
				got := do(c)
				if role.Can(rt.perm) && (got == http.StatusForbidden || got == http.StatusUnauthorized) {
					t.Errorf("status %d, want access", got)
				}
				if !role.Can(rt.perm) && got != http.StatusForbidden {
					t.Errorf("status %d, want 403", got)
				}
			})
		}
		t.Run("anonymous "+rt.pattern, func(t *testing.T) {
			want := http.StatusSeeOther
			if method == http.MethodPost {
				want = http.StatusUnauthorized
			}
			if got := do(anon); got != want {
				t.Errorf("status %d, want %d", got, want)
			}
		})
	}
	if acts := strings.Join(e.actions(), " "); !strings.Contains(acts, "clerk:denied") || !strings.Contains(acts, "auditor:denied") {
		t.Errorf("refusals not audited: %s", acts)
	}
	// The stream: the headers come at once, the body never ends.
	for role, c := range clients {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/live/stream", nil)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if want := role.Can(auth.PermEvents); (res.StatusCode == http.StatusOK) != want {
			t.Errorf("%s: live stream %d", role, res.StatusCode)
		}
		res.Body.Close()
		cancel()
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	tests := []struct {
		user, pw string
		want     int
		text     string
	}{
		{"admin", "wrong password!", http.StatusUnauthorized, "Wrong user name or password."},
		{"nobody", testPassword, http.StatusUnauthorized, "Wrong user name or password."},
	}
	for _, tt := range tests {
		res, body := e.post(c, "/login", url.Values{"user": {tt.user}, "password": {tt.pw}})
		if res.StatusCode != tt.want || !strings.Contains(body, tt.text) {
			t.Errorf("login %s: %d, want %d with %q", tt.user, res.StatusCode, tt.want, tt.text)
		}
	}
	for range loginFailsPerUser {
		e.post(c, "/login", url.Values{"user": {"operator"}, "password": {"wrong password!"}})
	}
	res, body := e.post(c, "/login", url.Values{"user": {"operator"}, "password": {testPassword}})
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed logins. Try again in 15 minutes.") {
		t.Errorf("after %d failures: %d %s", loginFailsPerUser, res.StatusCode, body)
	}
	// Another account from the same address still may.
	res, _ = e.post(c, "/login", url.Values{"user": {"admin"}, "password": {testPassword}, "next": {"//evil.example/"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		t.Errorf("login: %d to %q, want 303 to / (no open redirect)", res.StatusCode, res.Header.Get("Location"))
	}
	if res, _ := e.get(c, "/fleet"); res.StatusCode != http.StatusOK {
		t.Errorf("fleet after login: %d", res.StatusCode)
	}
	e.post(c, "/logout", nil)
	if res, _ := e.get(c, "/fleet"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("fleet after logout: %d", res.StatusCode)
	}
	want := "admin:login_failed nobody:login_failed operator:login_failed"
	if acts := strings.Join(e.actions(), " "); !strings.Contains(acts, want) || !strings.Contains(acts, "operator:login_refused admin:login admin:logout") {
		t.Errorf("audit %s", acts)
	}
}

// TestPasswordChange checks the one-time password flow and the form's
// validation, field by field.
func TestPasswordChange(t *testing.T) {
	e := newEnv(t)
	u, _ := e.acc.User(t.Context(), "clerk")
	u.MustChange = true
	if err := e.acc.Update(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	c := e.login("clerk")
	if res, _ := e.get(c, "/events"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/account/password" {
		t.Fatalf("must-change account reached events: %d", res.StatusCode)
	}
	tests := []struct {
		name, cur, pw, again, field string
	}{
		{"wrong current", "nope", "another long password", "another long password", "error-current"},
		{"short", testPassword, "short", "short", "error-new"},
		{"same", testPassword, testPassword, testPassword, "error-new"},
		{"mismatch", testPassword, "another long password", "another long passwore", "error-again"},
	}
	for _, tt := range tests {
		res, body := e.post(c, "/account/password", url.Values{"current": {tt.cur}, "new": {tt.pw}, "again": {tt.again}})
		if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="`+tt.field+`"`) {
			t.Errorf("%s: %d, want 422 naming %s", tt.name, res.StatusCode, tt.field)
		}
	}
	res, _ := e.post(c, "/account/password", url.Values{"current": {testPassword}, "new": {"another long password"}, "again": {"another long password"}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("change: %d", res.StatusCode)
	}
	if res, _ := e.get(c, "/events"); res.StatusCode != http.StatusOK {
		t.Errorf("events after the change: %d", res.StatusCode)
	}
}

func TestEventsPage(t *testing.T) {
	e := newEnv(t)
	admin := e.login("admin")
	res, body := e.get(admin, "/events?site=tokyo")
	if res.StatusCode != http.StatusOK || strings.Count(body, "<tr class=") != pageSize || !strings.Contains(body, "Yamada Taro") {
		t.Fatalf("events: %d, %d rows", res.StatusCode, strings.Count(body, "<tr class="))
	}
	next := regexp.MustCompile(`href="/events\?([^"]+)" id="next"`).FindStringSubmatch(body)
	if next == nil {
		t.Fatal("no next page link")
	}
	_, body = e.get(admin, "/events?"+strings.ReplaceAll(next[1], "&amp;", "&"))
	if n := strings.Count(body, "<tr class="); n != 10 || strings.Contains(body, `id="next"`) {
		t.Errorf("second page: %d rows", n)
	}
	if !strings.Contains(strings.Join(e.actions(), " "), "admin:view_names") {
		t.Error("names seen, not audited")
	}

	op := e.login("tokyo-op")
	_, body = e.get(op, "/events")
	if strings.Contains(body, "osaka") || strings.Contains(body, "Yamada") {
		t.Error("operator of tokyo sees osaka or names")
	}
	if res, _ := e.get(op, "/events?site=osaka"); res.StatusCode != http.StatusForbidden {
		t.Errorf("osaka for tokyo's operator: %d", res.StatusCode)
	}
	bad := []struct{ query, field string }{
		{"from=yesterday", "error-from"},
		{"to=2026-13-01T00:00", "error-to"},
	}
	for _, tt := range bad {
		if res, body := e.get(admin, "/events?"+tt.query); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tt.field) {
			t.Errorf("%s: %d, want 422 naming %s", tt.query, res.StatusCode, tt.field)
		}
	}
	res, body = e.get(op, "/events.csv")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if res.StatusCode != http.StatusOK || err != nil || len(rows) != 61 || rows[1][7] != "'=cmd" {
		t.Errorf("CSV: %d, %d rows, %v", res.StatusCode, len(rows), err)
	}
}

func TestCommands(t *testing.T) {
	e := newEnv(t)
	op := e.login("tokyo-op")
	bad := []struct {
		query, field string
	}{
		{"site=tokyo&device=gate-1&action=unlock", "error-door"},
		{"site=tokyo&device=gate-1&door=main&action=set_mode&mode=party", "error-mode"},
		{"site=tokyo&device=gate-1&action=explode", "error-action"},
	}
	for _, tt := range bad {
		if res, body := e.get(op, "/doors/command?"+tt.query); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tt.field) {
			t.Errorf("%s: %d, want 422 naming %s", tt.query, res.StatusCode, tt.field)
		}
	}
	if res, _ := e.get(op, "/doors/command?site=osaka&device=gate-1&action=lockdown"); res.StatusCode != http.StatusForbidden {
		t.Errorf("osaka for tokyo's operator: %d", res.StatusCode)
	}
	if res, body := e.get(op, "/doors/command?site=tokyo&device=gate-1&action=lockdown"); res.StatusCode != http.StatusOK || !strings.Contains(body, `id="confirm"`) {
		t.Fatalf("confirmation page: %d", res.StatusCode)
	}
	if len(e.cmd.sent) != 0 {
		t.Fatal("a confirmation page sent a command")
	}
	res, _ := e.post(op, "/doors/command", url.Values{"site": {"tokyo"}, "device": {"gate-1"}, "action": {"lockdown"}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || len(e.cmd.sent) != 1 || !strings.HasPrefix(loc, "/commands/") {
		t.Fatalf("send: %d to %q, sent %v", res.StatusCode, loc, e.cmd.sent)
	}
	id := e.cmd.sent[0].ID
	if _, body := e.get(op, loc); !strings.Contains(body, "result-waiting") || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("result page does not wait")
	}
	e.hq.mu.Lock()
	e.hq.results[id] = proto.Result{ID: id, Site: "tokyo", Device: "gate-1", Kind: "command", Status: "ok"}
	e.hq.mu.Unlock()
	if _, body := e.get(op, loc); !strings.Contains(body, `<b id="result-status">ok</b>`) {
		t.Error("result page does not show the answer")
	}
	var last audit.Entry
	_ = e.audit.Each(func(en audit.Entry) error {
		if en.Action == "command" {
			last = en
		}
		return nil
	})
	if last.Actor != "tokyo-op" || !strings.Contains(last.Before, `"mode":"normal"`) || !strings.Contains(last.After, `"action":"lockdown"`) {
		t.Errorf("audit entry %+v", last)
	}
}

func TestLanguageAndHeaders(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	res, body := e.get(c, "/login", "Accept-Language", "ja-JP,ja;q=0.9")
	if !strings.Contains(body, "<title>ログイン - tobira</title>") || res.Header.Get("Content-Language") != "ja" {
		t.Errorf("Japanese login page: %q", body[:200])
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || res.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", res.Header)
	}
	res, _ = e.get(c, "/lang/en?next=/login")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Errorf("lang switch: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if _, body := e.get(c, "/login", "Accept-Language", "ja"); !strings.Contains(body, "<title>Log in - tobira</title>") {
		t.Error("the cookie does not win over Accept-Language")
	}
	if res, _ := e.get(c, "/lang/ja?next=https://evil.example/"); res.Header.Get("Location") != "/" {
		t.Errorf("open redirect to %q", res.Header.Get("Location"))
	}
	res, body = e.get(c, asset("app.js"))
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Cache-Control"), "immutable") || !strings.Contains(body, "EventSource") {
		t.Errorf("asset: %d %v", res.StatusCode, res.Header)
	}
	// A cross-origin form post is refused (CSRF).
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/login", strings.NewReader("user=admin"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site post: %d, want 403", res.StatusCode)
	}
}

// TestTemplateKeys checks that every message key the templates name
// literally exists in every catalogue, and the keys made from values.
func TestTemplateKeys(t *testing.T) {
	lit := regexp.MustCompile(`\.T "([a-z_.]+)"`)
	files, _ := filepath.Glob("templates/*.html")
	var keys []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			keys = append(keys, m[1])
		}
	}
	for _, r := range auth.Roles {
		keys = append(keys, "role."+string(r))
	}
	for _, a := range doorActions {
		keys = append(keys, "action."+a)
	}
	for _, m := range doorModes {
		keys = append(keys, "mode."+m)
	}
	for _, n := range nav {
		keys = append(keys, n.Key)
	}
	for _, table := range registry.Tables {
		keys = append(keys, "table."+table)
		for _, c := range registry.FormColumns(table) {
			keys = append(keys, "field."+c)
		}
	}
	for _, opts := range fieldOptions {
		for _, o := range opts {
			keys = append(keys, o[1])
		}
	}
	keys = append(keys, "field."+personNameField)
	for k := range recordNotices {
		keys = append(keys, recordNotices[k])
	}
	for _, a := range []string{"login", "logout", "login_failed", "login_refused", "denied", "password_change", "command", "view_names",
		"export_events", "export_audit", "add_user", "reset_password", "record_put", "record_delete", "revoke", "crl_import", "set_name"} {
		keys = append(keys, "audit.action."+a)
	}
	for _, l := range i18n.Langs {
		for _, k := range keys {
			if !l.Has(k) {
				t.Errorf("%s has no message %q", l, k)
			}
		}
	}
}

// TestLive checks that a published event reaches a browser of the live
// feed, and that a subscriber that does not read never blocks Publish.
func TestLive(t *testing.T) {
	e := newEnv(t)
	_, stuck := e.con.live.subscribe() // never reads
	defer stuck()
	c := e.login("tokyo-op")
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/live/stream", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := c.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", res.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(res.Body)
	if line, _ := r.ReadString('\n'); line != ": live\n" {
		t.Fatalf("first line %q", line)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2 * liveBuffer {
			ev := proto.Event{Seq: uint64(i + 1), Type: "decision", Door: "main", Time: time.Now()}
			e.con.Publish("osaka", "gate-1", ev) // not tokyo-op's site
			e.con.Publish("tokyo", "gate-1", ev)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a stuck subscriber")
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, `"site":"tokyo"`) || !strings.Contains(line, `"result":"denied"`) {
				t.Errorf("first event %q", line)
			}
			break
		}
	}
}
