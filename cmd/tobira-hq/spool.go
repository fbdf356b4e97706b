package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
)

// spoolFlags select the spool where HQ keeps what it serves the devices
// (snapshot transfers, commands in force, release offers): PostgreSQL with
// --store-url (shared by every replica), else the --spool directory.
type spoolFlags struct{ dir, url string }

// addSpoolFlags registers the spool flags on c.
func addSpoolFlags(c *cobra.Command) *spoolFlags {
	var s spoolFlags
	c.Flags().StringVar(&s.dir, "spool", "", "the HQ service's spool directory, so that it can re-send chunks and answer the devices' sync requests")
	c.Flags().StringVar(&s.url, "store-url", "", "HQ's PostgreSQL store, postgres://user@host/db: its spool, instead of --spool")
	return &s
}

// apply sets cfg's spool; the Closer (nil when none) closes the database
// it opened.
func (s *spoolFlags) apply(ctx context.Context, cfg *hq.Config, log *slog.Logger) (io.Closer, error) {
	cfg.Spool = s.dir
	if s.url == "" {
		return nil, nil
	}
	st, err := pgstore.Open(ctx, s.url, pgstore.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	cfg.SpoolStore = st.Spool()
	return st, nil
}

// storeSpool makes cfg's PostgreSQL store, when it has one, its spool too.
func storeSpool(cfg *hq.Config) {
	if st, ok := cfg.Store.(*pgstore.Store); ok {
		cfg.SpoolStore = st.Spool()
	}
}

// spooledSender is a Sender with the spool database it writes to.
type spooledSender struct {
	*hq.Sender
	db io.Closer // nil: none
}

// Close disconnects and closes the spool database.
func (s spooledSender) Close() {
	s.Sender.Close()
	if s.db != nil {
		s.db.Close()
	}
}
