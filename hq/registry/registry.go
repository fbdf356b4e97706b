// Package registry is HQ's registry: the people, credentials (certificates,
// free-area IDs, tickets), renewal links, revocations, doors and door
// groups, areas, access levels, schedules, holidays, ticketed events and
// site settings of every site, and the enrollments waiting for an admin's
// approval. It keeps them in an embedded bbolt file and turns a site's
// records into policy snapshot streams: a full snapshot, or a delta from the
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
// The registry file is opened by one process at a time (bbolt's lock):
// the admin CLI and the HQ service each open it for one operation and close
// it again, waiting up to Options.LockTimeout for the other.
package registry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

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

// File layout (bbolt):
//
//	meta/format                 = "tobira-registry-v1"
//	sites/<site>/meta/rev       = 8-byte big-endian revision
//	sites/<site>/meta/floor     = 8-byte: deltas need from >= floor
//	sites/<site>/rec/<kind><key>  = JSON record (live)
//	sites/<site>/dead/<kind><key> = JSON record (deleted: tombstone)
//	sites/<site>/log/<rev><kind><key> = empty: the key changed last at rev
//	sites/<site>/hash/<rev>     = 32-byte content hash of the site at rev
//	pending/<id>                = JSON Pending enrollment
//	names/<site> 0x00 <person>  = the person's name (HQ only: names.go)
var (
	bucketMeta    = []byte("meta")
	bucketSites   = []byte("sites")
	bucketPending = []byte("pending")
	bucketRec     = []byte("rec")
	bucketDead    = []byte("dead")
	bucketLog     = []byte("log")
	bucketHash    = []byte("hash")
	keyFormat     = []byte("format")
	keyRev        = []byte("rev")
	keyFloor      = []byte("floor")
	formatV1      = []byte("tobira-registry-v1")
)

// Options configure Open.
type Options struct {
	// LockTimeout is how long to wait for another process holding the
	// file; default DefaultLockTimeout.
	LockTimeout time.Duration
	// Logger receives the registry's logs; default slog.Default().
	Logger *slog.Logger
}

// Registry is HQ's registry file. It is safe for concurrent use.
type Registry struct {
	db   *bolt.DB
	path string
	log  *slog.Logger
}

// initialMmap is the address space the registry maps at once. A write
// transaction that outgrows the map copies every page it changed to the
// heap when bbolt remaps the file; one large import remapped ~15 times and
// took 4 kB of heap per line. Mapping 256 MiB up front (address space
// only, on every platform tobira-hq ships for) leaves imports of up to
// ~1M lines one copy.
const initialMmap = 256 << 20

// Open opens (or creates) the registry file at path.
func Open(path string, opts Options) (*Registry, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: cmp.Or(opts.LockTimeout, DefaultLockTimeout), InitialMmapSize: initialMmap})
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if k, _ := tx.Cursor().First(); k != nil {
				return fmt.Errorf("%w: bucket %q present but no %q bucket", ErrBadFile, k, bucketMeta)
			}
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keyFormat, formatV1); err != nil {
				return err
			}
		}
		if got := meta.Get(keyFormat); !bytes.Equal(got, formatV1) {
			return fmt.Errorf("%w: format %q, want %q", ErrBadFile, got, formatV1)
		}
		for _, b := range [][]byte{bucketSites, bucketPending, bucketNames} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	return &Registry{db: db, path: path, log: cmp.Or(opts.Logger, slog.Default())}, nil
}

// Close closes the file.
func (r *Registry) Close() error {
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("close registry %s: %w", r.path, err)
	}
	return nil
}

// Path returns the registry's file name.
func (r *Registry) Path() string { return r.path }

// record is the stored form of one record.
type record struct {
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
func (rec record) existedAt(v uint64) bool {
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
	var out Applied
	err = r.db.Update(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		out, err = applyTx(tx, site, puts, dels)
		return err
	})
	if err != nil {
		return Applied{}, fmt.Errorf("apply %d puts and %d deletes to site %s in %s: %w", len(puts), len(dels), site, r.path, err)
	}
	r.logChange(site, out)
	return out, nil
}

