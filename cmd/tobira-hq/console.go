package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/auth/pgaccounts"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/reader"
)

// defaultConsoleDB is the console's accounts, sessions and audit log.
const defaultConsoleDB = "console.db"

// consoleServer is the console of a serve command, when console_listen
// is set.
type consoleServer struct {
	ln     net.Listener
	stores *consoleStores
	sender *hq.Sender // nil: no commands
	// enroll handles the pending enrollments (nil: no registry or no
	// trust anchors).
	enroll console.Enrollments
	// imp imports CSV tables (nil: no registry).
	imp console.Importer
	// records are the registry's records and people's names (nil: no
	// registry).
	records *registryRecords
	// publicURL is the console's URL (passkeys; "" none).
	publicURL string
	// oidc is the OIDC login (nil: none).
	oidc *console.OIDCConfig
	// snapshots publishes the registry's snapshots (nil: no registry
	// or no key); releases rolls releases out of releaseServer (nil: no
	// release store or no key). consoleops.go.
	snapshots     console.SnapshotPublisher
	releases      console.Releases
	releaseServer *hq.ReleaseServer
	// maxRevocationAge is --console-max-revocation-age.
	maxRevocationAge time.Duration
	// isLeader tells the alarm sweep whether this replica leads (nil:
	// it does).
	isLeader func(context.Context) bool
}

// openConsole listens on addr and opens the console store, with the
// accounts on PostgreSQL when storeURL is set and the logins of lf; cfg
// and the key (when set) let it send commands. Close what it returns.
func openConsole(ctx context.Context, addr, db, storeURL string, lf *consoleLoginFlags, cfg hq.Config, log *slog.Logger) (*consoleServer, error) {
	oidcCfg, err := lf.oidc()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("console_listen %q: %w", addr, err)
	}
	st, err := openConsoleStores(ctx, db, storeURL, consoleShared(cfg.Store))
	if err != nil {
		ln.Close()
		return nil, err
	}
	cs := &consoleServer{ln: ln, stores: st, publicURL: lf.url, oidc: oidcCfg}
	cfg.ClientID = "" // the sender's own client ID, not the service's
	if cfg.Key != nil {
		if cs.sender, err = hq.DialSender(ctx, cfg, cfg.Key); err != nil {
			log.Warn("console: cannot connect the command sender; the console sends no commands", "broker", cfg.Broker, "err", err)
		}
	} else {
		log.Info("console: no signing key (setting key); the console sends no commands")
	}
	return cs, nil
}

// close releases the console's listener, store and sender.
func (cs *consoleServer) close() {
	if cs.releaseServer != nil {
		cs.releaseServer.Close()
	}
	if cs.sender != nil {
		cs.sender.Close()
	}
	cs.ln.Close()
	cs.stores.close()
}

// consoleStores are the console's stores with the accounts on
// PostgreSQL or in the file.
type consoleStores struct {
	*console.Stores
	pg *pgaccounts.Store // nil: the accounts are the file's
}

// openConsoleStores opens the console file db and, when storeURL is set,
// the accounts on PostgreSQL in place of the file's.
func openConsoleStores(ctx context.Context, db, storeURL string, shared console.Shared) (*consoleStores, error) {
	st, err := console.OpenSharedStores(db, shared, nil)
	if err != nil {
		return nil, err
	}
	cs := &consoleStores{Stores: st}
	if storeURL == "" {
		return cs, nil
	}
	if cs.pg, err = pgaccounts.Open(ctx, storeURL, nil); err == nil {
		err = copyAccounts(ctx, st.Accounts, cs.pg)
	}
	if err == nil {
		_, err = cs.pg.PruneSessions(ctx)
	}
	if err != nil {
		cs.close()
		return nil, err
	}
	st.Accounts = cs.pg
	return cs, nil
}

// copyAccounts copies the accounts of the file into PostgreSQL when
// PostgreSQL has none yet: the first start on PostgreSQL keeps the
// accounts made before.
func copyAccounts(ctx context.Context, from, to console.Accounts) error {
	have, err := to.Users(ctx)
	if err != nil || len(have) > 0 {
		return err
	}
	old, err := from.Users(ctx)
	if err != nil {
		return err
	}
	for _, u := range old {
		if err := to.Add(ctx, u); err != nil {
			return fmt.Errorf("copy the console account %s to PostgreSQL: %w", u.Name, err)
		}
	}
	return nil
}

