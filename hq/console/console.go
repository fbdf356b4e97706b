// Package console is HQ's web console, served by tobira-hq itself: pages
// rendered on the server with html/template, a little JavaScript (the
// live feed, passkeys), every asset embedded. It reads HQ's data through the same
// public APIs as the CLI (hq.Service: Fleet, Query, Result; hq.Sender:
// SendCommand), keeps its accounts and audit log in its own store
// (auth, audit), and checks on the server, for every route, that the
// logged-in account's role grants the route's permission (routes.go).
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/oplog"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/proto"
)

// HQ is what the console reads of HQ's service (hq.Service has it).
type HQ interface {
	// Fleet returns every device with its status and drift.
	Fleet() ([]hq.DeviceInfo, error)
	// Query calls fn for each stored event selected by q.
	Query(q hq.EventQuery, fn func(hq.StoredEvent) error) error
	// QueryPage returns a page of the events q selects, newest first,
	// after the cursor after.
	QueryPage(ctx context.Context, q hq.EventQuery, after hq.Cursor, limit int) (hq.EventPage, error)
	// Result returns a command's result once the device answered.
	Result(id string) (proto.Result, bool, error)
}

// Commander sends signed commands to devices (hq.Sender has it).
type Commander interface {
	// SendCommand signs c (filling ID, Issued, Expires) and publishes it.
	SendCommand(ctx context.Context, c proto.Command) (proto.Command, error)
}

// Accounts is where the console finds its users and keeps its sessions
// (auth.Store has it on bbolt, pgaccounts.Store on PostgreSQL).
type Accounts interface {
	scs.Store
	// User returns the account name, or an error wrapping auth.ErrNoUser.
	User(ctx context.Context, name string) (auth.User, error)
	// UserByHandle returns the account of a passkey's user handle, or an
	// error wrapping auth.ErrNoUser.
	UserByHandle(ctx context.Context, h []byte) (auth.User, error)
	// Users returns every account, sorted by name.
	Users(ctx context.Context) ([]auth.User, error)
	// Add creates an account (auth.ErrExists when it exists).
	Add(ctx context.Context, u auth.User) error
	// Update replaces an existing account; it refuses to take away the
	// last administrator (auth.ErrLastAdmin).
	Update(ctx context.Context, u auth.User) error
	// EndSessions ends every session.
	EndSessions(ctx context.Context) error
}

// AuditLog is where the console records every admin action
// (audit.Log has it).
type AuditLog interface {
	// Append records e and returns it as stored.
	Append(e audit.Entry) (audit.Entry, error)
	// Page returns up to limit entries older than before, newest first.
	Page(before uint64, limit int) ([]audit.Entry, error)
	// Verify checks the chain of hashes.
	Verify() (uint64, string, error)
	// WriteCSV exports the log as CSV.
	WriteCSV(w io.Writer) error
	// WriteJSON exports the log as JSON lines.
	WriteJSON(w io.Writer) error
}

// Alarms is the console's alarm list (alarm.List has it).
type Alarms interface {
	// Observe derives alarms from a newly stored event of site/device and
	// returns those raised anew.
	Observe(site, device string, ev proto.Event, now time.Time) ([]alarm.Alarm, error)
	// SetOnline raises or clears a device's offline alarm; it returns the
	// alarm when raised anew.
	SetOnline(site, device string, online bool, now time.Time) (*alarm.Alarm, error)
	// Ack acknowledges an active alarm with a comment.
	Ack(id, user, comment string, now time.Time) (before, after alarm.Alarm, err error)
	// Get returns one alarm, or an error wrapping alarm.ErrNotFound.
	Get(id string) (alarm.Alarm, error)
	// All returns every alarm, the most pressing first.
	All() ([]alarm.Alarm, error)
}

// Names gives the people's names of credentials: personal data, shown
// only to roles with auth.PermNames, and every view is audited.
type Names interface {
	// Name returns the name of the person holding credential (hex key)
	// at site, and false when unknown.
	Name(site, credential string) (string, bool)
}

// People finds people's credentials for the events page's person filter.
type People interface {
	// PersonCredentials returns the credentials (hex keys, as events
	// name them) of person at site: none when the site has no such
	// person with a credential.
	PersonCredentials(ctx context.Context, site, person string) ([]string, error)
}

