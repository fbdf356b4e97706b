package console

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
)

// newWebAuthn returns the WebAuthn relying party of a console whose
// browsers open it at publicURL (Config.PublicURL): the relying-party ID
// is its host name, the only origin accepted its scheme and host.
// Passkeys are bound to that host name: a console moved to another name
// needs its passkeys registered again.
func newWebAuthn(publicURL string) (*webauthn.WebAuthn, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: console URL %q: want https://host[:port]", ErrConfig, publicURL)
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          u.Hostname(),
		RPDisplayName: "tobira console",
		RPOrigins:     []string{u.Scheme + "://" + u.Host},
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementRequired,
			UserVerification: protocol.VerificationRequired,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTimeout},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTimeout},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: passkeys for %s: %w", ErrConfig, publicURL, err)
	}
	return wa, nil
}

// ceremonyTimeout bounds a passkey registration or login, from its
// challenge to the authenticator's answer.
const ceremonyTimeout = 5 * time.Minute

// The session keys of a ceremony in progress: its webauthn.SessionData
// (JSON) and the name given to a passkey being registered.
const (
	sessionCeremony    = "webauthn"
	sessionPasskeyName = "passkey_name"
)

// waUser is an account as the WebAuthn library sees it.
type waUser struct {
	u      auth.User
	handle []byte
}

// WebAuthnID implements webauthn.User: the account's random handle.
func (w waUser) WebAuthnID() []byte { return w.handle }

// WebAuthnName implements webauthn.User.
func (w waUser) WebAuthnName() string { return w.u.Name }

// WebAuthnDisplayName implements webauthn.User.
func (w waUser) WebAuthnDisplayName() string { return w.u.Name }