// close closes the stores.
func (cs *consoleStores) close() {
	if cs.pg != nil {
		cs.pg.Close()
	}
	cs.Stores.Close()
}

// run serves the console next to run (HQ's service) until either ends.
func (cs *consoleServer) run(ctx context.Context, svc *hq.Service, run func(context.Context) error, log *slog.Logger) error {
	con, err := console.New(cs.config(svc, log))
	if err != nil {
		return err
	}
	svc.OnEvent(con.Publish)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return console.Serve(gctx, cs.ln, con, log) })
	g.Go(func() error { return con.Sweep(gctx, 0) })
	g.Go(func() error { return run(gctx) })
	return g.Wait()
}

// config is the console's configuration for HQ's service svc: the
// registry, when set, gives the record pages, people's names and the
// events page's person filter.
func (cs *consoleServer) config(svc console.HQ, log *slog.Logger) console.Config {
	cfg := console.Config{HQ: svc, Accounts: cs.stores.Accounts, Audit: cs.stores.Audit, Alarms: cs.stores.Alarms, Ops: cs.stores.Ops, Enrollments: cs.enroll, Import: cs.imp, Logger: log,
		SecureCookie: !loopback(cs.ln.Addr()), PublicURL: cs.publicURL, OIDC: cs.oidc,
		Snapshots: cs.snapshots, Releases: cs.releases, MaxRevocationAge: cs.maxRevocationAge, IsLeader: cs.isLeader}
	if cs.records != nil {
		cfg.Records, cfg.Names, cfg.PeopleNames, cfg.People = cs.records, cs.records, cs.records, cs.records
	}
	if cs.sender != nil {
		cfg.Commands = cs.sender
	}
	return cfg
}

// consoleLoginFlags are the settings of the console's passkeys and OIDC
// login (docs/CONSOLE.md).
type consoleLoginFlags struct {
	url                                           string
	issuer, clientID, secretFile, redirect, claim string
	createRole                                    string
	createSites                                   []string
}

// addConsoleLoginFlags registers the console's login flags on c.
func addConsoleLoginFlags(c *cobra.Command) *consoleLoginFlags {
	var f consoleLoginFlags
	fl := c.Flags()
	fl.StringVar(&f.url, "console-url", "", "the console's URL as browsers open it, https://host[:port] (a host name, not an address): passkeys are bound to it (empty: no passkeys)")
	fl.StringVar(&f.issuer, "oidc-issuer", "", "OpenID Connect issuer URL of the company identity provider (empty: no OIDC login)")
	fl.StringVar(&f.clientID, "oidc-client-id", "", "the console's client ID at the identity provider")
	fl.StringVar(&f.secretFile, "oidc-client-secret-file", "", "file holding the console's client secret at the identity provider")
	fl.StringVar(&f.redirect, "oidc-redirect-url", "", "the redirect URL registered at the provider (default: --console-url + /login/oidc/callback)")
	fl.StringVar(&f.claim, "oidc-claim", "preferred_username", "the ID token claim naming the console account")
	fl.StringVar(&f.createRole, "oidc-create-role", "", "create an account of this role for an unknown user (empty: unknown users are refused)")
	fl.StringSliceVar(&f.createSites, "oidc-create-sites", []string{auth.AllSites}, "sites of the accounts OIDC creates (* for every site)")
	return &f
}

// oidc returns the OIDC login configured, nil when none; it reads the
// client secret file.
func (f *consoleLoginFlags) oidc() (*console.OIDCConfig, error) {
	if f.issuer == "" {
		return nil, nil
	}
	c := &console.OIDCConfig{Issuer: f.issuer, ClientID: f.clientID, RedirectURL: f.redirect, Claim: f.claim,
		CreateRole: auth.Role(f.createRole), CreateSites: f.createSites}
	if u, err := url.Parse(f.issuer); err == nil {
		c.Label = u.Hostname()
	}
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return nil, fmt.Errorf("oidc_client_secret_file: %w", err)
		}
		c.ClientSecret = strings.TrimSpace(string(b))
	}
	return c, nil
}

