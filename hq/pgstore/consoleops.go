package pgstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tobira-ac/tobira/hq/console/oplog"
)

// ConsoleOps is the console's oplog.Store on PostgreSQL (table
// console_ops, migration 00009), shared by the replicas: a publication or
// rollout started on one is listed and watched on every one, and after a
// restart.
type ConsoleOps struct {
	pool *pgxpool.Pool
}

var _ oplog.Store = (*ConsoleOps)(nil)

// ConsoleOps returns the console's operations on s's connections.
func (s *Store) ConsoleOps() *ConsoleOps { return &ConsoleOps{pool: s.pool} }

// Add implements oplog.Store: the insert and the deletion of the oldest
// of the kind beyond oplog.Keep in one transaction.
func (s *ConsoleOps) Add(ctx context.Context, op oplog.Op) error {
	body, err := json.Marshal(op)
	if err != nil {
		return fmt.Errorf("encode console operation %s: %w", op.ID, err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO console_ops (id, kind, at, site, grp, actor, snapshot, version, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			op.ID, string(op.Kind), op.At, op.Site, op.Group, op.By, op.Snapshot, op.Version, body)
		b.Queue(`DELETE FROM console_ops WHERE id IN (SELECT id FROM console_ops WHERE kind = $1
			ORDER BY at DESC, id DESC OFFSET $2)`, string(op.Kind), oplog.Keep)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("add console operation %s: %w", op.ID, err)
	}
	return nil
}

// Get implements oplog.Store.
func (s *ConsoleOps) Get(ctx context.Context, id string) (oplog.Op, bool, error) {
	op, ok, err := rowJSON[oplog.Op](ctx, s.pool, `SELECT body FROM console_ops WHERE id = $1`, id)
	if err != nil {
		return oplog.Op{}, false, fmt.Errorf("read console operation %s: %w", id, err)
	}
	return op, ok, nil
}

// Recent implements oplog.Store from the listed columns (index
// console_ops_newest), not the bodies.
func (s *ConsoleOps) Recent(ctx context.Context, kind oplog.Kind, n int) ([]oplog.Op, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, kind, at, site, grp, actor, snapshot, version FROM console_ops
		WHERE kind = $1 ORDER BY at DESC, id DESC LIMIT $2`, string(kind), n)
	if err != nil {
		return nil, fmt.Errorf("read the console's %ss: %w", kind, err)
	}
	var out []oplog.Op
	var op oplog.Op
	_, err = pgx.ForEachRow(rows, []any{&op.ID, &op.Kind, &op.At, &op.Site, &op.Group, &op.By, &op.Snapshot, &op.Version}, func() error {
		op.At = op.At.UTC()
		out = append(out, op)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the console's %ss: %w", kind, err)
	}
	return out, nil
}
