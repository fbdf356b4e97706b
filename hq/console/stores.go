package console

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/oplog"
	"github.com/tobira-ac/tobira/internal/boltfile"
)

// Stores are the console's accounts, sessions, audit log, alarms and the
// publications and rollouts started from it in one bbolt file (next to
// HQ's store), or with the audit log, the alarms and the operations kept
// elsewhere, shared by replicas (OpenSharedStores: PostgreSQL); tobira-hq
// serve puts a pgaccounts.Store in Accounts when HQ's store is PostgreSQL.
type Stores struct {
	// Accounts holds the users and sessions: the file's (auth.Store);
	// replace it with a pgaccounts.Store to keep them on PostgreSQL.
	Accounts Accounts
	// Audit is the audit log.
	Audit *audit.Log
	// Alarms is the alarm list.
	Alarms *alarm.List
	// Ops are the publications and rollouts started from the console.
	Ops oplog.Store
	db  *bolt.DB
}

// OpenStores opens (or creates) the console file at path. Like every
// bbolt file it allows one process at a time: stop tobira-hq serve
// before tobira-hq console add-user or reset-password. now stamps the
// records (nil: time.Now).
func OpenStores(path string, now func() time.Time) (*Stores, error) {
	return OpenSharedStores(path, Shared{}, now)
}

// Shared are the console's records that tobira-hq replicas share, kept
// outside the console's file (hq/pgstore implements both on PostgreSQL).
// A nil field is kept in the file.
type Shared struct {
	// Audit keeps the audit log.
	Audit audit.Chain
	// Alarms keeps the alarms (and, as an alarm.PINCounter, the wrong-PIN
	// counts).
	Alarms alarm.Store
	// Ops keeps the publications and rollouts started from the console.
	Ops oplog.Store
}

// OpenSharedStores is OpenStores with the audit log, the alarms and the
// operations kept in sh where it has them.
func OpenSharedStores(path string, sh Shared, now func() time.Time) (*Stores, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltfile.OpenTimeout})
	if err != nil {
		return nil, fmt.Errorf("open console store %s (is tobira-hq serve running?): %w", path, err)
	}
	acc, err := auth.NewStore(db, now)
	if err != nil {
		db.Close()
		return nil, err
	}
	log, alarms, ops := audit.NewLog(sh.Audit, now), alarm.NewList(sh.Alarms), sh.Ops
	if sh.Audit == nil {
		log, err = audit.New(db, auth.Format, now)
	}
	if err == nil && sh.Alarms == nil {
		alarms, err = alarm.Open(db, auth.Format)
	}
	if err == nil && sh.Ops == nil {
		ops, err = oplog.Open(db, auth.Format)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	if _, err := acc.PruneSessions(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("console store %s: prune sessions: %w", path, err)
	}
	return &Stores{Accounts: acc, Audit: log, Alarms: alarms, Ops: ops, db: db}, nil
}

// Close closes the file.
func (s *Stores) Close() error { return s.db.Close() }
