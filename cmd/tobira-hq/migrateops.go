package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/tobira-ac/tobira/hq/console/oplog"
)

// copyConsoleOps copies the publications and rollouts src keeps into dst,
// oldest first, skipping those dst has (a second run adds nothing); it
// returns how many src keeps and how many dst had not.
func copyConsoleOps(ctx context.Context, src, dst oplog.Store) (n, added int, err error) {
	for _, kind := range []oplog.Kind{oplog.Publication, oplog.Rollout} {
		heads, err := src.Recent(ctx, kind, oplog.Keep)
		if err != nil {
			return n, added, err
		}
		slices.Reverse(heads)
		for _, h := range heads {
			n++
			if _, ok, err := dst.Get(ctx, h.ID); err != nil || ok {
				if err != nil {
					return n, added, err
				}
				continue
			}
			op, ok, err := src.Get(ctx, h.ID)
			if err != nil || !ok {
				return n, added, fmt.Errorf("read %s %s: %w", kind, h.ID, err)
			}
			if err := dst.Add(ctx, op); err != nil {
				return n, added, err
			}
			added++
		}
	}
	return n, added, nil
}
