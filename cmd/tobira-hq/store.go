package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/sync/proto"
)

// storeFlags select HQ's store: PostgreSQL when a URL is given, else the
// bbolt file of --db.
type storeFlags struct {
	url           string
	retentionDays int
}

// addStoreFlags registers the store flags on c.
func addStoreFlags(c *cobra.Command) *storeFlags {
	var s storeFlags
	c.Flags().StringVar(&s.url, "store-url", "", "PostgreSQL store, postgres://user@host/db (empty: the bbolt file of --db)")
	c.Flags().IntVar(&s.retentionDays, "retention-days", 0, "drop events received more than this many days ago (PostgreSQL; 0: keep all)")
	return &s
}

// open opens the PostgreSQL store, nil when none is configured.
func (s *storeFlags) open(ctx context.Context, log *slog.Logger) (hq.Store, error) {
	if s.url == "" {
		return nil, nil
	}
	st, err := pgstore.Open(ctx, s.url, pgstore.Options{Retention: time.Duration(s.retentionDays) * 24 * time.Hour, Logger: log})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// marksOf returns the ticket-mark store that goes with st: PostgreSQL's
// marks tables for a PostgreSQL store, else nil (HQ keeps hq-marks.db
// next to its bbolt file).
func marksOf(st hq.Store) hq.MarkStore {
	if pg, ok := st.(*pgstore.Store); ok {
		return pg.Marks()
	}
	return nil
}

// consoleShared returns the console's records kept with st: the audit log,
// the alarms (with the wrong-PIN counts) and the publications and rollouts
// in PostgreSQL for a PostgreSQL store (shared by the replicas), else none
// (the console's bbolt file keeps them).
func consoleShared(st hq.Store) console.Shared {
	if pg, ok := st.(*pgstore.Store); ok {
		return console.Shared{Audit: pg.AuditChain(), Alarms: pg.Alarms(), Ops: pg.ConsoleOps()}
	}
	return console.Shared{}
}

// migrateCommand is "tobira-hq migrate".
func migrateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the PostgreSQL schema migrations built into this binary (safe to run again, and from several replicas)",
		Args:  cobra.NoArgs,
	}
	sf := addStoreFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if sf.url == "" {
			return fmt.Errorf("migrate needs --store-url (setting store)")
		}
		applied, err := pgstore.Migrate(c.Context(), sf.url)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.OutOrStdout(), "applied %d migrations %v\n", len(applied), applied)
		return err
	}
	return c
}

// migrateStoreCommand is "tobira-hq migrate-store".
func migrateStoreCommand() *cobra.Command {
	var db, reg string
	c := &cobra.Command{
		Use:   "migrate-store",
		Short: "Copy a bbolt HQ store (events, status, results, ticket marks), the registry, the spool and the console's audit log, alarms, publications and rollouts into PostgreSQL; running it again copies nothing twice",
		Args:  cobra.NoArgs,
	}
	c.Flags().StringVar(&db, "db", "hq.db", "the bbolt HQ store to copy (stop tobira-hq serve first)")
	c.Flags().StringVar(&reg, "registry", "registry.db", "the bbolt registry to copy (skipped when absent, unless named)")
	var consoleDB, spool string
	c.Flags().StringVar(&consoleDB, "console-db", defaultConsoleDB, "the console's store whose audit log, alarms, publications and rollouts to copy (when it exists)")
	c.Flags().StringVar(&spool, "spool", "", "serve's spool directory to copy: snapshot transfers, commands in force, release offers (empty: none)")
	sf := addStoreFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if sf.url == "" {
			return fmt.Errorf("migrate-store needs --store-url (setting store)")
		}
		log := logger(c)
		src, err := hq.OpenBoltStore(db, log)
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := pgstore.Open(c.Context(), sf.url, pgstore.Options{Logger: log})
		if err != nil {
			return err
		}
		defer dst.Close()
		n, err := copyStore(c.Context(), src, dst)
		if err != nil {
			return err
		}
		if _, err = fmt.Fprintf(c.OutOrStdout(), "copied %d events (new %d), %d devices, %d results from %s\n", n.events, n.added, n.devices, n.results, db); err != nil {
			return err
		}
		if err := migrateMarks(c.Context(), c.OutOrStdout(), hq.MarksPath(db), dst.Marks()); err != nil {
			return err
		}
		if err := migrateRegistry(c.Context(), reg, c.Flags().Changed("registry"), sf.url, c.OutOrStdout(), log); err != nil {
			return err
		}
		if err := migrateSpool(c.Context(), c.OutOrStdout(), spool, dst); err != nil {
			return err
		}
		return migrateConsole(c.Context(), c.OutOrStdout(), consoleDB, dst)
	}
	return c
}