// logChange logs a change that changed something.
func (r *Registry) logChange(site string, a Applied) {
	if a.Put+a.Deleted > 0 {
		r.log.Info("registry changed", "site", site, "rev", a.Rev, "put", a.Put, "deleted", a.Deleted)
	}
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
	return puts, dels, nil
}

// applyTx writes puts and deletes dels in tx under the site's next
// revision, and bumps the revision when anything changed.
func applyTx(tx *bolt.Tx, site string, puts []preparedPut, dels [][]byte) (Applied, error) {
	c, err := openChange(tx, site)
	if err != nil {
		return Applied{}, err
	}
	for _, p := range puts {
		if err := c.apply(p); err != nil {
			return Applied{}, err
		}
	}
	for _, k := range dels {
		if err := c.remove(k); err != nil {
			return Applied{}, err
		}
	}
	return c.finish()
}

// siteChange is one change of a site's records, at revision rev, inside a
// write transaction: the site's buckets, and what changed so far.
type siteChange struct {
	meta, recs, dead, log *bolt.Bucket
	rev                   uint64
	out                   Applied
}

// openChange starts a change of site's records (creating the site) at its
// next revision in tx.
func openChange(tx *bolt.Tx, site string) (*siteChange, error) {
	sb, err := siteBucket(tx, site, true)
	if err != nil {
		return nil, err
	}
	meta := sb.Bucket(bucketMeta)
	c := &siteChange{meta: meta, recs: sb.Bucket(bucketRec), dead: sb.Bucket(bucketDead), log: sb.Bucket(bucketLog),
		rev: u64(meta.Get(keyRev)) + 1}
	c.recs.FillPercent, c.log.FillPercent = 0.9, 1
	return c, nil
}

// apply puts p and counts it when it changed the record.
func (c *siteChange) apply(p preparedPut) error {
	changed, err := c.put(p)
	if changed {
		c.out.Put++
	}
	return err
}

// remove deletes the record of k and counts it when there was one.
func (c *siteChange) remove(k []byte) error {
	deleted, err := c.delete(k)
	if deleted {
		c.out.Deleted++
	}
	return err
}

// finish bumps the site's revision when anything changed and returns what
// did.
func (c *siteChange) finish() (Applied, error) {
	out := c.out
	if out.Put+out.Deleted == 0 {
		out.Rev = c.rev - 1
		return out, nil
	}
	out.Rev = c.rev
	return out, c.meta.Put(keyRev, be64(c.rev))
}

// put stores p as the key's new version, or as a new lifetime of a deleted
// key; it reports false, writing nothing, when the stored record is the
// same.
func (c siteChange) put(p preparedPut) (bool, error) {
	rec := record{Rev: c.rev, Created: c.rev, Item: p.item}
	if old := c.recs.Get(p.key); old != nil {
		var o record
		if err := json.Unmarshal(old, &o); err != nil {
			return false, fmt.Errorf("decode record %s: %w", describeKey(p.key), err)
		}
		if bytes.Equal(o.Item, p.item) {
			return false, nil
		}
		rec.Created, rec.Hist = o.Created, o.Hist
		if err := c.log.Delete(logKey(o.Rev, p.key)); err != nil {
			return false, err
		}
	} else if old := c.dead.Get(p.key); old != nil {
		hist, err := c.revive(p.key, old)
		if err != nil {
			return false, err
		}
		rec.Hist = hist
	}
	if err := putRecord(c.recs, c.log, p.key, rec); err != nil {
		return false, err
	}
	return true, nil
}

// revive removes the tombstone old of key k and returns the key's earlier
// lifetimes, the one the tombstone ended included. Beyond maxHistory the
// oldest lifetime is forgotten: deltas from before its end could be wrong,
// so the site's delta floor rises past it.
func (c siteChange) revive(k, old []byte) ([][2]uint64, error) {
	var o record
	if err := json.Unmarshal(old, &o); err != nil {
		return nil, fmt.Errorf("decode tombstone %s: %w", describeKey(k), err)
	}
	hist := append(o.Hist, [2]uint64{o.Created, o.Deleted})
	if len(hist) > maxHistory {
		floor := max(u64(c.meta.Get(keyFloor)), hist[0][1])
		if err := c.meta.Put(keyFloor, be64(floor)); err != nil {
			return nil, err
		}
		hist = hist[1:]
	}
	if err := c.dead.Delete(k); err != nil {
		return nil, err
	}
	if err := c.log.Delete(logKey(o.Rev, k)); err != nil {
		return nil, err
	}
	return hist, nil
}

