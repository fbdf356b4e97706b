package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/sync/proto"
)

// accountRow is one account of the list.
type accountRow struct {
	auth.User
	// Self marks the logged-in account.
	Self bool
}

// accountsPage lists the accounts (administrators of every site only).
func (s *Server) accountsPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !s.allSitesAdmin(w, r, rq) {
		return
	}
	users, err := s.cfg.Accounts.Users(r.Context())
	if err != nil {
		s.internal(w, r, rq, "list accounts", err)
		return
	}
	rows := make([]accountRow, len(users))
	for i, u := range users {
		rows[i] = accountRow{User: u, Self: u.Name == rq.user.Name}
	}
	s.render(w, r, rq, http.StatusOK, "accounts", "accounts.title", rows)
}

// allSitesAdmin refuses (403, audited) an account not granted every
// site: one limited to some sites could otherwise give itself the rest.
func (s *Server) allSitesAdmin(w http.ResponseWriter, r *http.Request, rq *request) bool {
	if rq.user.AllSites() {
		return true
	}
	s.record(rq, audit.Entry{Action: "denied", Target: r.Method + " " + r.URL.Path, After: "not granted every site"})
	s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_accounts")
	return false
}

// internal logs err (what was being done) and shows the internal error
// page.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, rq *request, what string, err error) {
	s.log.Error("console: cannot "+what, "user", rq.user.Name, "err", err)
	s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
}

// accountForm is the data of the new-account and edit-account forms.
type accountForm struct {
	// Name, Role, Sites and Disabled are the values entered (Sites as
	// typed: names separated by spaces or commas).
	Name, Role, Sites string
	Disabled          bool
	// Errors maps a field to the message key of its error; "form" is
	// an error of the whole form.
	Errors map[string]string
	// Roles are the roles to choose from.
	Roles []auth.Role
	// User is the account edited (edit form only).
	User *auth.User
	// Password is a one-time password to show once ("" none).
	Password string
	// Saved reports a saved change.
	Saved bool
}

// newAccountForm returns an empty form with the roles.
func newAccountForm() accountForm {
	return accountForm{Errors: map[string]string{}, Roles: auth.Roles}
}

// parseAccount reads the role, sites and disabled fields of r into f and
// returns them, with an error per bad field in f.Errors.
func parseAccount(r *http.Request, f *accountForm) (auth.Role, []string) {
	f.Role, f.Sites, f.Disabled = r.PostFormValue("role"), strings.TrimSpace(r.PostFormValue("sites")), r.PostFormValue("disabled") == "on"
	role, err := auth.ParseRole(f.Role)
	if err != nil {
		f.Errors["role"] = "accounts.bad_role"
	}
	sites := strings.FieldsFunc(f.Sites, func(c rune) bool { return c == ',' || c == ' ' })
	slices.Sort(sites)
	sites = slices.Compact(sites)
	switch {
	case len(sites) == 0:
		f.Errors["sites"] = "accounts.no_site"
	case slices.ContainsFunc(sites, func(s string) bool { return s != auth.AllSites && proto.CheckName(s) != nil }):
		f.Errors["sites"] = "accounts.bad_site"
	}
	return role, sites
}

// newAccountPage shows the form of a new account.
func (s *Server) newAccountPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !s.allSitesAdmin(w, r, rq) {
		return
	}
	f := newAccountForm()
	f.Role, f.Sites = string(auth.Operator), auth.AllSites
	s.render(w, r, rq, http.StatusOK, "account", "accounts.new", f)
}

// createAccount adds an account with a one-time password, shown once.
func (s *Server) createAccount(w http.ResponseWriter, r *http.Request, rq *request) {
	if !s.allSitesAdmin(w, r, rq) {
		return
	}
	f := newAccountForm()
	f.Name = strings.TrimSpace(r.PostFormValue("name"))
	role, sites := parseAccount(r, &f)
	if proto.CheckName(f.Name) != nil {
		f.Errors["name"] = "accounts.bad_name"
	}
	pw := auth.RandomPassword()
	u := auth.User{Name: f.Name, Role: role, Sites: sites, MustChange: true, Disabled: f.Disabled}
	if len(f.Errors) == 0 {
		hash, err := auth.HashPassword(pw, s.cfg.Params)
		if err == nil {
			u.PasswordHash = hash
			err = s.cfg.Accounts.Add(r.Context(), u)
		}
		switch {
		case errors.Is(err, auth.ErrExists):
			f.Errors["name"] = "accounts.exists"
		case err != nil:
			s.internal(w, r, rq, "add an account", err)
			return
		}
	}
	if len(f.Errors) > 0 {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "account", "accounts.new", f)
		return
	}
	s.record(rq, audit.Entry{Action: "add_user", Target: u.Name, After: accountState(u)})
	s.render(w, r, rq, http.StatusOK, "account_password", "accounts.password_title", accountForm{Name: u.Name, Password: pw})
}

