package registry

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/policy"
)

// This file is a bbolt-only stand-in of List (the console's record pages
// page with it); the registry's PostgreSQL work replaces it.

// List returns up to limit live records of kind in site, in key order, starting after the
// record whose cursor is after ("" = from the start), and the cursor of the next page ("" =
// no more). A cursor is the record's key, hex-encoded.
func (r *Registry) List(ctx context.Context, site string, kind policy.RecordKind, after string, limit int) ([]policy.Item, string, error) {
	from, err := hex.DecodeString(after)
	if err != nil || (len(from) > 0 && from[0] != byte(kind)) {
		return nil, "", fmt.Errorf("%w: list %s of site %s: cursor %q", ErrInvalid, kind, site, after)
	}
	if limit <= 0 {
		return nil, "", fmt.Errorf("%w: list %s of site %s: limit %d", ErrInvalid, kind, site, limit)
	}
	var out []policy.Item
	var next string
	err = r.db.View(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return nil
		}
		c := sb.Bucket(bucketRec).Cursor()
		k, v := c.Seek([]byte{byte(kind)})
		if len(from) > 0 {
			if k, v = c.Seek(from); k != nil && bytes.Equal(k, from) {
				k, v = c.Next()
			}
		}
		var last []byte
		for ; k != nil && k[0] == byte(kind); k, v = c.Next() {
			if len(out) == limit {
				next = hex.EncodeToString(last)
				return nil
			}
			it, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			out, last = append(out, it), k
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list %s of site %s in %s: %w", kind, site, r.path, err)
	}
	return out, next, nil
}
