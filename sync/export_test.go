package sync

import (
	"encoding/json"
	"fmt"
	"math/bits"

	"github.com/tobira-ac/tobira/sync/proto"
	bolt "go.etcd.io/bbolt"
)

// StagedChunks opens the outbox file at path (its holder must have
// exited) and reports the snapshot transfer staged in it: its ID, how many
// of its chunks are on disk, and how many it has. transfer is "" when
// nothing is staged. Tests use it to show that a transfer resumes.
func StagedChunks(path string) (transfer string, have, chunks int, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openLockTimeout, ReadOnly: true})
	if err != nil {
		return "", 0, 0, fmt.Errorf("open outbox %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTransfer)
		if b == nil || b.Get(keyManifest) == nil {
			return nil
		}
		var m proto.Manifest
		if err := json.Unmarshal(b.Get(keyManifest), &m); err != nil {
			return fmt.Errorf("decode staged manifest: %w", err)
		}
		transfer, chunks = m.Transfer, m.Chunks
		for _, x := range b.Get(keyHave) {
			have += bits.OnesCount8(x)
		}
		return nil
	})
	return transfer, have, chunks, err
}
