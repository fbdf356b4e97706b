package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/user"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
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
	stores *console.Stores
	sender *hq.Sender // nil: no commands
	// enroll handles the pending enrollments (nil: no registry or no
	// trust anchors).
	enroll console.Enrollments
	// imp imports CSV tables (nil: no registry).
	imp console.Importer
	// records are the registry's records and people's names (nil: no
	// registry).
	records *registryRecords
}

// openConsole listens on addr and opens the console store; cfg and the
// key (when set) let it send commands. Close what it returns.
func openConsole(ctx context.Context, addr, db string, cfg hq.Config, log *slog.Logger) (*consoleServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("console_listen %q: %w", addr, err)
	}
	st, err := console.OpenSharedStores(db, consoleShared(cfg.Store), nil)
	if err != nil {
		ln.Close()
		return nil, err
	}
	cs := &consoleServer{ln: ln, stores: st}
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
	if cs.sender != nil {
		cs.sender.Close()
	}
	cs.ln.Close()
	cs.stores.Close()
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
	g.Go(func() error { return run(gctx) })
	return g.Wait()
}

// config is the console's configuration for HQ's service svc: the
// registry, when set, gives the record pages and people's names.
func (cs *consoleServer) config(svc console.HQ, log *slog.Logger) console.Config {
	cfg := console.Config{HQ: svc, Accounts: cs.stores.Accounts, Audit: cs.stores.Audit, Alarms: cs.stores.Alarms, Enrollments: cs.enroll, Import: cs.imp, Logger: log,
		SecureCookie: !loopback(cs.ln.Addr())}
	if cs.records != nil {
		cfg.Records, cfg.Names, cfg.PeopleNames = cs.records, cs.records, cs.records
	}
	if cs.sender != nil {
		cfg.Commands = cs.sender
	}
	return cfg
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

// withOneTimePassword makes a fresh password and calls fn with the
// console store db and the password's hash; it returns the password.
func withOneTimePassword(db string, fn func(st *console.Stores, hash string) error) (string, error) {
	pw := auth.RandomPassword()
	hash, err := auth.HashPassword(pw, auth.DefaultParams)
	if err != nil {
		return "", err
	}
	st, err := console.OpenStores(db, nil)
	if err != nil {
		return "", err
	}
	defer st.Close()
	return pw, fn(st, hash)
}

// addUserCommand is "tobira-hq console add-user".
func addUserCommand() *cobra.Command {
	var db, name, role string
	var sites []string
	c := &cobra.Command{
		Use:   "add-user --user NAME --role ROLE [--site S ...]",
		Short: "Add a console account and print its one-time password (stop tobira-hq serve first)",
	}
	c.Flags().StringVar(&db, "console-db", defaultConsoleDB, "the console's store (bbolt file)")
	c.Flags().StringVar(&name, "user", "", "login name")
	c.Flags().StringVar(&role, "role", "", "administrator, operator, clerk or auditor")
	c.Flags().StringSliceVar(&sites, "site", []string{auth.AllSites}, "site the account may see and act on (repeat; * for all)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		r, err := auth.ParseRole(role)
		if err != nil {
			return cli.Usagef("--role: %w", err)
		}
		pw, err := withOneTimePassword(db, func(st *console.Stores, hash string) error {
			if err := st.Accounts.Add(auth.User{Name: name, Role: r, Sites: sites, PasswordHash: hash, MustChange: true}); err != nil {
				return err
			}
			_, err := st.Audit.Append(audit.Entry{Actor: actor(), Action: "add_user", Target: name, After: fmt.Sprintf("role %s, sites %v", r, sites)})
			return err
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
// recovery path for a lost password.
func resetPasswordCommand() *cobra.Command {
	var db, name string
	c := &cobra.Command{
		Use:   "reset-password --user NAME",
		Short: "Give an account a new one-time password and end every session (stop tobira-hq serve first)",
	}
	c.Flags().StringVar(&db, "console-db", defaultConsoleDB, "the console's store (bbolt file)")
	c.Flags().StringVar(&name, "user", "", "login name")
	c.RunE = func(c *cobra.Command, _ []string) error {
		pw, err := withOneTimePassword(db, func(st *console.Stores, hash string) error {
			u, err := st.Accounts.User(name)
			if err != nil {
				return err
			}
			u.PasswordHash, u.MustChange = hash, true
			if err := st.Accounts.Update(u); err != nil {
				return err
			}
			if err := st.Accounts.EndSessions(); err != nil {
				return err
			}
			_, err = st.Audit.Append(audit.Entry{Actor: actor(), Action: "reset_password", Target: name})
			return err
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.OutOrStdout(), "user %s: one-time password: %s (every console session ended)\n", name, pw)
		return err
	}
	return c
}