// delete turns the live record of k into a tombstone; it reports false when
// there is no live record.
func (c siteChange) delete(k []byte) (bool, error) {
	old := c.recs.Get(k)
	if old == nil {
		return false, nil
	}
	var o record
	if err := json.Unmarshal(old, &o); err != nil {
		return false, fmt.Errorf("decode record %s: %w", describeKey(k), err)
	}
	if err := c.log.Delete(logKey(o.Rev, k)); err != nil {
		return false, err
	}
	if err := c.recs.Delete(k); err != nil {
		return false, err
	}
	o.Rev, o.Deleted = c.rev, c.rev
	if err := putRecord(c.dead, c.log, k, o); err != nil {
		return false, err
	}
	return true, nil
}

// putRecord stores rec under k in b and indexes it in log.
func putRecord(b, log *bolt.Bucket, k []byte, rec record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := b.Put(k, v); err != nil {
		return fmt.Errorf("store %s: %w", describeKey(k), err)
	}
	return log.Put(logKey(rec.Rev, k), nil)
}

// Revision returns the site's revision (0: no records ever).
func (r *Registry) Revision(site string) (uint64, error) {
	var rev uint64
	err := r.db.View(func(tx *bolt.Tx) error {
		if sb, _ := siteBucket(tx, site, false); sb != nil {
			rev = u64(sb.Bucket(bucketMeta).Get(keyRev))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read revision of site %s from %s: %w", site, r.path, err)
	}
	return rev, nil
}

// Sites returns the names of the sites with records, sorted.
func (r *Registry) Sites() ([]string, error) {
	var out []string
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSites).ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list sites of %s: %w", r.path, err)
	}
	return out, nil
}

// Count returns how many live records of kind the site holds.
func (r *Registry) Count(site string, kind policy.RecordKind) (int, error) {
	n := 0
	err := r.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return nil
		}
		c := sb.Bucket(bucketRec).Cursor()
		for k, _ := c.Seek([]byte{byte(kind)}); k != nil && k[0] == byte(kind); k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count %s records of site %s in %s: %w", kind, site, r.path, err)
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
	var out policy.Item
	err = r.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return nil
		}
		v := sb.Bucket(bucketRec).Get(k)
		if v == nil {
			return nil
		}
		out, err = decodeRecord(k, v)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("read %s of site %s from %s: %w", describeKey(k), site, r.path, err)
	}
	return out, out != nil, nil
}

// decodeRecord returns the item of the record stored under key k with
// value v.
func decodeRecord(k, v []byte) (policy.Item, error) {
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("decode record %s: %w", describeKey(k), err)
	}
	return decodeItem(k, rec.Item)
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
	err := r.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return fmt.Errorf("%w: %s", ErrUnknownSite, site)
		}
		pub.Version = u64(sb.Bucket(bucketMeta).Get(keyRev))
		if pub.Version == 0 {
			return fmt.Errorf("%w: %s has no records", ErrUnknownSite, site)
		}
		enc, err := policy.NewSnapshotEncoder(w, pub.Version)
		if err != nil {
			return err
		}
		if pub.Records, err = forEachLive(ctx, sb, enc.Put); err != nil {
			return err
		}
		pub.Hash, err = enc.Close()
		return err
	})
	if err != nil {
		return Published{}, fmt.Errorf("write full snapshot of site %s from %s: %w", site, r.path, err)
	}
	if err := r.cacheHash(site, pub.Version, pub.Hash); err != nil {
		r.log.Warn("cannot cache content hash", "site", site, "version", pub.Version, "err", err)
	}
	return pub, nil
}

