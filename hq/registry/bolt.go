package registry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/policy"
)

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
//	names/<site> 0x00 <person>  = the person's name
var (
	bucketMeta    = []byte("meta")
	bucketSites   = []byte("sites")
	bucketPending = []byte("pending")
	bucketNames   = []byte("names")
	bucketRec     = []byte("rec")
	bucketDead    = []byte("dead")
	bucketLog     = []byte("log")
	bucketHash    = []byte("hash")
	keyFormat     = []byte("format")
	keyRev        = []byte("rev")
	keyFloor      = []byte("floor")
	formatV1      = []byte("tobira-registry-v1")
)

// initialMmap is the address space the registry maps at once. A write
// transaction that outgrows the map copies every page it changed to the
// heap when bbolt remaps the file; one large import remapped ~15 times and
// took 4 kB of heap per line. Mapping 256 MiB up front (address space
// only, on every platform tobira-hq ships for) leaves imports of up to
// ~1M lines one copy.
const initialMmap = 256 << 20

// boltBackend is the Backend of a registry bbolt file.
type boltBackend struct {
	db   *bolt.DB
	path string
}

// openBolt opens (or creates) the registry file at path.
func openBolt(path string, opts Options) (*boltBackend, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: cmp.Or(opts.LockTimeout, DefaultLockTimeout), InitialMmapSize: initialMmap})
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	if err := db.Update(initFile); err != nil {
		db.Close()
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	return &boltBackend{db: db, path: path}, nil
}

// initFile checks the file's format, or writes it into an empty file.
func initFile(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return fmt.Errorf("%w: bucket %q present but no %q bucket", ErrBadFile, k, bucketMeta)
		}
		var err error
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
}

// Close implements Backend.
func (b *boltBackend) Close() error { return b.db.Close() }

// String implements Backend.
func (b *boltBackend) String() string { return b.path }

// boltTx is a change of one site in a bbolt write transaction.
type boltTx struct {
	meta, recs, dead, log *bolt.Bucket
	rev, floor, oldFloor  uint64
}

// Change implements Backend.
func (b *boltBackend) Change(ctx context.Context, site string, fn func(SiteTx) (bool, error)) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		sb, err := siteBucket(tx, site, true)
		if err != nil {
			return err
		}
		meta := sb.Bucket(bucketMeta)
		c := &boltTx{meta: meta, recs: sb.Bucket(bucketRec), dead: sb.Bucket(bucketDead), log: sb.Bucket(bucketLog),
			rev: u64(meta.Get(keyRev)) + 1, floor: u64(meta.Get(keyFloor))}
		c.oldFloor = c.floor
		c.recs.FillPercent, c.log.FillPercent = 0.9, 1
		changed, err := fn(c)
		if err != nil || !changed {
			return err
		}
		if c.floor != c.oldFloor {
			if err := meta.Put(keyFloor, be64(c.floor)); err != nil {
				return err
			}
		}
		return meta.Put(keyRev, be64(c.rev))
	})
}

// Rev implements SiteTx.
func (c *boltTx) Rev() uint64 { return c.rev }

// Floor implements SiteTx.
func (c *boltTx) Floor() uint64 { return c.floor }

// SetFloor implements SiteTx.
func (c *boltTx) SetFloor(f uint64) { c.floor = f }

// Lookup implements SiteTx.
func (c *boltTx) Lookup(_ context.Context, keys [][]byte) ([]Stored, error) {
	out := make([]Stored, len(keys))
	for i, k := range keys {
		v, st := c.recs.Get(k), Live
		if v == nil {
			v, st = c.dead.Get(k), Dead
		}
		if v == nil {
			continue
		}
		out[i].State = st
		if err := json.Unmarshal(v, &out[i].Record); err != nil {
			return nil, fmt.Errorf("decode record %s: %w", describeKey(k), err)
		}
	}
	return out, nil
}

