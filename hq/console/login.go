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
}

// loginPage shows the login form.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.render(w, r, rq, http.StatusOK, "login", "login.title", loginForm{Next: localPath(r.URL.Query().Get("next"))})
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
		s.render(w, r, rq, http.StatusTooManyRequests, "login", "login.title", f)
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
		s.render(w, r, rq, http.StatusUnauthorized, "login", "login.title", f)
		return
	}
	s.perUser.Reset(userKey)
	s.startSession(w, r, rq, u, "password", f.Next)
}

// sessionGen is the session key of the account's Generation at login.
const sessionGen = "gen"

// startSession logs u in (after a password, passkey or OIDC login,
// named by method): a new session token, audited. A disabled account is
// refused.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, rq *request, u auth.User, method, next string) {
	if u.Disabled {
		s.record(rq, audit.Entry{Actor: u.Name, Action: "login_refused", After: "account disabled (" + method + ")"})
		s.render(w, r, rq, http.StatusForbidden, "login", "login.title", loginForm{User: u.Name, Next: next, Error: "login.disabled"})
		return
	}
	if err := s.sessions.RenewToken(r.Context()); err != nil {
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	s.sessions.Put(r.Context(), sessionUser, u.Name)
	s.sessions.Put(r.Context(), sessionGen, u.Generation)
	rq.user = &u
	s.record(rq, audit.Entry{Action: "login", After: method})
	http.Redirect(w, r, next, http.StatusSeeOther)
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