// migrateRegistry copies the bbolt registry file path into the registry
// in PostgreSQL at url: the sites PostgreSQL lacks, with their revisions,
// the pending enrollments and the names (registry.Copy). A missing file
// is skipped unless named.
func migrateRegistry(ctx context.Context, path string, named bool, url string, stdout io.Writer, log *slog.Logger) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && !named {
		_, err := fmt.Fprintf(stdout, "no registry %s to copy\n", path)
		return err
	} else if err != nil {
		return fmt.Errorf("migrate-store: registry: %w", err)
	}
	src, err := registry.Open(path, registry.Options{Logger: log})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := pgstore.OpenRegistry(ctx, url, registry.Options{Logger: log})
	if err != nil {
		return err
	}
	defer dst.Close()
	n, err := registry.Copy(ctx, dst, src)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "copied registry %s: %d sites (%d there already), %d records, %d pending enrollments, %d names\n",
		path, n.Sites, n.Skipped, n.Records, n.Pending, n.Names)
	return err
}

// migrateSpool copies the spool directory dir (serve's spool), when one
// is set, into dst's spool (hq.CopySpool) and says what it copied to out.
func migrateSpool(ctx context.Context, out io.Writer, dir string, dst *pgstore.Store) error {
	if dir == "" {
		_, err := fmt.Fprintln(out, "no spool to copy (no --spool)")
		return err
	}
	if _, err := os.Stat(dir); err != nil { // NewFileSpool would make a missing one
		return fmt.Errorf("migrate-store: spool: %w", err)
	}
	src, err := hq.NewFileSpool(dir)
	if err != nil {
		return err
	}
	n, err := hq.CopySpool(ctx, src, dst.Spool())
	if err != nil {
		return fmt.Errorf("copy the spool %s: %w", dir, err)
	}
	_, err = fmt.Fprintf(out, "copied spool %s: %d snapshot transfers (new %d), the latest of %d devices and groups, the commands in force of %d devices (new %d), %d release offers (new %d)\n",
		dir, n.Transfers, n.NewTransfers, n.Latest, n.Commands, n.NewCommands, n.Offers, n.NewOffers)
	return err
}

// migrateMarks copies the bbolt mark store at path, when there is one,
// into dst and says what it copied to out.
func migrateMarks(ctx context.Context, out io.Writer, path string, dst *pgstore.Marks) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		_, err = fmt.Fprintf(out, "no ticket marks to copy (no %s)\n", path)
		return err
	}
	src, err := hq.OpenBoltMarks(path, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	n, err := copyMarks(ctx, src, dst)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "copied %d ticket marks (new %d) and %d reports (new %d) of %d sites from %s\n",
		n.marks, n.newMarks, n.reports, n.newReports, n.sites, path)
	return err
}

