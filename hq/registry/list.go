package registry

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/tobira-ac/tobira/policy"
)

// List returns up to limit live records of kind in site, in key order, starting after the
// record whose cursor is after ("" = from the start), and the cursor of the next page ("" =
// no more). A cursor is the record's key, hex-encoded.
func (r *Registry) List(ctx context.Context, site string, kind policy.RecordKind, after string, limit int) ([]policy.Item, string, error) {
	if limit <= 0 {
		return nil, "", fmt.Errorf("%w: list %s records of site %s: limit %d, want at least 1", ErrInvalid, kind, site, limit)
	}
	var from []byte
	if after != "" {
		k, err := hex.DecodeString(after)
		if err != nil || len(k) == 0 || k[0] != byte(kind) {
			return nil, "", fmt.Errorf("%w: list %s records of site %s: cursor %q is not a %s key", ErrInvalid, kind, site, after, kind)
		}
		from = k
	}
	// One more than asked says whether there is a next page.
	kis, err := r.b.List(ctx, site, kind, from, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list %s records of site %s in %s: %w", kind, site, r.name, err)
	}
	next := ""
	if len(kis) > limit {
		kis = kis[:limit]
		next = hex.EncodeToString(kis[limit-1].Key)
	}
	out := make([]policy.Item, len(kis))
	for i, ki := range kis {
		if out[i], err = decodeItem(ki.Key, ki.Item); err != nil {
			return nil, "", fmt.Errorf("list %s records of site %s in %s: %w", kind, site, r.name, err)
		}
	}
	return out, next, nil
}