// WebAuthnCredentials implements webauthn.User: the account's passkeys
// (one that does not decode is left out, and so cannot log in).
func (w waUser) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, 0, len(w.u.Passkeys))
	for _, p := range w.u.Passkeys {
		var c webauthn.Credential
		if json.Unmarshal(p.Credential, &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// newWAUser returns u for the library, with a fresh random handle when
// it has none yet (kept when its first passkey is registered).
func newWAUser(u auth.User) waUser {
	h := u.Handle
	if len(h) == 0 {
		h = make([]byte, 32)
		_, _ = rand.Read(h) // crypto/rand.Read never fails
	}
	return waUser{u: u, handle: h}
}

// passkeysForm is the data of the own-passkeys page.
type passkeysForm struct {
	// Enabled reports whether the console has a public URL (passkeys
	// need one).
	Enabled bool
	// Passkeys are the account's.
	Passkeys []auth.Passkey
	// Added reports a passkey just registered.
	Added bool
}

// passkeysPage shows the account's passkeys and the button registering
// another.
func (s *Server) passkeysPage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.render(w, r, rq, http.StatusOK, "passkeys", "passkeys.title",
		passkeysForm{Enabled: s.wa != nil, Passkeys: rq.user.Passkeys, Added: r.URL.Query().Has("added")})
}

// maxPasskeyName is the longest name of a passkey, in characters.
const maxPasskeyName = 64

// beginPasskey starts registering a passkey of the account: it answers
// the options for navigator.credentials.create (JSON).
func (s *Server) beginPasskey(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.wa == nil {
		jsonError(w, http.StatusNotFound, rq.lang.T("passkeys.no_support"))
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if name == "" || utf8.RuneCountInString(name) > maxPasskeyName {
		jsonError(w, http.StatusUnprocessableEntity, rq.lang.T("passkeys.failed", rq.lang.T("passkeys.label")))
		return
	}
	wu := newWAUser(*rq.user)
	creds := webauthn.Credentials(wu.WebAuthnCredentials())
	creation, sd, err := s.wa.BeginRegistration(wu, webauthn.WithExclusions(creds.CredentialDescriptors()),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
	if err != nil {
		s.log.Error("console: begin passkey registration", "user", rq.user.Name, "err", err)
		jsonError(w, http.StatusInternalServerError, rq.lang.T("error.internal"))
		return
	}
	s.putCeremony(r, sd)
	s.sessions.Put(r.Context(), sessionPasskeyName, name)
	writeJSON(w, creation)
}

// finishPasskey checks the authenticator's answer and keeps the new
// passkey in the account (audited).
func (s *Server) finishPasskey(w http.ResponseWriter, r *http.Request, rq *request) {
	sd, ok := s.takeCeremony(r)
	name := s.sessions.PopString(r.Context(), sessionPasskeyName)
	if s.wa == nil || !ok || name == "" {
		jsonError(w, http.StatusBadRequest, rq.lang.T("passkeys.failed", "no registration in progress"))
		return
	}
	u := *rq.user
	wu := newWAUser(u)
	wu.handle = sd.UserID
	cred, err := s.wa.FinishRegistration(wu, sd, r)
	if err != nil {
		s.record(rq, audit.Entry{Action: "add_passkey", Target: u.Name, After: "refused: " + err.Error()})
		jsonError(w, http.StatusBadRequest, rq.lang.T("passkeys.failed", err.Error()))
		return
	}
	b, err := json.Marshal(cred)
	if err == nil {
		old := u
		u.Handle = sd.UserID
		u.Passkeys = append(append([]auth.Passkey(nil), u.Passkeys...), auth.Passkey{ID: cred.ID, Name: name, Created: s.clk.Now().UTC(), Credential: b})
		if err = s.cfg.Accounts.Update(r.Context(), u); err == nil {
			s.record(rq, audit.Entry{Action: "add_passkey", Target: u.Name, Before: accountState(old), After: accountState(u)})
		}
	}
	if err != nil {
		s.log.Error("console: keep a passkey", "user", u.Name, "err", err)
		jsonError(w, http.StatusInternalServerError, rq.lang.T("error.internal"))
		return
	}
	writeJSON(w, map[string]string{"next": "/account/passkeys?added"})
}

// removeOwnPasskey removes one of the account's own passkeys.
func (s *Server) removeOwnPasskey(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.removePasskey(w, r, rq, *rq.user) {
		http.Redirect(w, r, "/account/passkeys", http.StatusSeeOther)
	}
}

// beginPasskeyLogin answers the options for navigator.credentials.get:
// any passkey of this console (discoverable, with user verification).
func (s *Server) beginPasskeyLogin(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.wa == nil {
		jsonError(w, http.StatusNotFound, rq.lang.T("passkeys.no_support"))
		return
	}
	assertion, sd, err := s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		s.log.Error("console: begin passkey login", "err", err)
		jsonError(w, http.StatusInternalServerError, rq.lang.T("error.internal"))
		return
	}
	s.putCeremony(r, sd)
	writeJSON(w, assertion)
}

// finishPasskeyLogin checks the authenticator's answer and logs its
// account in; the rate limits of the password login apply (per client
// address, and per account once it is known).
func (s *Server) finishPasskeyLogin(w http.ResponseWriter, r *http.Request, rq *request) {
	addrKey := "addr:" + rq.addr
	if ok, wait := s.perAddr.Allow(addrKey); !ok {
		s.record(rq, audit.Entry{Action: "login_refused", After: "rate limited (passkey)"})
		jsonError(w, http.StatusTooManyRequests, rq.lang.T("login.too_many", int(wait.Minutes())+1))
		return
	}
	sd, ok := s.takeCeremony(r)
	if s.wa == nil || !ok {
		jsonError(w, http.StatusBadRequest, rq.lang.T("login.passkey_fail"))
		return
	}
	var found auth.User
	handler := func(_, userHandle []byte) (webauthn.User, error) {
		u, err := s.cfg.Accounts.UserByHandle(r.Context(), userHandle)
		if err != nil {
			return nil, err
		}
		if ok, _ := s.perUser.Allow("user:" + u.Name); !ok {
			return nil, fmt.Errorf("account %s: too many failed logins", u.Name)
		}
		found = u
		return newWAUser(u), nil
	}
	_, cred, err := s.wa.FinishPasskeyLogin(handler, sd, r)
	if err == nil && cred.Authenticator.CloneWarning {
		err = errors.New("its signature counter went back: a cloned authenticator? Remove the passkey and register it again")
	}
	if err == nil {
		err = s.keepSignCount(r, &found, cred)
	}
	if err != nil {
		s.perAddr.Fail(addrKey)
		if found.Name != "" {
			s.perUser.Fail("user:" + found.Name)
		}
		s.record(rq, audit.Entry{Actor: found.Name, Action: "login_failed", After: "passkey: " + err.Error()})
		jsonError(w, http.StatusUnauthorized, rq.lang.T("login.passkey_fail"))
		return
	}
	s.perUser.Reset("user:" + found.Name)
	if key := s.beginSession(r, rq, found, "passkey"); key != "" {
		jsonError(w, http.StatusForbidden, rq.lang.T(key))
		return
	}
	writeJSON(w, map[string]string{"next": localPath(r.URL.Query().Get("next"))})
}

// keepSignCount stores the passkey's credential as the login updated it
// (its signature counter and flags).
func (s *Server) keepSignCount(r *http.Request, u *auth.User, cred *webauthn.Credential) error {
	i := u.Passkey(cred.ID)
	if i < 0 {
		return errors.New("the passkey left the account")
	}
	b, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	u.Passkeys[i].Credential = b
	return s.cfg.Accounts.Update(r.Context(), *u)
}

// putCeremony keeps a ceremony's data in the (server-side) session.
func (s *Server) putCeremony(r *http.Request, sd *webauthn.SessionData) {
	b, _ := json.Marshal(sd)
	s.sessions.Put(r.Context(), sessionCeremony, string(b))
}

// takeCeremony returns and forgets the session's ceremony data: each
// challenge is answered once.
func (s *Server) takeCeremony(r *http.Request) (webauthn.SessionData, bool) {
	var sd webauthn.SessionData
	b := s.sessions.PopString(r.Context(), sessionCeremony)
	return sd, b != "" && json.Unmarshal([]byte(b), &sd) == nil
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

// jsonError answers status with the message msg as JSON
// ({"error": msg}), for the passkey script to show.
func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