// registryEnrollments are the registry's pending enrollments for the
// console: approvals are verified against the trust anchors.
type registryEnrollments struct {
	reg      *sharedRegistry
	verifier *reader.Verifier
}

// newRegistryEnrollments returns the console's enrollments of the
// registry reg, verified against the anchors file; nil (with a log line)
// when either is not set.
func newRegistryEnrollments(reg *sharedRegistry, anchors string, log *slog.Logger) (console.Enrollments, error) {
	if reg == nil || anchors == "" {
		log.Info("console: no registry or no anchors setting; the console handles no enrollments")
		return nil, nil
	}
	v, err := loadVerifier(anchors)
	if err != nil {
		return nil, err
	}
	return registryEnrollments{reg: reg, verifier: v}, nil
}

// Pending implements console.Enrollments.
func (e registryEnrollments) Pending() ([]console.PendingEnrollment, error) {
	var list []registry.Pending
	err := e.reg.with(context.Background(), func(r *registry.Registry) error {
		var err error
		list, err = r.PendingList()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]console.PendingEnrollment, len(list))
	for i, p := range list {
		out[i] = console.PendingEnrollment{ID: p.ID, Site: p.Site, Device: p.Device, Seq: p.Seq, Received: p.Received}
		if c, ok := pendingCredential(p); ok {
			out[i].Credential = credentialKey(c)
		}
	}
	return out, nil
}

// Approve implements console.Enrollments.
func (e registryEnrollments) Approve(ctx context.Context, id, person string, until time.Time) (string, error) {
	var key string
	err := e.reg.with(ctx, func(r *registry.Registry) error {
		rec, _, _, err := approvePending(ctx, r, e.verifier, id, person, until, time.Now())
		if err == nil {
			key = credentialKey(rec.Credential)
		}
		return err
	})
	return key, err
}

// credentialKey returns the hex of c's key, as events name credentials.
func credentialKey(c credential.Credential) string {
	k, err := c.Key()
	if err != nil {
		return c.String()
	}
	return hex.EncodeToString(k)
}

// Reject implements console.Enrollments.
func (e registryEnrollments) Reject(id string) error {
	return e.reg.with(context.Background(), func(r *registry.Registry) error { return r.DeletePending(id) })
}

// registryImporter imports the console's CSV uploads into the registry.
type registryImporter struct{ reg *sharedRegistry }

// ImportCSV implements console.Importer.
func (ri registryImporter) ImportCSV(ctx context.Context, site, table, name string, in io.Reader) (registry.Applied, error) {
	var a registry.Applied
	err := ri.reg.with(ctx, func(r *registry.Registry) error {
		var err error
		a, err = r.ImportCSV(ctx, site, table, name, in)
		return err
	})
	return a, err
}

// loopback reports whether a is a loopback address (a console there may
// use plain HTTP cookies; elsewhere, put TLS in front).
func loopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

// consoleCommand is "tobira-hq console": the console's accounts.
func consoleCommand() *cobra.Command {
	c := &cobra.Command{Use: "console", Short: "The web console's accounts: add-user, reset-password (docs/CONSOLE.md)"}
	c.AddCommand(addUserCommand(), resetPasswordCommand())
	return c
}

// actor names who runs a console command, for the audit log.
func actor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}

// cliAccounts are the accounts a console command changes and the audit
// log it records that in.
type cliAccounts struct {
	acc console.Accounts
	// record appends to the audit log.
	record func(audit.Entry) error
	close  func()
}

// openCLIAccounts opens the accounts of a console command: in the
// console file db, or on PostgreSQL when storeURL is set. Then the
// command also works while tobira-hq serve holds the file: its audit
// entry goes to the file when it can be opened, else to warn (with the
// advice to find it there).
func openCLIAccounts(ctx context.Context, db, storeURL string) (*cliAccounts, error) {
	if storeURL == "" {
		st, err := console.OpenStores(db, nil)
		if err != nil {
			return nil, err
		}
		return &cliAccounts{acc: st.Accounts, record: appendTo(st.Audit), close: func() { st.Close() }}, nil
	}
	pg, err := pgaccounts.Open(ctx, storeURL, nil)
	if err != nil {
		return nil, err
	}
	// With HQ's store on PostgreSQL the audit log is there too (shared by
	// serve's replicas): record the change in it.
	ps, err := pgstore.Open(ctx, storeURL, pgstore.Options{})
	if err != nil {
		pg.Close()
		return nil, err
	}
	return &cliAccounts{acc: pg, record: appendTo(audit.NewLog(ps.AuditChain(), nil)), close: func() { pg.Close(); ps.Close() }}, nil
}