// Write implements SiteTx.
func (c *boltTx) Write(_ context.Context, ws []Write) error {
	for _, w := range ws {
		if w.Old.State != Absent {
			if err := c.log.Delete(logKey(w.Old.Record.Rev, w.Key)); err != nil {
				return err
			}
		}
		from, to := c.recs, c.recs
		if w.Old.State == Dead {
			from = c.dead
		}
		if w.New.Deleted != 0 {
			to = c.dead
		}
		if w.Old.State != Absent && from != to {
			if err := from.Delete(w.Key); err != nil {
				return err
			}
		}
		v, err := json.Marshal(w.New)
		if err != nil {
			return err
		}
		if err := to.Put(w.Key, v); err != nil {
			return fmt.Errorf("store %s: %w", describeKey(w.Key), err)
		}
		if err := c.log.Put(logKey(w.New.Rev, w.Key), nil); err != nil {
			return err
		}
	}
	return nil
}

// boltView is a View of one site in a bbolt read transaction.
type boltView struct {
	sb *bolt.Bucket // nil: no such site
}

// View implements Backend.
func (b *boltBackend) View(_ context.Context, site string, fn func(View) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		return fn(boltView{sb})
	})
}

// metaU64 reads a site meta value.
func (v boltView) metaU64(k []byte) uint64 {
	if v.sb == nil {
		return 0
	}
	return u64(v.sb.Bucket(bucketMeta).Get(k))
}

// Revision implements View.
func (v boltView) Revision() uint64 { return v.metaU64(keyRev) }

// Floor implements View.
func (v boltView) Floor() uint64 { return v.metaU64(keyFloor) }

// Hash implements View.
func (v boltView) Hash(_ context.Context, rev uint64) ([32]byte, bool, error) {
	var h [32]byte
	if v.sb == nil {
		return h, false, nil
	}
	if hb := v.sb.Bucket(bucketHash); hb != nil {
		if b := hb.Get(be64(rev)); len(b) == 32 {
			copy(h[:], b)
			return h, true, nil
		}
	}
	return h, false, nil
}

// Live implements View.
func (v boltView) Live(ctx context.Context, fn func(key, item []byte) error) error {
	if v.sb == nil {
		return nil
	}
	n := 0
	return v.sb.Bucket(bucketRec).ForEach(func(k, val []byte) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var rec Record
		if err := json.Unmarshal(val, &rec); err != nil {
			return fmt.Errorf("decode record %s: %w", describeKey(k), err)
		}
		return fn(k, rec.Item)
	})
}

// Changed implements View.
func (v boltView) Changed(ctx context.Context, from uint64, fn func(key []byte, rec Record, live bool) error) error {
	if v.sb == nil {
		return nil
	}
	recs, dead := v.sb.Bucket(bucketRec), v.sb.Bucket(bucketDead)
	c := v.sb.Bucket(bucketLog).Cursor()
	n := 0
	for lk, _ := c.Seek(be64(from + 1)); lk != nil; lk, _ = c.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		k := lk[8:]
		val, live := recs.Get(k), true
		if val == nil {
			val, live = dead.Get(k), false
		}
		if val == nil {
			return fmt.Errorf("change log names %s, which is neither live nor deleted", describeKey(k))
		}
		var rec Record
		if err := json.Unmarshal(val, &rec); err != nil {
			return fmt.Errorf("decode record %s: %w", describeKey(k), err)
		}
		if err := fn(k, rec, live); err != nil {
			return err
		}
	}
	return nil
}

// PutHash implements Backend.
func (b *boltBackend) PutHash(_ context.Context, site string, rev uint64, h [32]byte) error {
	return b.db.Update(func(tx *bolt.Tx) error {
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

// Sites implements Backend.
func (b *boltBackend) Sites(context.Context) ([]string, error) {
	var out []string
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSites).ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Count implements Backend.
func (b *boltBackend) Count(_ context.Context, site string, kind policy.RecordKind) (int, error) {
	n := 0
	err := b.db.View(func(tx *bolt.Tx) error {
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
	return n, err
}

// Get implements Backend.
func (b *boltBackend) Get(_ context.Context, site string, key []byte) ([]byte, error) {
	var item []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return nil
		}
		v := sb.Bucket(bucketRec).Get(key)
		if v == nil {
			return nil
		}
		var rec Record
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decode record %s: %w", describeKey(key), err)
		}
		item = rec.Item
		return nil
	})
	return item, err
}

// List implements Backend.
func (b *boltBackend) List(_ context.Context, site string, kind policy.RecordKind, after []byte, limit int) ([]KeyItem, error) {
	var out []KeyItem
	err := b.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return nil
		}
		c := sb.Bucket(bucketRec).Cursor()
		k, v := c.Seek([]byte{byte(kind)})
		if after != nil {
			if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && k[0] == byte(kind) && len(out) < limit; k, v = c.Next() {
			var rec Record
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode record %s: %w", describeKey(k), err)
			}
			out = append(out, KeyItem{Key: bytes.Clone(k), Item: rec.Item})
		}
		return nil
	})
	return out, err
}

