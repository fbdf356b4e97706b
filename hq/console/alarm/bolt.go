package alarm

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
)

// bucketAlarms holds the alarms by ID.
var bucketAlarms = []byte("alarms")

// boltStore is a Store in a bbolt file's "alarms" bucket.
type boltStore struct{ db *bolt.DB }

// Open returns the list kept in db's "alarms" bucket (db with format
// marker format, opened and closed by the caller).
func Open(db *bolt.DB, format []byte) (*List, error) {
	if err := db.Update(func(tx *bolt.Tx) error { return boltfile.Init(tx, format, bucketAlarms) }); err != nil {
		return nil, fmt.Errorf("alarms in %s: %w", db.Path(), err)
	}
	return NewList(boltStore{db}), nil
}

// get decodes the alarm id in b (nil: none).
func get(b *bolt.Bucket, id string) (*Alarm, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var a Alarm
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, fmt.Errorf("alarm %q: %w", id, err)
	}
	return &a, nil
}

// Update implements Store.
func (s boltStore) Update(id string, fn func(*Alarm) (*Alarm, error)) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAlarms)
		cur, err := get(b, id)
		if err != nil {
			return err
		}
		a, err := fn(cur)
		if err != nil || a == nil {
			return err
		}
		v, err := json.Marshal(a)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), v)
	})
}

// Get implements Store.
func (s boltStore) Get(id string) (Alarm, bool, error) {
	var a *Alarm
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		a, err = get(tx.Bucket(bucketAlarms), id)
		return err
	})
	if err != nil || a == nil {
		return Alarm{}, false, err
	}
	return *a, true, nil
}

// All implements Store.
func (s boltStore) All() ([]Alarm, error) {
	var out []Alarm
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAlarms).ForEach(func(k, v []byte) error {
			var a Alarm
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("alarm %q: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}