// accountState is the audit's before or after of an account: what an
// administrator may change, as JSON (never the password hash).
func accountState(u auth.User) string {
	keys := make([]string, len(u.Passkeys))
	for i, p := range u.Passkeys {
		keys[i] = p.Name
	}
	b, _ := json.Marshal(struct {
		Role     auth.Role `json:"role"`
		Sites    []string  `json:"sites"`
		Disabled bool      `json:"disabled"`
		Passkeys []string  `json:"passkeys"`
	}{u.Role, u.Sites, u.Disabled, keys})
	return string(b)
}

// editedAccount returns the account named in the path, or shows the
// error (not found: 404).
func (s *Server) editedAccount(w http.ResponseWriter, r *http.Request, rq *request) (auth.User, bool) {
	if !s.allSitesAdmin(w, r, rq) {
		return auth.User{}, false
	}
	u, err := s.cfg.Accounts.User(r.Context(), r.PathValue("name"))
	if errors.Is(err, auth.ErrNoUser) {
		s.fail(w, r, rq, http.StatusNotFound, "error.not_found")
		return auth.User{}, false
	}
	if err != nil {
		s.internal(w, r, rq, "read an account", err)
		return auth.User{}, false
	}
	return u, true
}

// editForm returns the edit form of u.
func editForm(u auth.User) accountForm {
	f := newAccountForm()
	f.Name, f.Role, f.Sites, f.Disabled, f.User = u.Name, string(u.Role), strings.Join(u.Sites, " "), u.Disabled, &u
	return f
}

// accountPage shows one account's form.
func (s *Server) accountPage(w http.ResponseWriter, r *http.Request, rq *request) {
	u, ok := s.editedAccount(w, r, rq)
	if !ok {
		return
	}
	s.render(w, r, rq, http.StatusOK, "account", "accounts.edit", editForm(u))
}

// updateAccount changes an account's role, sites and whether it is
// disabled (which ends its sessions). The last administrator of every
// site is kept (auth.ErrLastAdmin).
func (s *Server) updateAccount(w http.ResponseWriter, r *http.Request, rq *request) {
	old, ok := s.editedAccount(w, r, rq)
	if !ok {
		return
	}
	f := editForm(old)
	role, sites := parseAccount(r, &f)
	u := old
	u.Role, u.Sites, u.Disabled = role, sites, f.Disabled
	if u.Disabled && !old.Disabled {
		u.Generation++
	}
	if len(f.Errors) == 0 {
		err := s.cfg.Accounts.Update(r.Context(), u)
		switch {
		case errors.Is(err, auth.ErrLastAdmin):
			f.Errors["form"] = "accounts.last_admin"
		case err != nil:
			s.internal(w, r, rq, "update an account", err)
			return
		}
	}
	if len(f.Errors) > 0 {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "account", "accounts.edit", f)
		return
	}
	s.record(rq, audit.Entry{Action: "update_user", Target: u.Name, Before: accountState(old), After: accountState(u)})
	f = editForm(u)
	f.Saved = true
	s.render(w, r, rq, http.StatusOK, "account", "accounts.edit", f)
}

// resetAccountPassword gives an account a one-time password (shown once;
// the next login must change it) and ends its sessions.
func (s *Server) resetAccountPassword(w http.ResponseWriter, r *http.Request, rq *request) {
	u, ok := s.editedAccount(w, r, rq)
	if !ok {
		return
	}
	pw := auth.RandomPassword()
	hash, err := auth.HashPassword(pw, s.cfg.Params)
	if err == nil {
		u.PasswordHash, u.MustChange = hash, true
		u.Generation++
		err = s.cfg.Accounts.Update(r.Context(), u)
	}
	if err != nil {
		s.internal(w, r, rq, "reset a password", err)
		return
	}
	s.record(rq, audit.Entry{Action: "reset_password", Target: u.Name, After: "one-time password, sessions ended"})
	s.render(w, r, rq, http.StatusOK, "account_password", "accounts.password_title", accountForm{Name: u.Name, Password: pw})
}

// removeAccountPasskey removes one passkey of an account (a lost
// authenticator).
func (s *Server) removeAccountPasskey(w http.ResponseWriter, r *http.Request, rq *request) {
	u, ok := s.editedAccount(w, r, rq)
	if !ok {
		return
	}
	if !s.removePasskey(w, r, rq, u) {
		return
	}
	http.Redirect(w, r, "/accounts/"+u.Name, http.StatusSeeOther)
}

// removePasskey removes u's passkey named by the path's {id} (base64url)
// and audits it; false when it showed an error.
func (s *Server) removePasskey(w http.ResponseWriter, r *http.Request, rq *request, u auth.User) bool {
	id, err := base64.RawURLEncoding.DecodeString(r.PathValue("id"))
	i := u.Passkey(id)
	if err != nil || i < 0 {
		s.fail(w, r, rq, http.StatusNotFound, "error.not_found")
		return false
	}
	old := u
	u.Passkeys = slices.Delete(slices.Clone(u.Passkeys), i, i+1)
	if err := s.cfg.Accounts.Update(r.Context(), u); err != nil {
		s.internal(w, r, rq, "remove a passkey", err)
		return false
	}
	s.record(rq, audit.Entry{Action: "remove_passkey", Target: u.Name, Before: accountState(old), After: accountState(u)})
	return true
}