// appendTo returns a record function appending to log.
func appendTo(log *audit.Log) func(audit.Entry) error {
	return func(e audit.Entry) error {
		_, err := log.Append(e)
		return err
	}
}

// withOneTimePassword makes a fresh password and calls fn with the
// accounts of db or storeURL and the password's hash; it returns the
// password.
func withOneTimePassword(c *cobra.Command, db, storeURL string, fn func(ca *cliAccounts, hash string) error) (string, error) {
	pw := auth.RandomPassword()
	hash, err := auth.HashPassword(pw, auth.DefaultParams)
	if err != nil {
		return "", err
	}
	ca, err := openCLIAccounts(c.Context(), db, storeURL)
	if err != nil {
		return "", err
	}
	defer ca.close()
	return pw, fn(ca, hash)
}

// addUserCommand is "tobira-hq console add-user".
func addUserCommand() *cobra.Command {
	var db, storeURL, name, role string
	var sites []string
	c := &cobra.Command{
		Use:   "add-user --user NAME --role ROLE [--site S ...]",
		Short: "Add a console account and print its one-time password",
	}
	c.Flags().StringVar(&db, "console-db", defaultConsoleDB, "the console's store (bbolt file; stop tobira-hq serve first unless --store-url is set)")
	c.Flags().StringVar(&storeURL, "store-url", "", "PostgreSQL holding the console's accounts, postgres://user@host/db (empty: the file of --console-db)")
	c.Flags().StringVar(&name, "user", "", "login name")
	c.Flags().StringVar(&role, "role", "", "administrator, operator, clerk or auditor")
	c.Flags().StringSliceVar(&sites, "site", []string{auth.AllSites}, "site the account may see and act on (repeat; * for all)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		r, err := auth.ParseRole(role)
		if err != nil {
			return cli.Usagef("--role: %w", err)
		}
		pw, err := withOneTimePassword(c, db, storeURL, func(ca *cliAccounts, hash string) error {
			if err := ca.acc.Add(c.Context(), auth.User{Name: name, Role: r, Sites: sites, PasswordHash: hash, MustChange: true}); err != nil {
				return err
			}
			return ca.record(audit.Entry{Actor: actor(), Action: "add_user", Target: name, After: fmt.Sprintf("role %s, sites %v", r, sites)})
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.OutOrStdout(), "user %s (%s) added; one-time password: %s\n", name, r, pw)
		return err
	}
	return c
}

// resetPasswordCommand is "tobira-hq console reset-password": the
// recovery path for a lost password. It also enables the account again
// and ends every console session.
func resetPasswordCommand() *cobra.Command {
	var db, storeURL, name string
	c := &cobra.Command{
		Use:   "reset-password --user NAME",
		Short: "Give an account a new one-time password, enable it, and end every session",
	}
	c.Flags().StringVar(&db, "console-db", defaultConsoleDB, "the console's store (bbolt file; stop tobira-hq serve first unless --store-url is set)")
	c.Flags().StringVar(&storeURL, "store-url", "", "PostgreSQL holding the console's accounts, postgres://user@host/db (empty: the file of --console-db)")
	c.Flags().StringVar(&name, "user", "", "login name")
	c.RunE = func(c *cobra.Command, _ []string) error {
		pw, err := withOneTimePassword(c, db, storeURL, func(ca *cliAccounts, hash string) error {
			u, err := ca.acc.User(c.Context(), name)
			if err != nil {
				return err
			}
			u.PasswordHash, u.MustChange, u.Disabled = hash, true, false
			u.Generation++
			if err := ca.acc.Update(c.Context(), u); err != nil {
				return err
			}
			if err := ca.acc.EndSessions(c.Context()); err != nil {
				return err
			}
			return ca.record(audit.Entry{Actor: actor(), Action: "reset_password", Target: name})
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.OutOrStdout(), "user %s: one-time password: %s (every console session ended)\n", name, pw)
		return err
	}
	return c
}