// forEachLive calls put for every live record of the site bucket.
func forEachLive(ctx context.Context, sb *bolt.Bucket, put func(policy.Item) error) (int, error) {
	n := 0
	err := sb.Bucket(bucketRec).ForEach(func(k, v []byte) error {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		it, err := decodeRecord(k, v)
		if err != nil {
			return err
		}
		if err := put(it); err != nil {
			return fmt.Errorf("encode %s: %w", describeKey(k), err)
		}
		n++
		return nil
	})
	return n, err
}

// ContentHash returns the policy content hash of the site at its current
// revision, and that revision: from the cache, or by encoding the site once
// (a full pass over its records).
func (r *Registry) ContentHash(ctx context.Context, site string) ([32]byte, uint64, error) {
	var h [32]byte
	var rev uint64
	var cached bool
	err := r.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return fmt.Errorf("%w: %s", ErrUnknownSite, site)
		}
		rev = u64(sb.Bucket(bucketMeta).Get(keyRev))
		if hb := sb.Bucket(bucketHash); hb != nil {
			if v := hb.Get(be64(rev)); len(v) == 32 {
				copy(h[:], v)
				cached = true
			}
		}
		return nil
	})
	if err != nil || cached {
		return h, rev, err
	}
	pub, err := r.WriteFull(ctx, site, io.Discard)
	return pub.Hash, pub.Version, err
}

// cacheHash remembers the content hash of site at rev.
func (r *Registry) cacheHash(site string, rev uint64, h [32]byte) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		sb, err := siteBucket(tx, site, false)
		if err != nil || sb == nil {
			return err
		}
		hb, err := sb.CreateBucketIfNotExists(bucketHash)
		if err != nil {
			return err
		}
		return hb.Put(be64(rev), h[:])
	})
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
	err = r.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return fmt.Errorf("%w: %s", ErrUnknownSite, site)
		}
		meta := sb.Bucket(bucketMeta)
		if cur := u64(meta.Get(keyRev)); cur != rev {
			return fmt.Errorf("site changed from revision %d to %d while the delta was built; try again", rev, cur)
		}
		switch floor := u64(meta.Get(keyFloor)); {
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
		recs, dead := sb.Bucket(bucketRec), sb.Bucket(bucketDead)
		c := sb.Bucket(bucketLog).Cursor()
		for lk, _ := c.Seek(be64(from + 1)); lk != nil; lk, _ = c.Next() {
			if pub.Records%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			k := lk[8:]
			v, live := recs.Get(k), true
			if v == nil {
				v, live = dead.Get(k), false
			}
			if v == nil {
				return fmt.Errorf("change log names %s, which is neither live nor deleted", describeKey(k))
			}
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode record %s: %w", describeKey(k), err)
			}
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
				continue // born and deleted after from
			}
			if err != nil {
				return fmt.Errorf("encode %s: %w", describeKey(k), err)
			}
			pub.Records++
		}
		enc.ExpectHash(hash)
		return enc.Close()
	})
	if err != nil {
		return Published{}, fmt.Errorf("write delta of site %s from version %d in %s: %w", site, from, r.path, err)
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

// siteBucket returns the site's bucket, creating it (and its sub-buckets)
// when create is set; nil when absent and not created.
func siteBucket(tx *bolt.Tx, site string, create bool) (*bolt.Bucket, error) {
	sites := tx.Bucket(bucketSites)
	if sb := sites.Bucket([]byte(site)); sb != nil || !create {
		return sb, nil
	}
	sb, err := sites.CreateBucket([]byte(site))
	if err != nil {
		return nil, fmt.Errorf("create site %s: %w", site, err)
	}
	for _, b := range [][]byte{bucketMeta, bucketRec, bucketDead, bucketLog, bucketHash} {
		if _, err := sb.CreateBucket(b); err != nil {
			return nil, fmt.Errorf("create site %s: %w", site, err)
		}
	}
	return sb, nil
}

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

// logKey is the change-log key of k changed at rev.
func logKey(rev uint64, k []byte) []byte { return append(be64(rev), k...) }

// be64 encodes v big-endian.
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// u64 decodes be64; anything else is 0.
func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
