package audit

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
)

// TamperActor rewrites the actor of entry seq in db's log, leaving its
// hash: for the tests of package audit_test.
func TamperActor(db *bolt.DB, seq uint64, actor string) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		var e Entry
		if err := json.Unmarshal(b.Get(boltfile.SeqKey(seq)), &e); err != nil {
			return err
		}
		e.Actor = actor
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return b.Put(boltfile.SeqKey(seq), v)
	})
}
