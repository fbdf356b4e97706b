package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
)

// OIDCConfig configures the login at a company identity provider
// (OpenID Connect, authorization code flow with PKCE, state and nonce).
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; its discovery document is
	// read at the first login.
	Issuer string
	// ClientID and ClientSecret are the console's client at the
	// provider.
	ClientID, ClientSecret string
	// RedirectURL is where the provider sends the browser back: the
	// console's /login/oidc/callback (default: Config.PublicURL +
	// "/login/oidc/callback").
	RedirectURL string
	// Claim is the ID token's claim naming the console account (default
	// "preferred_username"); its value must be a login name (letters,
	// digits, '-', '_', '.').
	Claim string
	// CreateRole, when set, creates an account of this role for a name
	// that has none; empty (the default) refuses unknown names.
	CreateRole auth.Role
	// CreateSites are the sites of created accounts (default: every
	// site, "*").
	CreateSites []string
	// Label names the provider on the login button (default "OIDC").
	Label string
	// Client makes the requests to the provider (default
	// http.DefaultClient).
	Client *http.Client
}

// oidcLogin is the console's OIDC client: the configuration and, once
// discovered, the provider.
type oidcLogin struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider
}

// initLogins sets up the passkeys (PublicURL) and the OIDC login.
func (s *Server) initLogins() error {
	if s.cfg.PublicURL != "" {
		wa, err := newWebAuthn(s.cfg.PublicURL)
		if err != nil {
			return err
		}
		s.wa = wa
	}
	if s.cfg.OIDC == nil {
		return nil
	}
	c := *s.cfg.OIDC
	if c.Issuer == "" || c.ClientID == "" {
		return fmt.Errorf("%w: OIDC needs the issuer and the client ID", ErrConfig)
	}
	if c.RedirectURL == "" {
		if s.cfg.PublicURL == "" {
			return fmt.Errorf("%w: OIDC needs a redirect URL or the console URL", ErrConfig)
		}
		c.RedirectURL = strings.TrimSuffix(s.cfg.PublicURL, "/") + "/login/oidc/callback"
	}
	if c.Claim == "" {
		c.Claim = "preferred_username"
	}
	if c.CreateRole != "" {
		if _, err := auth.ParseRole(string(c.CreateRole)); err != nil {
			return fmt.Errorf("%w: OIDC role of created accounts: %w", ErrConfig, err)
		}
	}
	if len(c.CreateSites) == 0 {
		c.CreateSites = []string{auth.AllSites}
	}
	if c.Label == "" {
		c.Label = "OIDC"
	}
	if c.Client == nil {
		c.Client = http.DefaultClient
	}
	s.oidc = &oidcLogin{cfg: c}
	return nil
}

// config returns the OAuth 2 configuration and the ID token verifier,
// discovering the provider on first use (and again after a failure).
func (o *oidcLogin) config(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider == nil {
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.cfg.Client), o.cfg.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("OIDC provider %s: %w", o.cfg.Issuer, err)
		}
		o.provider = p
	}
	oc := &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, RedirectURL: o.cfg.RedirectURL,
		Endpoint: o.provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	return oc, o.provider.Verifier(&oidc.Config{ClientID: o.cfg.ClientID}), nil
}

// The session keys of an OIDC login in progress.
const (
	sessionOIDCState    = "oidc_state"
	sessionOIDCNonce    = "oidc_nonce"
	sessionOIDCVerifier = "oidc_verifier"
	sessionOIDCNext     = "oidc_next"
)

