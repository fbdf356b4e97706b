// Package registry is HQ's registry: the people, credentials (certificates,
// free-area IDs, tickets), renewal links, revocations, doors and door
// groups, areas, access levels, schedules, holidays, ticketed events and
// site settings of every site, and the enrollments waiting for an admin's
// approval. It keeps them in a Backend and turns a site's records into
// policy snapshot streams: a full snapshot, or a delta from the
// version a device reports.
//
// Records are the policy package's Items (policy.Entry, policy.Person, ...),
// partitioned by site: every site has its own records and its own revision,
// and a snapshot of a site carries exactly that site's records. Every change
// to a site (one Apply, one CSV import, one CRL import) is one transaction
// and bumps the site's revision by one; the revision is the snapshot version
// HQ publishes. A change log indexed by revision makes a delta from any
// earlier revision cheap to build.
//
// The records live in a Backend: the embedded bbolt file of Open (one
// process at a time, bbolt's lock: the admin CLI and the HQ service each
// open it for one operation and close it again, waiting up to
// Options.LockTimeout for the other), or PostgreSQL (hq/pgstore's
// OpenRegistry), which every HQ replica and the admin CLI share at once.
package registry

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/tobira-ac/tobira/policy"
)

// Errors of the registry. Each is wrapped with the detail (site, line,
// revision); test for them with errors.Is.
var (
	// ErrBadFile means the file is not a registry (another program's
	// bbolt file, or a newer layout).
	ErrBadFile = errors.New("not a tobira registry file")
	// ErrInvalid means a record or an input line breaks the rules of the
	// policy model (policy.ErrInvalidSnapshot) or of the CSV format.
	// Nothing was applied.
	ErrInvalid = errors.New("invalid registry input")
	// ErrNoDelta means no delta can be built from the requested version:
	// it is 0, newer than the site's revision, or equal to it (nothing to
	// send). Send a full snapshot instead (or nothing, when equal).
	ErrNoDelta = errors.New("no delta from that version")
	// ErrUnknownSite means the site has no records.
	ErrUnknownSite = errors.New("unknown site")
	// ErrNotFound means a pending enrollment ID does not exist.
	ErrNotFound = errors.New("not found")
)

// DefaultLockTimeout is how long Open waits for another process holding
// the file.
const DefaultLockTimeout = 10 * time.Second

// maxHistory bounds the remembered lifetimes of one record key that was
// deleted and created again; beyond it the site's delta floor rises.
const maxHistory = 16

// Options configure Open and New.
type Options struct {
	// LockTimeout is how long Open waits for another process holding the
	// file; default DefaultLockTimeout.
	LockTimeout time.Duration
	// Logger receives the registry's logs; default slog.Default().
	Logger *slog.Logger
}

// Registry is HQ's registry. It is safe for concurrent use.
type Registry struct {
	b    Backend
	name string
	log  *slog.Logger
}

// Open opens (or creates) the registry bbolt file at path.
func Open(path string, opts Options) (*Registry, error) {
	b, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	return New(b, opts), nil
}

// New returns the registry kept in b; closing it closes b.
func New(b Backend, opts Options) *Registry {
	return &Registry{b: b, name: b.String(), log: cmp.Or(opts.Logger, slog.Default())}
}

// Close closes the registry's store.
func (r *Registry) Close() error {
	if err := r.b.Close(); err != nil {
		return fmt.Errorf("close registry %s: %w", r.name, err)
	}
	return nil
}

// Path returns the name of the registry's store: the file name, or the
// database URL without its password.
func (r *Registry) Path() string { return r.name }

// Change is one transaction's worth of record changes.
type Change struct {
	// Put inserts or replaces records.
	Put []policy.Item
	// Delete removes records (only their kind and key matter); a record
	// that does not exist is skipped.
	Delete []policy.Item
}

// Applied reports what Apply did.
type Applied struct {
	// Rev is the site's revision after the change (unchanged when nothing
	// changed).
	Rev uint64
	// Put and Deleted count the records written and removed; records
	// identical to the stored ones are not counted.
	Put, Deleted int
}