// PersonKeys implements Backend: the bbolt file has no index by person,
// so it scans the site's credential records, decoding only those whose
// JSON holds the person's ID as encoding/json writes it (the items'
// encoder).
func (b *boltBackend) PersonKeys(_ context.Context, site, person string) ([][]byte, error) {
	needle, err := json.Marshal(person)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	err = b.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return nil
		}
		kind := byte(policy.KindCredential)
		c := sb.Bucket(bucketRec).Cursor()
		for k, v := c.Seek([]byte{kind}); k != nil && k[0] == kind; k, v = c.Next() {
			if !bytes.Contains(v, needle) {
				continue
			}
			var rec struct {
				Item struct{ Person string }
			}
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode record %s: %w", describeKey(k), err)
			}
			if rec.Item.Person == person {
				out = append(out, bytes.Clone(k))
			}
		}
		return nil
	})
	return out, err
}

// AddPending implements Backend.
func (b *boltBackend) AddPending(_ context.Context, p Pending) (string, error) {
	var id string
	err := b.db.Update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPending)
		err := pb.ForEach(func(_, v []byte) error {
			var o Pending
			if json.Unmarshal(v, &o) == nil && o.Site == p.Site && o.Device == p.Device && o.Seq == p.Seq {
				id = o.ID
			}
			return nil
		})
		if err != nil || id != "" {
			return err
		}
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		id = p.ID
		return pb.Put([]byte(p.ID), v)
	})
	return id, err
}

// PendingList implements Backend.
func (b *boltBackend) PendingList(context.Context) ([]Pending, error) {
	var out []Pending
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			var p Pending
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode pending enrollment %s: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// PendingByID implements Backend.
func (b *boltBackend) PendingByID(_ context.Context, id string) (Pending, error) {
	var p Pending
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPending).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: pending enrollment %q", ErrNotFound, id)
		}
		return json.Unmarshal(v, &p)
	})
	return p, err
}

// DeletePending implements Backend.
func (b *boltBackend) DeletePending(_ context.Context, id string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPending)
		if pb.Get([]byte(id)) == nil {
			return fmt.Errorf("%w: pending enrollment %q", ErrNotFound, id)
		}
		return pb.Delete([]byte(id))
	})
}

// nameKey is the key of person's name at site.
func nameKey(site, person string) []byte { return []byte(site + "\x00" + person) }

// SetNames implements Backend. The names are written in key order: bbolt
// splits a node only when the transaction commits, so keys put in random
// order (a map's) into one node cost time in the square of their number
// (100,000 names into an empty bucket took 23 s, in order 0.2 s).
func (b *boltBackend) SetNames(_ context.Context, site string, names map[string]string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		nb := tx.Bucket(bucketNames)
		for _, person := range slices.Sorted(maps.Keys(names)) {
			name := names[person]
			var err error
			if name == "" {
				err = nb.Delete(nameKey(site, person))
			} else {
				err = nb.Put(nameKey(site, person), []byte(name))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Name implements Backend.
func (b *boltBackend) Name(_ context.Context, site, person string) (string, error) {
	var name string
	err := b.db.View(func(tx *bolt.Tx) error {
		name = string(tx.Bucket(bucketNames).Get(nameKey(site, person)))
		return nil
	})
	return name, err
}

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

// EachName implements NameLister.
func (b *boltBackend) EachName(_ context.Context, fn func(site, person, name string) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNames).ForEach(func(k, v []byte) error {
			site, person, ok := bytes.Cut(k, []byte{0})
			if !ok {
				return fmt.Errorf("name key %q has no site", k)
			}
			return fn(string(site), string(person), string(v))
		})
	})
}