// oidcStart sends the browser to the provider with a fresh state, nonce
// and PKCE verifier, kept in the session.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.oidc == nil {
		s.fail(w, r, rq, http.StatusNotFound, "error.not_found")
		return
	}
	oc, _, err := s.oidc.config(r.Context())
	if err != nil {
		s.log.Error("console: OIDC", "err", err)
		s.fail(w, r, rq, http.StatusBadGateway, "login.oidc_failed")
		return
	}
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	ctx := r.Context()
	s.sessions.Put(ctx, sessionOIDCState, state)
	s.sessions.Put(ctx, sessionOIDCNonce, nonce)
	s.sessions.Put(ctx, sessionOIDCVerifier, verifier)
	s.sessions.Put(ctx, sessionOIDCNext, localPath(r.URL.Query().Get("next")))
	http.Redirect(w, r, oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// oidcCallback takes the provider's answer: it checks the state,
// exchanges the code (with the PKCE verifier), verifies the ID token
// (signature, issuer, audience, expiry) and its nonce, finds (or
// creates) the account its claim names and logs it in. Every refusal is
// audited and rate limited per client address.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request, rq *request) {
	ctx := r.Context()
	state, nonce := s.sessions.PopString(ctx, sessionOIDCState), s.sessions.PopString(ctx, sessionOIDCNonce)
	verifier, next := s.sessions.PopString(ctx, sessionOIDCVerifier), s.sessions.PopString(ctx, sessionOIDCNext)
	if s.oidc == nil {
		s.fail(w, r, rq, http.StatusNotFound, "error.not_found")
		return
	}
	addrKey := "addr:" + rq.addr
	if ok, _ := s.perAddr.Allow(addrKey); !ok {
		s.record(rq, audit.Entry{Action: "login_refused", After: "rate limited (OIDC)"})
		s.render(w, r, rq, http.StatusTooManyRequests, "login", "login.title", s.loginData(loginForm{Next: "/", Error: "login.oidc_failed"}))
		return
	}
	u, err := s.oidcAccount(r, rq, state, nonce, verifier)
	if err != nil {
		s.perAddr.Fail(addrKey)
		s.record(rq, audit.Entry{Actor: u.Name, Action: "oidc_refused", After: err.Error()})
		s.render(w, r, rq, http.StatusUnauthorized, "login", "login.title", s.loginData(loginForm{Next: next, Error: "login.oidc_failed"}))
		return
	}
	if next == "" {
		next = "/"
	}
	s.startSession(w, r, rq, u, "oidc", next)
}

// errOIDC marks an OIDC answer that is refused.
var errOIDC = errors.New("OIDC login refused")

// oidcAccount checks the provider's answer in r against the session's
// state, nonce and verifier and returns the account it names (its Name
// set also with an error, once known).
func (s *Server) oidcAccount(r *http.Request, rq *request, state, nonce, verifier string) (auth.User, error) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return auth.User{}, fmt.Errorf("%w: the provider answered %s: %s", errOIDC, e, q.Get("error_description"))
	}
	if state == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		return auth.User{}, fmt.Errorf("%w: wrong or missing state", errOIDC)
	}
	oc, v, err := s.oidc.config(r.Context())
	if err != nil {
		return auth.User{}, err
	}
	ctx := oidc.ClientContext(r.Context(), s.oidc.cfg.Client)
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return auth.User{}, fmt.Errorf("%w: code exchange: %w", errOIDC, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return auth.User{}, fmt.Errorf("%w: no ID token", errOIDC)
	}
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		return auth.User{}, fmt.Errorf("%w: ID token: %w", errOIDC, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return auth.User{}, fmt.Errorf("%w: wrong nonce", errOIDC)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return auth.User{}, fmt.Errorf("%w: claims: %w", errOIDC, err)
	}
	name, _ := claims[s.oidc.cfg.Claim].(string)
	if name == "" {
		return auth.User{}, fmt.Errorf("%w: the ID token has no claim %q", errOIDC, s.oidc.cfg.Claim)
	}
	return s.oidcUser(r.Context(), rq, name, idt.Subject)
}

// oidcUser returns the account name, creating it when the configuration
// says so (audited as done by the provider's subject, from rq's address).
func (s *Server) oidcUser(ctx context.Context, rq *request, name, subject string) (auth.User, error) {
	u, err := s.cfg.Accounts.User(ctx, name)
	if !errors.Is(err, auth.ErrNoUser) {
		if err != nil {
			return auth.User{Name: name}, err
		}
		return u, nil
	}
	c := s.oidc.cfg
	if c.CreateRole == "" {
		return auth.User{Name: name}, fmt.Errorf("%w: no account %q (unknown users are refused)", errOIDC, name)
	}
	u = auth.User{Name: name, Role: c.CreateRole, Sites: c.CreateSites}
	if err := s.cfg.Accounts.Add(ctx, u); err != nil {
		return auth.User{Name: name}, fmt.Errorf("%w: create account %q: %w", errOIDC, name, err)
	}
	created, err := s.cfg.Accounts.User(ctx, name)
	if err == nil {
		s.record(&request{addr: rq.addr}, audit.Entry{Actor: "oidc:" + subject, Action: "add_user", Target: name, After: accountState(created)})
	}
	return created, err
}

// oidcLoginURL returns the URL that starts an OIDC login returning to
// next.
func oidcLoginURL(next string) string { return "/login/oidc?next=" + url.QueryEscape(next) }