// Apply validates every record of ch (the policy model's rules) and then
// writes them all in one transaction under the site's next revision, or
// nothing when one is invalid (ErrInvalid naming it). A change that changes
// nothing keeps the revision.
func (r *Registry) Apply(ctx context.Context, site string, ch Change) (Applied, error) {
	if err := checkSite(site); err != nil {
		return Applied{}, err
	}
	puts, dels, err := prepareChange(site, ch)
	if err != nil {
		return Applied{}, err
	}
	out, err := r.change(ctx, site, func(c *siteChange) error {
		for _, p := range puts {
			if err := c.put(ctx, p); err != nil {
				return err
			}
		}
		for _, k := range dels {
			if err := c.remove(ctx, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Applied{}, fmt.Errorf("apply %d puts and %d deletes to site %s in %s: %w", len(puts), len(dels), site, r.name, err)
	}
	return out, nil
}

// change runs fn on a change of site in one backend transaction, and logs
// what changed.
func (r *Registry) change(ctx context.Context, site string, fn func(c *siteChange) error) (Applied, error) {
	var out Applied
	err := r.b.Change(ctx, site, func(tx SiteTx) (bool, error) {
		c := &siteChange{tx: tx}
		if err := fn(c); err != nil {
			return false, err
		}
		if err := c.flush(ctx); err != nil {
			return false, err
		}
		out = c.out
		out.Rev = tx.Rev()
		if out.Put+out.Deleted == 0 {
			out.Rev--
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return Applied{}, err
	}
	if out.Put+out.Deleted > 0 {
		r.log.Info("registry changed", "site", site, "rev", out.Rev, "put", out.Put, "deleted", out.Deleted)
	}
	return out, nil
}

// preparedPut is one validated put of a Change: its registry key and its
// item as JSON.
type preparedPut struct {
	key  []byte
	item []byte
}

// prepareChange validates ch before any write: every put against the
// policy model, no key put twice or both put and deleted. It returns the
// puts and the registry keys of the deletes.
func prepareChange(site string, ch Change) ([]preparedPut, [][]byte, error) {
	val, err := newValidator()
	if err != nil {
		return nil, nil, err
	}
	puts := make([]preparedPut, 0, len(ch.Put))
	seen := make(map[string]int, len(ch.Put))
	for i, it := range ch.Put {
		if err := val.check(it); err != nil {
			return nil, nil, fmt.Errorf("%w: site %s: put %d: %w", ErrInvalid, site, i, err)
		}
		k, v, err := encodeItem(it)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: site %s: put %d: %w", ErrInvalid, site, i, err)
		}
		if j, dup := seen[string(k)]; dup {
			return nil, nil, fmt.Errorf("%w: site %s: put %d repeats put %d (%s)", ErrInvalid, site, i, j, describeKey(k))
		}
		seen[string(k)] = i
		puts = append(puts, preparedPut{k, v})
	}
	dels := make([][]byte, 0, len(ch.Delete))
	for i, it := range ch.Delete {
		k, err := itemKey(it)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: site %s: delete %d: %w", ErrInvalid, site, i, err)
		}
		if _, dup := seen[string(k)]; dup {
			return nil, nil, fmt.Errorf("%w: site %s: delete %d of %s, which the same change puts", ErrInvalid, site, i, describeKey(k))
		}
		dels = append(dels, k)
	}
	// In key order: bbolt splits a node only when the transaction
	// commits, so keys in random order landing in one node (a new site's)
	// cost time in the square of their number (see boltBackend.SetNames).
	slices.SortFunc(puts, func(a, b preparedPut) int { return bytes.Compare(a.key, b.key) })
	slices.SortFunc(dels, bytes.Compare)
	return puts, dels, nil
}

// changeBatch is how many puts and deletes a change looks up and writes
// at a time (one round trip each on a database).
const changeBatch = 1024

// siteChange is one change of a site's records inside a backend
// transaction: the puts and deletes not yet written (keys are distinct
// within a change), and what changed so far.
type siteChange struct {
	tx      SiteTx
	keys    [][]byte
	items   [][]byte        // nil: delete
	queued  map[string]bool // the keys queued
	out     Applied
	scratch []Write
}

// put queues p.
func (c *siteChange) put(ctx context.Context, p preparedPut) error {
	return c.queue(ctx, p.key, p.item)
}

// remove queues the delete of the record of k.
func (c *siteChange) remove(ctx context.Context, k []byte) error {
	return c.queue(ctx, k, nil)
}

// queue adds a put (item set) or delete of k, and writes the queue when
// it is full.
func (c *siteChange) queue(ctx context.Context, k, item []byte) error {
	if c.queued[string(k)] { // a CSV's schedule deleted and put again
		if err := c.flush(ctx); err != nil {
			return err
		}
	}
	if c.queued == nil {
		c.queued = make(map[string]bool, changeBatch)
	}
	c.keys, c.items, c.queued[string(k)] = append(c.keys, k), append(c.items, item), true
	if len(c.keys) < changeBatch {
		return nil
	}
	return c.flush(ctx)
}

// flush looks up the queued keys, works out their new records and writes
// those that changed.
func (c *siteChange) flush(ctx context.Context) error {
	if len(c.keys) == 0 {
		return nil
	}
	old, err := c.tx.Lookup(ctx, c.keys)
	if err != nil {
		return err
	}
	ws := c.scratch[:0]
	for i, k := range c.keys {
		var w Write
		var ok bool
		if c.items[i] != nil {
			w, ok = c.putRecord(k, c.items[i], old[i])
		} else {
			w, ok = c.deleteRecord(k, old[i])
		}
		if ok {
			ws = append(ws, w)
		}
	}
	if err := c.tx.Write(ctx, ws); err != nil {
		return err
	}
	c.keys, c.items, c.scratch = c.keys[:0], c.items[:0], ws[:0]
	clear(c.queued)
	return nil
}

// putRecord returns the write that stores item as the key's new version,
// or as a new lifetime of a deleted key; false when the stored record is
// the same.
func (c *siteChange) putRecord(k, item []byte, old Stored) (Write, bool) {
	rev := c.tx.Rev()
	rec := Record{Rev: rev, Created: rev, Item: item}
	switch old.State {
	case Live:
		if bytes.Equal(old.Record.Item, item) {
			return Write{}, false
		}
		rec.Created, rec.Hist = old.Record.Created, old.Record.Hist
	case Dead:
		rec.Hist = c.revive(old.Record)
	}
	c.out.Put++
	return Write{Key: k, Old: old, New: rec}, true
}

// revive returns the earlier lifetimes of a key whose tombstone is o, the
// one the tombstone ended included. Beyond maxHistory the oldest lifetime
// is forgotten: deltas from before its end could be wrong, so the site's
// delta floor rises past it.
func (c *siteChange) revive(o Record) [][2]uint64 {
	hist := append(o.Hist, [2]uint64{o.Created, o.Deleted})
	if len(hist) > maxHistory {
		c.tx.SetFloor(max(c.tx.Floor(), hist[0][1]))
		hist = hist[1:]
	}
	return hist
}

// deleteRecord returns the write that turns the live record of k into a
// tombstone; false when there is no live record.
func (c *siteChange) deleteRecord(k []byte, old Stored) (Write, bool) {
	if old.State != Live {
		return Write{}, false
	}
	rec := old.Record
	rec.Rev, rec.Deleted = c.tx.Rev(), c.tx.Rev()
	c.out.Deleted++
	return Write{Key: k, Old: old, New: rec}, true
}

// Revision returns the site's revision (0: no records ever).
func (r *Registry) Revision(site string) (uint64, error) {
	var rev uint64
	err := r.b.View(context.Background(), site, func(v View) error {
		rev = v.Revision()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read revision of site %s from %s: %w", site, r.name, err)
	}
	return rev, nil
}

// Sites returns the names of the sites with records, sorted.
func (r *Registry) Sites() ([]string, error) {
	out, err := r.b.Sites(context.Background())
	if err != nil {
		return nil, fmt.Errorf("list sites of %s: %w", r.name, err)
	}
	return out, nil
}

// Count returns how many live records of kind the site holds.
func (r *Registry) Count(site string, kind policy.RecordKind) (int, error) {
	n, err := r.b.Count(context.Background(), site, kind)
	if err != nil {
		return 0, fmt.Errorf("count %s records of site %s in %s: %w", kind, site, r.name, err)
	}
	return n, nil
}

// Get returns the live record with it's kind and key (other fields of it
// are ignored), and false when there is none.
func (r *Registry) Get(site string, it policy.Item) (policy.Item, bool, error) {
	k, err := itemKey(it)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	out, err := r.getKey(context.Background(), site, k)
	if err != nil {
		return nil, false, fmt.Errorf("read %s of site %s from %s: %w", describeKey(k), site, r.name, err)
	}
	return out, out != nil, nil
}

// getKey returns the live record of key k, nil when there is none.
func (r *Registry) getKey(ctx context.Context, site string, k []byte) (policy.Item, error) {
	item, err := r.b.Get(ctx, site, k)
	if err != nil || item == nil {
		return nil, err
	}
	return decodeItem(k, item)
}

// Published describes a snapshot stream the registry wrote.
type Published struct {
	// Version is the snapshot version (the site's revision).
	Version uint64
	// From is the version a delta applies to (0: full).
	From uint64
	// Records counts the records written (puts and deletes).
	Records int
	// Hash is the policy content hash a store has after applying it.
	Hash [32]byte
}

// WriteFull writes the site's records at its current revision as a full
// policy snapshot stream to w, and caches the content hash.
func (r *Registry) WriteFull(ctx context.Context, site string, w io.Writer) (Published, error) {
	var pub Published
	err := r.b.View(ctx, site, func(v View) error {
		pub.Version = v.Revision()
		if pub.Version == 0 {
			return fmt.Errorf("%w: %s", ErrUnknownSite, site)
		}
		enc, err := policy.NewSnapshotEncoder(w, pub.Version)
		if err != nil {
			return err
		}
		err = v.Live(ctx, func(k, item []byte) error {
			it, err := decodeItem(k, item)
			if err != nil {
				return err
			}
			if err := enc.Put(it); err != nil {
				return fmt.Errorf("encode %s: %w", describeKey(k), err)
			}
			pub.Records++
			return nil
		})
		if err != nil {
			return err
		}
		pub.Hash, err = enc.Close()
		return err
	})
	if err != nil {
		return Published{}, fmt.Errorf("write full snapshot of site %s from %s: %w", site, r.name, err)
	}
	if err := r.b.PutHash(ctx, site, pub.Version, pub.Hash); err != nil {
		r.log.Warn("cannot cache content hash", "site", site, "version", pub.Version, "err", err)
	}
	return pub, nil
}

// ContentHash returns the policy content hash of the site at its current
// revision, and that revision: from the cache, or by encoding the site once
// (a full pass over its records).
func (r *Registry) ContentHash(ctx context.Context, site string) ([32]byte, uint64, error) {
	var h [32]byte
	var rev uint64
	var cached bool
	err := r.b.View(ctx, site, func(v View) error {
		if rev = v.Revision(); rev == 0 {
			return fmt.Errorf("%w: %s", ErrUnknownSite, site)
		}
		var err error
		h, cached, err = v.Hash(ctx, rev)
		return err
	})
	if err != nil || cached {
		return h, rev, err
	}
	pub, err := r.WriteFull(ctx, site, io.Discard)
	return pub.Hash, pub.Version, err
}

// WriteDelta writes a delta policy stream from version from to the site's
// current revision: every record put or deleted since from. It fails with
// ErrNoDelta when from is 0, not older than the current revision, or older
// than the site's delta floor. The delta carries the expected content hash,
// so the device refuses it unless it ends exactly at the site's records.
func (r *Registry) WriteDelta(ctx context.Context, site string, from uint64, w io.Writer) (Published, error) {
	hash, rev, err := r.ContentHash(ctx, site)
	if err != nil {
		return Published{}, fmt.Errorf("write delta of site %s: %w", site, err)
	}
	pub := Published{Version: rev, From: from, Hash: hash}
	err = r.b.View(ctx, site, func(v View) error {
		if cur := v.Revision(); cur != rev {
			return fmt.Errorf("site changed from revision %d to %d while the delta was built; try again", rev, cur)
		}
		switch floor := v.Floor(); {
		case from == 0:
			return fmt.Errorf("%w: version 0 (the device has no snapshot)", ErrNoDelta)
		case from >= rev:
			return fmt.Errorf("%w: version %d, the site is at %d", ErrNoDelta, from, rev)
		case from < floor:
			return fmt.Errorf("%w: version %d is older than the delta floor %d", ErrNoDelta, from, floor)
		}
		enc, err := policy.NewDeltaEncoder(w, from, rev)
		if err != nil {
			return err
		}
		err = v.Changed(ctx, from, func(k []byte, rec Record, live bool) error {
			it, err := decodeItem(k, rec.Item)
			if err != nil {
				return err
			}
			switch {
			case live:
				err = enc.Put(it)
			case rec.existedAt(from):
				err = enc.Delete(it)
			default:
				return nil // born and deleted after from
			}
			if err != nil {
				return fmt.Errorf("encode %s: %w", describeKey(k), err)
			}
			pub.Records++
			return nil
		})
		if err != nil {
			return err
		}
		enc.ExpectHash(hash)
		return enc.Close()
	})
	if err != nil {
		return Published{}, fmt.Errorf("write delta of site %s from version %d in %s: %w", site, from, r.name, err)
	}
	return pub, nil
}

// validator checks items with policy's own rules, by encoding them into a
// stream that goes nowhere.
type validator struct{ enc *policy.SnapshotEncoder }

// newValidator returns a validator.
func newValidator() (validator, error) {
	enc, err := policy.NewSnapshotEncoder(io.Discard, 1)
	return validator{enc}, err
}

// check returns the policy model's complaint about it, if any.
func (v validator) check(it policy.Item) error { return v.enc.Put(it) }

// checkSite checks a site name (the sync package's name rule: a topic
// level).
func checkSite(site string) error {
	if site == "" || len(site) > 64 {
		return fmt.Errorf("%w: site name %q is %d bytes, want 1..64", ErrInvalid, site, len(site))
	}
	for i := 0; i < len(site); i++ {
		c := site[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: site name %q has byte 0x%02x; allowed are A-Z a-z 0-9 . _ -", ErrInvalid, site, c)
		}
	}
	return nil
}
