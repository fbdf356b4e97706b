package console

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/i18n"
)

// route is one page or action of the console and the permission it
// needs. The permission is checked on the server before the handler
// runs; hiding a link in a page is only a courtesy.
type route struct {
	pattern string
	perm    auth.Perm // "": public (no login)
	handle  func(w http.ResponseWriter, r *http.Request, rq *request)
}

// routeTable is every route of the console: the table of route -> role
// that the permission tests walk.
func (s *Server) routeTable() []route {
	return []route{
		{"GET /login", "", s.loginPage},
		{"POST /login", "", s.login},
		{"GET /lang/{lang}", "", s.setLang},
		{"GET /static/{name}", "", s.static},
		{"POST /logout", auth.PermView, s.logout},
		{"GET /{$}", auth.PermView, s.home},
		{"GET /account/password", auth.PermView, s.passwordPage},
		{"POST /account/password", auth.PermView, s.changePassword},
		{"GET /fleet", auth.PermFleet, s.fleetPage},
		{"GET /events", auth.PermEvents, s.eventsPage},
		{"GET /events.csv", auth.PermEvents, s.eventsCSV},
		{"GET /live", auth.PermEvents, s.livePage},
		{"GET /live/stream", auth.PermEvents, s.liveStream},
		{"GET /doors/command", auth.PermCommand, s.commandConfirm},
		{"POST /doors/command", auth.PermCommand, s.sendCommand},
		{"GET /commands/{id}", auth.PermCommand, s.commandResult},
		{"GET /enrollments", auth.PermEnroll, s.enrollmentsPage},
		{"POST /enrollments/{id}/approve", auth.PermEnroll, s.approveEnrollment},
		{"POST /enrollments/{id}/reject", auth.PermEnroll, s.rejectEnrollment},
		{"GET /import", auth.PermImport, s.importPage},
		{"POST /import", auth.PermImport, s.importCSV},
		{"GET /alarms", auth.PermAlarms, s.alarmsPage},
		{"GET /alarms/{id}", auth.PermAlarms, s.alarmPage},
		{"POST /alarms/{id}/ack", auth.PermAlarmAck, s.ackAlarm},
		{"GET /audit", auth.PermAudit, s.auditPage},
		{"GET /audit.csv", auth.PermAudit, s.auditExport},
		{"GET /audit.json", auth.PermAudit, s.auditExport},
		{"GET /records", auth.PermRecords, s.recordsIndex},
		{"GET /records/{table}", auth.PermRecords, s.recordList},
		{"GET /records/{table}/edit", auth.PermRecordsEdit, s.recordFormPage},
		{"POST /records/{table}/edit", auth.PermRecordsEdit, s.saveRecord},
		{"GET /records/{table}/delete", auth.PermRecordsEdit, s.deleteConfirm},
		{"POST /records/{table}/delete", auth.PermRecordsEdit, s.deleteRecord},
		{"GET /credentials/revoke", auth.PermRevoke, s.revokeConfirm},
		{"POST /credentials/revoke", auth.PermRevoke, s.revoke},
		{"GET /crl", auth.PermRecordsEdit, s.crlPage},
		{"POST /crl", auth.PermRecordsEdit, s.importCRL},
	}
}

// routes returns the console's mux.
func (s *Server) routes() (*http.ServeMux, error) {
	mux := http.NewServeMux()
	for _, rt := range s.routeTable() {
		mux.Handle(rt.pattern, s.guard(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, newRequest(r, nil), http.StatusNotFound, "error.not_found")
	})
	return mux, nil
}

// request is what a handler knows of the request beyond it: the
// account (nil on public routes), the language and the client address.
type request struct {
	user *auth.User
	lang i18n.Lang
	addr string
}

// langCookie remembers the language chosen with the switch.
const langCookie = "tobira_lang"

// sessionUser is the session key of the logged-in account's name.
const sessionUser = "user"

// newRequest returns the request facts of r for user.
func newRequest(r *http.Request, user *auth.User) *request {
	c, _ := r.Cookie(langCookie)
	cookie := ""
	if c != nil {
		cookie = c.Value
	}
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	return &request{user: user, lang: i18n.Match(cookie, r.Header.Get("Accept-Language")), addr: addr}
}

// guard runs rt's handler once the session's account has rt's
// permission: no session sends a page to the login page (401 for
// anything else), a role without the permission is refused (403, and
// audited), an account with a one-time password is sent to change it.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.perm == "" {
			rt.handle(w, r, newRequest(r, nil))
			return
		}
		rq := newRequest(r, nil)
		u, err := s.sessionAccount(r.Context())
		if err != nil {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/stream") {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, rq, http.StatusUnauthorized, "error.login_needed")
			return
		}
		rq.user = &u
		if !u.Role.Can(rt.perm) {
			s.record(rq, audit.Entry{Action: "denied", Target: r.Method + " " + r.URL.Path})
			s.fail(w, r, rq, http.StatusForbidden, "error.forbidden")
			return
		}
		if u.MustChange && !strings.HasPrefix(r.URL.Path, "/account/password") && r.URL.Path != "/logout" {
			http.Redirect(w, r, "/account/password", http.StatusSeeOther)
			return
		}
		rt.handle(w, r, rq)
	})
}

// errNoSession means the request carries no logged-in session.
var errNoSession = errors.New("not logged in")

// sessionAccount returns the account of the session, read afresh so
// that a changed role or a removed account takes effect at once.
func (s *Server) sessionAccount(ctx context.Context) (auth.User, error) {
	name := s.sessions.GetString(ctx, sessionUser)
	if name == "" {
		return auth.User{}, errNoSession
	}
	return s.cfg.Accounts.User(name)
}

// record appends e, made by rq's account from rq's address, to the audit
// log; a failure is logged (the action has happened).
func (s *Server) record(rq *request, e audit.Entry) {
	e.Addr = rq.addr
	if rq.user != nil {
		e.Actor, e.Role = rq.user.Name, string(rq.user.Role)
	}
	if _, err := s.cfg.Audit.Append(e); err != nil {
		s.log.Error("cannot write the audit log", "action", e.Action, "actor", e.Actor, "err", err)
	}
}