// Config configures a Server.
type Config struct {
	// HQ is the service whose data the console shows (required).
	HQ HQ
	// Commands sends door commands; nil: the console sends none.
	Commands Commander
	// Accounts holds the users and sessions (required).
	Accounts Accounts
	// Audit records every admin action (required).
	Audit AuditLog
	// Enrollments, when set, lets the roles allowed approve and reject
	// the enrollments devices sent; nil: the console handles none.
	Enrollments Enrollments
	// Import, when set, lets the roles allowed import CSV tables into
	// the registry; nil: the console imports nothing.
	Import Importer
	// Alarms is the alarm list the console derives from the events it
	// is given (Publish) and the fleet; nil: a list in memory only
	// (Stores.Alarms keeps one in the console's file).
	Alarms Alarms
	// Names, when set, shows people's names to the roles allowed.
	Names Names
	// People, when set, lets the events page and its CSV export filter
	// by person (a person ID at a site); nil: no person filter.
	People People
	// PeopleNames, when set, shows people's names on the people pages
	// and lets the roles allowed set them in the person form.
	PeopleNames PeopleNames
	// Records, when set, lets the roles allowed read and change the
	// registry's records in forms, revoke credentials and import CRLs
	// (records.go); nil: the console has no record pages.
	Records Records
	// PublicURL is the console's address as browsers open it
	// (https://console.hq.example): passkeys are bound to its host name
	// and accepted from its origin only, and it is the default of
	// OIDC.RedirectURL's host. Empty: no passkeys.
	PublicURL string
	// OIDC, when set, offers the login at a company identity provider
	// (oidc.go).
	OIDC *OIDCConfig
	// Ops keeps the publications and rollouts started from the console
	// (Stores.Ops keeps them in the console's file or, shared by the
	// replicas, in PostgreSQL); nil: in memory.
	Ops oplog.Store
	// Snapshots, when set, lets the roles allowed publish policy
	// snapshots and watch the devices apply them; nil: no publishing.
	Snapshots SnapshotPublisher
	// Releases, when set, lets the roles allowed roll firmware releases
	// out and watch them; nil: no rollouts.
	Releases Releases
	// MaxRevocationAge is how long a device may go without applying the
	// snapshot HQ published to it before its stale-revocation alarm;
	// 0: DefaultMaxRevocationAge.
	MaxRevocationAge time.Duration
	// IsLeader, when set, tells Sweep whether this replica raises the
	// time-based alarms (one replica among several should); nil: it
	// does.
	IsLeader func(context.Context) bool
	// SecureCookie marks the session cookie Secure (HTTPS only). Leave it
	// false only for a console on loopback or behind a TLS proxy that
	// sets no cookies itself.
	SecureCookie bool
	// Params are the argon2id costs of new passwords; zero:
	// auth.DefaultParams.
	Params auth.Params
	// Clock times sessions, rate limits and the audit; default
	// clock.System{}.
	Clock clock.Clock
	// Logger receives the console's logs; default slog.Default().
	Logger *slog.Logger
}

// Login rate limits: failures allowed per account and per client
// address within loginWindow.
const (
	loginFailsPerUser = 5
	loginFailsPerAddr = 20
	loginWindow       = 15 * time.Minute
)

// Server is the console: an http.Handler plus the live feed's
// broadcaster.
type Server struct {
	cfg      Config
	clk      clock.Clock
	log      *slog.Logger
	sessions *scs.SessionManager
	perUser  *auth.Limiter
	perAddr  *auth.Limiter
	live     *broadcaster
	handler  http.Handler
	// wa is the passkeys' relying party (nil: no PublicURL, no passkeys).
	wa *webauthn.WebAuthn
	// oidc is the OIDC login (nil: none).
	oidc *oidcLogin
}

// ErrConfig means a Config lacks what the console needs.
var ErrConfig = errors.New("console configuration")

// New returns a console serving cfg.
func New(cfg Config) (*Server, error) {
	if cfg.HQ == nil || cfg.Accounts == nil || cfg.Audit == nil {
		return nil, fmt.Errorf("%w: HQ, Accounts and Audit are required", ErrConfig)
	}
	if cfg.Alarms == nil {
		cfg.Alarms = alarm.NewMemory()
	}
	if cfg.Ops == nil {
		cfg.Ops = oplog.NewMemory()
	}
	if cfg.Params == (auth.Params{}) {
		cfg.Params = auth.DefaultParams
	}
	s := &Server{cfg: cfg, clk: cfg.Clock, log: cfg.Logger, live: newBroadcaster(liveBuffer)}
	if s.clk == nil {
		s.clk = clock.System{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.perUser = auth.NewLimiter(loginFailsPerUser, loginWindow, s.clk.Now)
	s.perAddr = auth.NewLimiter(loginFailsPerAddr, loginWindow, s.clk.Now)
	sm := scs.New()
	sm.Store = cfg.Accounts
	sm.Lifetime = 12 * time.Hour
	sm.IdleTimeout = time.Hour
	sm.Cookie.Name = "tobira_console"
	sm.Cookie.HttpOnly = true
	sm.Cookie.SameSite = http.SameSiteLaxMode
	sm.Cookie.Secure = cfg.SecureCookie
	sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		s.log.Error("console session", "path", r.URL.Path, "err", err)
		http.Error(w, "session error", http.StatusInternalServerError)
	}
	s.sessions = sm
	if err := s.initLogins(); err != nil {
		return nil, err
	}
	mux, err := s.routes()
	if err != nil {
		return nil, err
	}
	cop := http.NewCrossOriginProtection()
	s.handler = securityHeaders(cop.Handler(sm.LoadAndSave(mux)))
	return s, nil
}

// ServeHTTP serves the console.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Publish hands a newly stored event to the live feed's subscribers; it
// never blocks (a slow browser loses events, and is told so). Give it to
// hq.Service.OnEvent. It also derives the alarms from ev (alarms.go).
func (s *Server) Publish(site, device string, ev proto.Event) {
	s.live.publish(hq.StoredEvent{Site: site, Device: device, Event: ev})
	s.observeAlarms(site, device, ev)
}

// Serve serves h on ln until ctx ends, then shuts down (waiting up to 5
// seconds for requests in flight; the live feeds end with ctx).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute, // the live feed lifts it for itself
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("console serving", "addr", ln.Addr().String())
	select {
	case err := <-done:
		return fmt.Errorf("console on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("console on %s: shut down: %w", ln.Addr(), err)
	}
	<-done
	return nil
}

// securityHeaders sets a strict Content-Security-Policy (no inline
// script or style, nothing from elsewhere) and the other headers every
// page gets.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "+
			"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
