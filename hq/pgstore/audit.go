package pgstore

import (
	"context"
	"encoding/json"
	"errors"
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
		if err := insertEntry(ctx, tx, e); err != nil {
			return err
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

// ErrAuditDiverged means the audit log in PostgreSQL is not the log being
// imported, nor a prefix of it.
var ErrAuditDiverged = errors.New("the audit log in PostgreSQL differs from the one imported")

// Import appends entries (consecutive, oldest first, as another Chain
// holds them: same sequence numbers and hashes) to the chain, skipping
// those it holds already; it returns how many it added. An entry that
// does not continue the chain (another log was started here) is an error
// wrapping ErrAuditDiverged, and nothing is imported.
func (c *AuditChain) Import(entries []audit.Entry) (int, error) {
	ctx := context.Background()
	added := 0
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		added = 0
		var seq int64
		var hash string
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head FOR UPDATE`).Scan(&seq, &hash); err != nil {
			return fmt.Errorf("lock the audit log's head: %w", err)
		}
		for _, e := range entries {
			if int64(e.Seq) <= seq {
				var held string
				if err := tx.QueryRow(ctx, `SELECT entry->>'hash' FROM audit_log WHERE seq = $1`, int64(e.Seq)).Scan(&held); err != nil {
					return fmt.Errorf("read audit entry %d: %w", e.Seq, err)
				}
				if held != e.Hash {
					return fmt.Errorf("%w at entry %d", ErrAuditDiverged, e.Seq)
				}
				continue
			}
			if int64(e.Seq) != seq+1 || (seq > 0 && e.Prev != hash) {
				return fmt.Errorf("%w: entry %d does not follow entry %d", ErrAuditDiverged, e.Seq, seq)
			}
			if err := insertEntry(ctx, tx, e); err != nil {
				return err
			}
			seq, hash = int64(e.Seq), e.Hash
			added++
		}
		_, err := tx.Exec(ctx, `UPDATE audit_head SET seq = $1, hash = $2`, seq, hash)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("import %d audit entries: %w", len(entries), err)
	}
	return added, nil
}

// insertEntry stores e in audit_log.
func insertEntry(ctx context.Context, tx pgx.Tx, e audit.Entry) error {
	b, err := json.Marshal(e)
	if err == nil {
		_, err = tx.Exec(ctx, `INSERT INTO audit_log (seq, time, actor, action, entry) VALUES ($1, $2, $3, $4, $5)`,
			int64(e.Seq), e.Time, e.Actor, e.Action, b)
	}
	if err != nil {
		return fmt.Errorf("store audit entry %d: %w", e.Seq, err)
	}
	return nil
}
