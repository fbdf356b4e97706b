package audit

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
)

// bucketAudit holds the entries by SeqKey.
var bucketAudit = []byte("audit")

// boltChain is the Chain in a bbolt file's "audit" bucket; bbolt's one
// writer at a time keeps it one chain.
type boltChain struct{ db *bolt.DB }

// New returns the audit log in db (the console's file, opened and closed
// by the caller) with format marker format, creating its bucket. now
// stamps entries (nil: time.Now).
func New(db *bolt.DB, format []byte, now func() time.Time) (*Log, error) {
	if err := db.Update(func(tx *bolt.Tx) error { return boltfile.Init(tx, format, bucketAudit) }); err != nil {
		return nil, fmt.Errorf("audit log in %s: %w", db.Path(), err)
	}
	return NewLog(boltChain{db}, now), nil
}

// decode decodes the entry stored under k.
func decode(k, v []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: %w", ErrTampered, boltfile.SeqOf(k), err)
	}
	return e, nil
}

// Append implements Chain.
func (c boltChain) Append(link func(lastSeq uint64, lastHash string) (Entry, error)) (Entry, error) {
	var e Entry
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		var last Entry
		if k, v := b.Cursor().Last(); k != nil {
			var err error
			if last, err = decode(k, v); err != nil {
				return err
			}
		}
		var err error
		if e, err = link(last.Seq, last.Hash); err != nil {
			return err
		}
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return b.Put(boltfile.SeqKey(e.Seq), v)
	})
	return e, err
}

// Page implements Chain.
func (c boltChain) Page(before uint64, limit int) ([]Entry, error) {
	var out []Entry
	err := c.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		if before == 0 {
			k, v = cur.Last()
		} else if k, _ = cur.Seek(boltfile.SeqKey(before)); k == nil {
			k, v = cur.Last()
		} else {
			k, v = cur.Prev()
		}
		for ; k != nil && len(out) < limit; k, v = cur.Prev() {
			e, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Each implements Chain.
func (c boltChain) Each(fn func(Entry) error) error {
	return c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			e, err := decode(k, v)
			if err != nil {
				return err
			}
			return fn(e)
		})
	})
}
