package console

import (
	"errors"
	"math"
	"net/http"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
)

// loginForm is the login page's data.
type loginForm struct {
	User, Next string
	// Error is the message key of what went wrong ("" none).
	Error string
	// Minutes is how long a refused login must wait.
	Minutes int
	// Passkeys offers the passkey login.
	Passkeys bool
	// OIDC is the identity provider's label on its login button (""
	// none), OIDCURL the URL starting that login.
	OIDC, OIDCURL string
}

// loginData returns f with the other logins the console offers.
func (s *Server) loginData(f loginForm) loginForm {
	f.Passkeys = s.wa != nil
	if s.oidc != nil {
		f.OIDC, f.OIDCURL = s.oidc.cfg.Label, oidcLoginURL(f.Next)
	}
	return f
}

// loginPage shows the login form.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.render(w, r, rq, http.StatusOK, "login", "login.title", s.loginData(loginForm{Next: localPath(r.URL.Query().Get("next"))}))
}

// dummyHash is checked when the account does not exist, so that a login
// takes as long for a wrong name as for a wrong password.
var dummyHash, _ = auth.HashPassword("no account has this password", auth.Params{Time: 1, MemoryKiB: 64 * 1024, Threads: 4})

// login checks a name and password, rate limited per account and per
// client address, and starts a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request, rq *request) {
	f := loginForm{User: r.PostFormValue("user"), Next: localPath(r.PostFormValue("next"))}
	userKey, addrKey := "user:"+f.User, "addr:"+rq.addr
	okU, waitU := s.perUser.Allow(userKey)
	okA, waitA := s.perAddr.Allow(addrKey)
	if !okU || !okA {
		f.Error, f.Minutes = "login.too_many", int(math.Ceil(max(waitU, waitA).Minutes()))
		s.record(rq, audit.Entry{Actor: f.User, Action: "login_refused", After: "rate limited"})
		s.render(w, r, rq, http.StatusTooManyRequests, "login", "login.title", s.loginData(f))
		return
	}
	u, err := s.cfg.Accounts.User(r.Context(), f.User)
	hash := u.PasswordHash
	if err != nil || hash == "" {
		hash = dummyHash
	}
	ok, cerr := auth.CheckPassword(hash, r.PostFormValue("password"))
	if err != nil && !errors.Is(err, auth.ErrNoUser) {
		s.log.Error("console login: cannot read account", "user", f.User, "err", err)
	}
	if err != nil || cerr != nil || !ok || u.PasswordHash == "" {
		s.perUser.Fail(userKey)
		s.perAddr.Fail(addrKey)
		s.record(rq, audit.Entry{Actor: f.User, Action: "login_failed"})
		f.Error = "login.failed"
		s.render(w, r, rq, http.StatusUnauthorized, "login", "login.title", s.loginData(f))
		return
	}
	s.perUser.Reset(userKey)
	s.startSession(w, r, rq, u, "password", f.Next)
}

// sessionGen is the session key of the account's Generation at login.
const sessionGen = "gen"

// startSession logs u in after a password or OIDC login (named by
// method) and sends the browser to next; a disabled account is shown
// the login page with the reason.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, rq *request, u auth.User, method, next string) {
	switch key := s.beginSession(r, rq, u, method); key {
	case "":
		http.Redirect(w, r, next, http.StatusSeeOther)
	case "login.disabled":
		s.render(w, r, rq, http.StatusForbidden, "login", "login.title", s.loginData(loginForm{User: u.Name, Next: next, Error: key}))
	default:
		s.fail(w, r, rq, http.StatusInternalServerError, key)
	}
}

// beginSession starts u's session with a new token, audited, and returns
// "" or the message key of why not: a disabled account (audited) or a
// session that could not be renewed.
func (s *Server) beginSession(r *http.Request, rq *request, u auth.User, method string) string {
	if u.Disabled {
		s.record(rq, audit.Entry{Actor: u.Name, Action: "login_refused", After: "account disabled (" + method + ")"})
		return "login.disabled"
	}
	if err := s.sessions.RenewToken(r.Context()); err != nil {
		s.log.Error("console login: renew the session", "user", u.Name, "err", err)
		return "error.internal"
	}
	s.sessions.Put(r.Context(), sessionUser, u.Name)
	s.sessions.Put(r.Context(), sessionGen, u.Generation)
	rq.user = &u
	s.record(rq, audit.Entry{Action: "login", After: method})
	return ""
}

// logout ends the session.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, rq *request) {
	s.record(rq, audit.Entry{Action: "logout"})
	if err := s.sessions.Destroy(r.Context()); err != nil {
		s.log.Warn("console logout", "user", rq.user.Name, "err", err)
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// passwordForm is the password page's data.
type passwordForm struct {
	// Errors maps a field to the message key of its error.
	Errors map[string]string
	// Done reports a changed password.
	Done bool
}

// passwordPage shows the form to change one's password.
func (s *Server) passwordPage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.render(w, r, rq, http.StatusOK, "password", "password.title", passwordForm{})
}

// changePassword checks the current password and sets a new one.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, rq *request) {
	f := passwordForm{Errors: map[string]string{}}
	cur, pw, again := r.PostFormValue("current"), r.PostFormValue("new"), r.PostFormValue("again")
	if ok, err := auth.CheckPassword(rq.user.PasswordHash, cur); err != nil || !ok {
		f.Errors["current"] = "password.wrong"
	}
	switch {
	case len(pw) < auth.MinPasswordLen:
		f.Errors["new"] = "password.short"
	case pw == cur:
		f.Errors["new"] = "password.same"
	case pw != again:
		f.Errors["again"] = "password.mismatch"
	}
	if len(f.Errors) > 0 {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "password", "password.title", f)
		return
	}
	hash, err := auth.HashPassword(pw, s.cfg.Params)
	if err == nil {
		u := *rq.user
		u.PasswordHash, u.MustChange = hash, false
		err = s.cfg.Accounts.Update(r.Context(), u)
	}
	if err == nil {
		err = s.sessions.RenewToken(r.Context())
	}
	if err != nil {
		s.log.Error("console: cannot change password", "user", rq.user.Name, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	s.record(rq, audit.Entry{Action: "password_change", Target: rq.user.Name})
	s.render(w, r, rq, http.StatusOK, "password", "password.title", passwordForm{Done: true})
}