// migrateConsole copies the audit log (as the same chain: sequence
// numbers and hashes), the alarms and the publications and rollouts of the
// console's bbolt file at path, when there is one, into dst, and says what
// it copied to out.
func migrateConsole(ctx context.Context, out io.Writer, path string, dst *pgstore.Store) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		_, err = fmt.Fprintf(out, "no audit log or alarms to copy (no %s)\n", path)
		return err
	}
	src, err := console.OpenStores(path, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	chain := dst.AuditChain()
	var entries []audit.Entry
	n, added := 0, 0
	flush := func() error {
		a, err := chain.Import(entries)
		n, added, entries = n+len(entries), added+a, entries[:0]
		return err
	}
	err = src.Audit.Each(func(e audit.Entry) error {
		if entries = append(entries, e); len(entries) < copyChunk {
			return nil
		}
		return flush()
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("copy the audit log of %s: %w", path, err)
	}
	alarms, err := src.Alarms.All()
	if err != nil {
		return err
	}
	newAlarms := 0
	for _, a := range alarms {
		var isNew bool
		err := dst.Alarms().Update(a.ID, func(cur *alarm.Alarm) (*alarm.Alarm, error) {
			if isNew = cur == nil; !isNew {
				return nil, nil // PostgreSQL's is as new or newer
			}
			return &a, nil
		})
		if err != nil {
			return fmt.Errorf("copy alarm %s of %s: %w", a.ID, path, err)
		}
		if isNew {
			newAlarms++
		}
	}
	count, head, err := audit.NewLog(chain, nil).Verify()
	if err != nil {
		return fmt.Errorf("the audit log in PostgreSQL after the copy: %w", err)
	}
	ops, newOps, err := copyConsoleOps(ctx, src.Ops, dst.ConsoleOps())
	if err != nil {
		return fmt.Errorf("copy the publications and rollouts of %s: %w", path, err)
	}
	_, err = fmt.Fprintf(out, "copied %d audit entries (new %d; the chain in PostgreSQL: %d entries, head %s) and %d alarms (new %d) from %s\n"+
		"copied %d publications and rollouts (new %d) from %s\n",
		n, added, count, head, len(alarms), newAlarms, path, ops, newOps, path)
	return err
}

// copiedMarks counts what copyMarks copied.
type copiedMarks struct{ sites, marks, newMarks, reports, newReports int }

// copyMarks copies every site's marks (with their sequence numbers: the
// gates' cursors stay valid) and reports from src into dst; a second run
// adds nothing.
func copyMarks(ctx context.Context, src *hq.BoltMarks, dst *pgstore.Marks) (copiedMarks, error) {
	var n copiedMarks
	sites, err := src.Sites(ctx)
	if err != nil {
		return n, err
	}
	for _, site := range sites {
		n.sites++
		reps, err := src.Reports(ctx, site)
		if err != nil {
			return n, err
		}
		for after, head := uint64(0), uint64(1); after < head; {
			var ms []proto.Mark
			if ms, head, err = src.After(ctx, site, after, copyChunk); err != nil {
				return n, err
			}
			if len(ms) == 0 {
				break
			}
			added, _, err := dst.Import(ctx, site, ms, nil)
			if err != nil {
				return n, err
			}
			n.marks, n.newMarks, after = n.marks+len(ms), n.newMarks+added, ms[len(ms)-1].Seq
		}
		_, added, err := dst.Import(ctx, site, nil, reps)
		if err != nil {
			return n, err
		}
		n.reports, n.newReports = n.reports+len(reps), n.newReports+added
	}
	return n, nil
}

// copySource is a store that migrate-store reads.
type copySource interface {
	hq.EventStore
	hq.DeviceStore
	EachResult(ctx context.Context, fn func(proto.Result) error) error
}

// copied counts what copyStore copied.
type copied struct{ events, added, devices, results int }

// copyChunk is how many events of a device copyStore stores at a time.
const copyChunk = 5000

// copyStore copies every event, status and result of src into dst.
// Events keep their seqs (dst's dedup makes a second run store nothing)
// and are stamped received at their own time, so retention treats them
// by age.
func copyStore(ctx context.Context, src copySource, dst hq.Store) (copied, error) {
	var n copied
	devs, err := src.Devices(ctx)
	if err != nil {
		return n, err
	}
	for _, d := range devs {
		n.devices++
		var evs []proto.Event
		flush := func() error {
			if len(evs) == 0 {
				return nil
			}
			b, err := hq.NewEventBatch(d.Site, d.Device, evs[len(evs)-1].Time, evs)
			if err != nil {
				return err
			}
			res, err := dst.StoreEvents(ctx, []hq.EventBatch{b})
			if err != nil {
				return err
			}
			n.events, n.added, evs = n.events+len(evs), n.added+len(res[0].Added), nil
			return nil
		}
		err := src.Query(ctx, hq.EventQuery{Site: d.Site, Device: d.Device}, func(ev hq.StoredEvent) error {
			if evs = append(evs, ev.Event); len(evs) < copyChunk {
				return nil
			}
			return flush()
		})
		if err == nil {
			err = flush()
		}
		if err == nil && !d.Seen.IsZero() {
			err = dst.PutStatus(ctx, d.Site, d.Device, d.Status, d.Seen)
		}
		if err != nil {
			return n, fmt.Errorf("copy device %s/%s: %w", d.Site, d.Device, err)
		}
	}
	err = src.EachResult(ctx, func(r proto.Result) error {
		n.results++
		return dst.PutResult(ctx, r, r.Time)
	})
	return n, err
}
