package console

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
)

// testIdP is an OpenID Connect provider for the tests: discovery, keys,
// an authorization endpoint that logs in whoever the test says at once,
// and a token endpoint that checks the client and PKCE and signs the ID
// token, which the test may spoil.
type testIdP struct {
	t   *testing.T
	srv *httptest.Server
	key *rsa.PrivateKey

	mu sync.Mutex
	// user is the preferred_username of the next login.
	user string
	// spoil changes the next ID token's claims.
	spoil func(claims map[string]any)
	// codes maps an issued code to its nonce and PKCE challenge.
	codes map[string][2]string
}

// newTestIdP starts a provider whose client is "tobira" with secret
// "s3cret".
func newTestIdP(t *testing.T) *testIdP {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &testIdP{t: t, key: key, codes: map[string][2]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"issuer": p.srv.URL, "authorization_endpoint": p.srv.URL + "/authorize",
			"token_endpoint": p.srv.URL + "/token", "jwks_uri": p.srv.URL + "/jwks", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		b64 := base64.RawURLEncoding.EncodeToString
		writeJSON(w, map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	})
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// authorize logs the user in at once and sends the browser back with a
// code.
func (p *testIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != "tobira" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" {
		http.Error(w, "bad authorization request: "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	code := rand.Text()
	p.mu.Lock()
	p.codes[code] = [2]string{q.Get("nonce"), q.Get("code_challenge")}
	p.mu.Unlock()
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
}

// token exchanges a code for a signed ID token, checking the client's
// secret and the PKCE verifier.
func (p *testIdP) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	p.mu.Lock()
	c, known := p.codes[r.PostFormValue("code")]
	delete(p.codes, r.PostFormValue("code"))
	user, spoil := p.user, p.spoil
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	if id != "tobira" || secret != "s3cret" || !known || base64.RawURLEncoding.EncodeToString(sum[:]) != c[1] {
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]string{"error": "invalid_grant"})
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": p.srv.URL, "aud": "tobira", "sub": "sub-" + user, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"nonce": c[0], "preferred_username": user}
	if spoil != nil {
		spoil(claims)
	}
	writeJSON(w, map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": p.sign(claims)})
}

// sign returns the claims as a JWT signed with RS256.
func (p *testIdP) sign(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	head := enc(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(head))
	sig, err := rsa.SignPKCS1v15(rand.Reader, p.key, crypto.SHA256, sum[:])
	if err != nil {
		p.t.Fatal(err)
	}
	return head + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// next sets who logs in next and how the ID token is spoiled.
func (p *testIdP) next(user string, spoil func(map[string]any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user, p.spoil = user, spoil
}

// oidcConsole starts a console on e's accounts and audit log with the
// OIDC login at idp, and returns its URL (at localhost, the redirect
// URL's host, where its cookies are).
func oidcConsole(t *testing.T, e *env, idp *testIdP, createRole auth.Role) string {
	srv := httptest.NewUnstartedServer(nil)
	base := "http://localhost:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	con, err := New(Config{HQ: e.hq, Accounts: e.acc, Audit: e.audit, Params: cheap, PublicURL: base,
		OIDC: &OIDCConfig{Issuer: idp.srv.URL, ClientID: "tobira", ClientSecret: "s3cret", CreateRole: createRole, CreateSites: []string{"tokyo"}, Label: "Example IdP"}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = con
	srv.Start()
	t.Cleanup(srv.Close)
	return base
}

// runOIDCLogin runs an OIDC login through the console con and the provider
// with the client c, spoiling the callback with tamper, and returns the
// console's last answer.
func runOIDCLogin(t *testing.T, c *http.Client, con string, tamper func(url.Values)) *http.Response {
	t.Helper()
	get := func(u string) *http.Response {
		res, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := get(con + "/login/oidc?next=/fleet")
	if res.StatusCode != http.StatusFound {
		t.Fatalf("start: %d", res.StatusCode)
	}
	res = get(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound {
		t.Fatalf("provider: %d", res.StatusCode)
	}
	back, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := back.Query()
	if tamper != nil {
		tamper(q)
	}
	back.RawQuery = q.Encode()
	return get(back.String())
}

// TestOIDC logs in through a test provider, and refuses a wrong state,
// nonce, audience, issuer, signature, an expired token, an unknown user
// and a disabled one, each audited with the reason.
func TestOIDC(t *testing.T) {
	e := newEnv(t)
	idp := newTestIdP(t)
	con := oidcConsole(t, e, idp, "")
	u, _ := e.acc.User(t.Context(), "tokyo-op")
	u.Disabled = true
	if err := e.acc.Update(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		user   string
		spoil  func(map[string]any)
		tamper func(url.Values)
		status int
		reason string
	}{
		{"wrong state", "operator", nil, func(q url.Values) { q.Set("state", "forged") }, http.StatusUnauthorized, "wrong or missing state"},
		{"no state", "operator", nil, func(q url.Values) { q.Del("state") }, http.StatusUnauthorized, "wrong or missing state"},
		{"wrong nonce", "operator", func(c map[string]any) { c["nonce"] = "replayed" }, nil, http.StatusUnauthorized, "wrong nonce"},
		{"wrong audience", "operator", func(c map[string]any) { c["aud"] = "another-client" }, nil, http.StatusUnauthorized, "audience"},
		{"wrong issuer", "operator", func(c map[string]any) { c["iss"] = "https://evil.example" }, nil, http.StatusUnauthorized, "different provider"},
		{"expired", "operator", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, nil, http.StatusUnauthorized, "expired"},
		{"code reused or forged", "operator", nil, func(q url.Values) { q.Set("code", "forged") }, http.StatusUnauthorized, "code exchange"},
		{"unknown user", "newbie", nil, nil, http.StatusUnauthorized, "unknown users are refused"},
		{"no claim", "", nil, nil, http.StatusUnauthorized, `no claim "preferred_username"`},
		{"disabled", "tokyo-op", nil, nil, http.StatusForbidden, "account disabled (oidc)"},
		{"ok", "operator", nil, nil, http.StatusSeeOther, "oidc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp.next(tt.user, tt.spoil)
			c := e.client()
			res := runOIDCLogin(t, c, con, tt.tamper)
			if res.StatusCode != tt.status {
				t.Fatalf("callback: %d, want %d", res.StatusCode, tt.status)
			}
			var last audit.Entry
			_ = e.audit.Each(func(en audit.Entry) error { last = en; return nil })
			if !strings.Contains(last.After, tt.reason) {
				t.Errorf("audit %s %s %q, want the reason %q", last.Actor, last.Action, last.After, tt.reason)
			}
			if tt.status != http.StatusSeeOther {
				return
			}
			if res.Header.Get("Location") != "/fleet" || last.Action != "login" || last.Actor != "operator" {
				t.Errorf("login to %q, audited %+v", res.Header.Get("Location"), last)
			}
			res2, err := c.Get(con + "/fleet")
			if err != nil || res2.StatusCode != http.StatusOK {
				t.Errorf("fleet after the OIDC login: %v %v", res2.StatusCode, err)
			}
			res2.Body.Close()
		})
	}
}

// TestOIDCCreate creates an account of the configured role and sites for
// an unknown user, audited.
func TestOIDCCreate(t *testing.T) {
	e := newEnv(t)
	idp := newTestIdP(t)
	con := oidcConsole(t, e, idp, auth.Clerk)
	idp.next("newbie", nil)
	if res := runOIDCLogin(t, e.client(), con, nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: %d", res.StatusCode)
	}
	u, err := e.acc.User(t.Context(), "newbie")
	if err != nil || u.Role != auth.Clerk || strings.Join(u.Sites, ",") != "tokyo" || u.PasswordHash != "" {
		t.Fatalf("created %+v, %v", u, err)
	}
	if acts := strings.Join(e.actions(), " "); !strings.Contains(acts, "oidc:sub-newbie:add_user newbie:login") {
		t.Errorf("audit %s", acts)
	}
	// An account without a password cannot log in with an empty one.
	if res, _ := e.post(e.client(), "/login", url.Values{"user": {"newbie"}, "password": {""}}); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("password login of an OIDC account: %d", res.StatusCode)
	}
}
