package console

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/internal/boltfile"
)

// Stores are the console's accounts, sessions, audit log and alarms in one bbolt
// file (next to HQ's store), or with the audit log and the alarms kept
// elsewhere, shared by replicas (OpenSharedStores: PostgreSQL).
type Stores struct {
	// Accounts holds the users and sessions.
	Accounts *auth.Store
	// Audit is the audit log.
	Audit *audit.Log
	// Alarms is the alarm list.
	Alarms *alarm.List
	db     *bolt.DB
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
	// Alarms keeps the alarms.
	Alarms alarm.Store
}

// OpenSharedStores is OpenStores with the audit log and the alarms kept
// in sh where it has them.
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
	log, alarms := audit.NewLog(sh.Audit, now), alarm.NewList(sh.Alarms)
	if sh.Audit == nil {
		log, err = audit.New(db, auth.Format, now)
	}
	if err == nil && sh.Alarms == nil {
		alarms, err = alarm.Open(db, auth.Format)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	if _, err := acc.PruneSessions(); err != nil {
		db.Close()
		return nil, fmt.Errorf("console store %s: prune sessions: %w", path, err)
	}
	return &Stores{Accounts: acc, Audit: log, Alarms: alarms, db: db}, nil
}

// Close closes the file.
func (s *Stores) Close() error { return s.db.Close() }
