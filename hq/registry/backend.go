package registry

import (
	"context"
	"encoding/json"

	"github.com/tobira-ac/tobira/policy"
)

// Backend is where a Registry keeps its records: the bbolt file of Open,
// or a database (hq/pgstore.OpenRegistry). The Registry does the policy
// model's checks, the lifetimes of record keys, the snapshot encoding and
// the CSV parsing; a Backend only stores, under one rule: every change of
// a site is one transaction, and no two changes of one site run at once
// (also across processes sharing the store), so that revisions never
// repeat or skip.
//
// Keys are registry keys (itemKey: the policy kind byte, then the
// record's identity); items are the policy item's JSON, stored as given
// (byte for byte). Sites, records and pending enrollments are the three
// parts of it.
type Backend interface {
	RecordBackend
	PendingBackend
	NameBackend
	// Close releases the store.
	Close() error
	// String names the store in messages (a file name, a database URL
	// without its password).
	String() string
}

// RecordBackend keeps the sites' records, revisions, change logs and
// content hashes.
type RecordBackend interface {
	// Change runs fn in one transaction on site's records at the site's
	// next revision, creating the site when it has none. When fn reports
	// a change the site's revision becomes SiteTx.Rev; when fn fails
	// nothing is stored.
	Change(ctx context.Context, site string, fn func(SiteTx) (changed bool, err error)) error
	// View runs fn on a consistent read-only view of site (Revision 0
	// when the site has no records).
	View(ctx context.Context, site string, fn func(View) error) error
	// PutHash caches the content hash of site at rev.
	PutHash(ctx context.Context, site string, rev uint64, h [32]byte) error
	// Sites returns the names of the sites with records, sorted by byte.
	Sites(ctx context.Context) ([]string, error)
	// Count returns how many live records of kind site holds.
	Count(ctx context.Context, site string, kind policy.RecordKind) (int, error)
	// Get returns the item of the live record key of site, nil when
	// there is none.
	Get(ctx context.Context, site string, key []byte) ([]byte, error)
	// List returns up to limit live records of kind in site in key
	// order, with keys after after (nil: from the first).
	List(ctx context.Context, site string, kind policy.RecordKind, after []byte, limit int) ([]KeyItem, error)
	// PersonKeys returns the keys of the live credential records of site
	// whose Person is person, in key order.
	PersonKeys(ctx context.Context, site, person string) ([][]byte, error)
}

// KeyItem is a record's key and item.
type KeyItem struct {
	// Key is the registry key.
	Key []byte
	// Item is the item's JSON.
	Item []byte
}

// SiteTx is one change of a site's records inside a Backend transaction.
type SiteTx interface {
	// Rev is the revision the change writes (the site's revision + 1).
	Rev() uint64
	// Floor is the site's delta floor: deltas need from >= Floor.
	Floor() uint64
	// SetFloor raises the site's delta floor, stored with the change.
	SetFloor(floor uint64)
	// Lookup returns the stored state of each key, in the order of keys
	// (keys are distinct).
	Lookup(ctx context.Context, keys [][]byte) ([]Stored, error)
	// Write stores each write's record (live, or a tombstone when its
	// Deleted is set) in place of what Lookup returned for its key, and
	// indexes it in the change log under its Rev.
	Write(ctx context.Context, ws []Write) error
}

// View is a consistent read-only view of one site.
type View interface {
	// Revision is the site's revision (0: no records ever).
	Revision() uint64
	// Floor is the site's delta floor.
	Floor() uint64
	// Hash returns the cached content hash at rev, false when none.
	Hash(ctx context.Context, rev uint64) ([32]byte, bool, error)
	// Live calls fn for every live record in key order.
	Live(ctx context.Context, fn func(key, item []byte) error) error
	// Changed calls fn for every record, live or tombstone, whose Rev is
	// after from, ordered by Rev and then key.
	Changed(ctx context.Context, from uint64, fn func(key []byte, rec Record, live bool) error) error
}

// State is where a key's record is stored.
type State int

const (
	// Absent: no record, live or deleted.
	Absent State = iota
	// Live: a live record.
	Live
	// Dead: a tombstone.
	Dead
)

// Stored is a key's stored record.
type Stored struct {
	// State says whether Record is live, a tombstone, or nothing.
	State State
	// Record is the stored record (zero when Absent).
	Record Record
}

// Write is one record written by a change.
type Write struct {
	// Key is the registry key.
	Key []byte
	// Old is what the key held (as Lookup returned it).
	Old Stored
	// New is the record now: live when New.Deleted is 0, else a
	// tombstone.
	New Record
}

// Record is the stored form of one record (in the bbolt file, its JSON).
type Record struct {
	// Rev is the revision of the record's last change.
	Rev uint64 `json:"rev"`
	// Created is the revision that created this lifetime of the key.
	Created uint64 `json:"created"`
	// Deleted is the revision that deleted it (tombstones only).
	Deleted uint64 `json:"deleted,omitempty"`
	// Hist holds earlier lifetimes [created, deleted) of the key.
	Hist [][2]uint64 `json:"hist,omitempty"`
	// Item is the policy item as JSON (see encodeItem).
	Item json.RawMessage `json:"item"`
}

// existedAt reports whether the key was live at revision v.
func (rec Record) existedAt(v uint64) bool {
	if rec.Created <= v && (rec.Deleted == 0 || v < rec.Deleted) {
		return true
	}
	for _, h := range rec.Hist {
		if h[0] <= v && v < h[1] {
			return true
		}
	}
	return false
}

// PendingBackend keeps the pending enrollments.
type PendingBackend interface {
	// AddPending stores p (its ID set) unless an enrollment with its
	// (site, device, seq) is stored, and returns the ID stored.
	AddPending(ctx context.Context, p Pending) (string, error)
	// PendingList returns the pending enrollments ordered by ID.
	PendingList(ctx context.Context) ([]Pending, error)
	// PendingByID returns one (ErrNotFound).
	PendingByID(ctx context.Context, id string) (Pending, error)
	// DeletePending removes one (ErrNotFound).
	DeletePending(ctx context.Context, id string) error
}

// NameBackend keeps people's names.
type NameBackend interface {
	// SetNames sets names of people of site in one transaction ("":
	// forget).
	SetNames(ctx context.Context, site string, names map[string]string) error
	// Name returns the name of person at site ("" when none).
	Name(ctx context.Context, site, person string) (string, error)
}
