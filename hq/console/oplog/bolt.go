package oplog

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
)

// bucketOps holds the operations by ID, as JSON.
var bucketOps = []byte("console_ops")

// boltStore is a Store in a bbolt file's "console_ops" bucket. It holds
// at most Keep operations of each kind, so reading them all is bounded.
type boltStore struct{ db *bolt.DB }

// Open returns the Store kept in db's "console_ops" bucket (db with
// format marker format, opened and closed by the caller).
func Open(db *bolt.DB, format []byte) (Store, error) {
	if err := db.Update(func(tx *bolt.Tx) error { return boltfile.Init(tx, format, bucketOps) }); err != nil {
		return nil, fmt.Errorf("console operations in %s: %w", db.Path(), err)
	}
	return boltStore{db}, nil
}

// all decodes every operation in b.
func all(b *bolt.Bucket) ([]Op, error) {
	var out []Op
	err := b.ForEach(func(k, v []byte) error {
		var op Op
		if err := json.Unmarshal(v, &op); err != nil {
			return fmt.Errorf("console operation %q: %w", k, err)
		}
		out = append(out, op)
		return nil
	})
	return out, err
}

// Add implements Store.
func (s boltStore) Add(_ context.Context, op Op) error {
	v, err := json.Marshal(op)
	if err != nil {
		return fmt.Errorf("encode console operation %s: %w", op.ID, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOps)
		if err := b.Put([]byte(op.ID), v); err != nil {
			return err
		}
		ops, err := all(b)
		if err != nil {
			return err
		}
		for _, id := range overflow(ops, op.Kind) {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add console operation %s: %w", op.ID, err)
	}
	return nil
}

// Get implements Store.
func (s boltStore) Get(_ context.Context, id string) (Op, bool, error) {
	var v []byte
	_ = s.db.View(func(tx *bolt.Tx) error {
		v = append(v, tx.Bucket(bucketOps).Get([]byte(id))...)
		return nil
	})
	if v == nil {
		return Op{}, false, nil
	}
	var op Op
	if err := json.Unmarshal(v, &op); err != nil {
		return Op{}, false, fmt.Errorf("console operation %q: %w", id, err)
	}
	return op, true, nil
}

// Recent implements Store.
func (s boltStore) Recent(_ context.Context, kind Kind, n int) ([]Op, error) {
	var ops []Op
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ops, err = all(tx.Bucket(bucketOps))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the console operations: %w", err)
	}
	return recent(ops, kind, n), nil
}
