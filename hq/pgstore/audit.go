package pgstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tobira-ac/tobira/hq/console/audit"
)

// AuditChain is the console's audit log on PostgreSQL (audit.Chain;
// tables audit_head and audit_log, migration 00005). Append locks the one
// audit_head row, so replicas appending at once make one chain.
type AuditChain struct {
	pool *pgxpool.Pool
}

var _ audit.Chain = (*AuditChain)(nil)

// AuditChain returns the audit log's chain on s's connections.
func (s *Store) AuditChain() *AuditChain { return &AuditChain{pool: s.pool} }

// Append implements audit.Chain.
func (c *AuditChain) Append(link func(lastSeq uint64, lastHash string) (audit.Entry, error)) (audit.Entry, error) {
	ctx := context.Background()
	var e audit.Entry
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var seq int64
		var hash string
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head FOR UPDATE`).Scan(&seq, &hash); err != nil {
			return fmt.Errorf("lock the audit log's head: %w", err)
		}
		var err error
		if e, err = link(uint64(seq), hash); err != nil {
			return err
		}
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode audit entry %d: %w", e.Seq, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_log (seq, time, actor, action, entry) VALUES ($1, $2, $3, $4, $5)`,
			int64(e.Seq), e.Time, e.Actor, e.Action, b); err != nil {
			return fmt.Errorf("store audit entry %d: %w", e.Seq, err)
		}
		_, err = tx.Exec(ctx, `UPDATE audit_head SET seq = $1, hash = $2`, int64(e.Seq), e.Hash)
		return err
	})
	return e, err
}

// Page implements audit.Chain.
func (c *AuditChain) Page(before uint64, limit int) ([]audit.Entry, error) {
	var out []audit.Entry
	err := c.each(`SELECT seq, entry FROM audit_log WHERE $1 = 0 OR seq < $1 ORDER BY seq DESC LIMIT $2`,
		[]any{int64(before), limit}, func(e audit.Entry) error {
			out = append(out, e)
			return nil
		})
	return out, err
}

// Each implements audit.Chain.
func (c *AuditChain) Each(fn func(audit.Entry) error) error {
	return c.each(`SELECT seq, entry FROM audit_log ORDER BY seq`, nil, fn)
}

// each calls fn with every entry query selects (columns seq, entry).
func (c *AuditChain) each(query string, args []any, fn func(audit.Entry) error) error {
	rows, err := c.pool.Query(context.Background(), query, args...)
	if err != nil {
		return fmt.Errorf("read the audit log: %w", err)
	}
	var seq int64
	var b []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &b}, func() error {
		var e audit.Entry
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("%w: entry %d: %w", audit.ErrTampered, seq, err)
		}
		return fn(e)
	})
	return err
}
