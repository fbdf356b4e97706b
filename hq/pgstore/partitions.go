package pgstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
)

// partitionLock is the advisory lock key under which partitions are made
// and dropped (by one replica at a time).
const partitionLock = 0x746f62697261 // "tobira"

// span returns the name and bounds of the partition that holds events
// received at t.
func (p Partitioning) span(t time.Time) (name string, from, to time.Time) {
	t = t.UTC()
	if p == Monthly {
		from = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return "events_m" + from.Format("200601"), from, from.AddDate(0, 1, 0)
	}
	from = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return "events_d" + from.Format("20060102"), from, from.AddDate(0, 0, 1)
}

// partitionEnd returns the upper bound of a partition by its name, and
// false for a table that is not one of ours.
func partitionEnd(name string) (time.Time, bool) {
	if rest, ok := strings.CutPrefix(name, "events_m"); ok {
		t, err := time.Parse("200601", rest)
		return t.AddDate(0, 1, 0), err == nil
	}
	if rest, ok := strings.CutPrefix(name, "events_d"); ok {
		t, err := time.Parse("20060102", rest)
		return t.AddDate(0, 0, 1), err == nil
	}
	return time.Time{}, false
}

// ensurePartitions makes the partitions that batches need, once per
// process and partition; making one also drops the expired ones.
func (s *Store) ensurePartitions(ctx context.Context, batches []hq.EventBatch) error {
	s.partMu.Lock()
	defer s.partMu.Unlock()
	for _, b := range batches {
		name, from, to := s.opt.Partition.span(b.Received)
		if s.parts[name] {
			continue
		}
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(partitionLock)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF events FOR VALUES FROM ('%s') TO ('%s')`,
				pgx.Identifier{name}.Sanitize(), from.Format(time.RFC3339), to.Format(time.RFC3339)))
			if err != nil {
				return err
			}
			_, err = s.dropExpired(ctx, tx)
			return err
		})
		if err != nil {
			return fmt.Errorf("make events partition %s: %w", name, err)
		}
		s.parts[name] = true
	}
	return nil
}

// Retention returns Options.Retention: events older are dropped (0: kept).
func (s *Store) Retention() time.Duration { return s.opt.Retention }

// DropExpired drops the events partitions older than the retention and
// returns their names (none when Options.Retention is 0). Ingest calls it
// whenever it makes a partition; tobira-hq serve also calls it every hour
// on the leading replica (hq/leader), and it can be called to apply a
// retention at once. Replicas calling it together take turns (an advisory
// transaction lock), and the second finds nothing left to drop.
func (s *Store) DropExpired(ctx context.Context) ([]string, error) {
	s.partMu.Lock()
	defer s.partMu.Unlock()
	var dropped []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(partitionLock)); err != nil {
			return err
		}
		var err error
		dropped, err = s.dropExpired(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("drop expired events partitions: %w", err)
	}
	return dropped, nil
}

// dropExpired drops, in tx, the partitions whose every event was received
// before the retention, subtracting their events from the devices'
// counters. The devices' ack points stay: a re-sent old event is still
// known as held.
func (s *Store) dropExpired(ctx context.Context, tx pgx.Tx) ([]string, error) {
	if s.opt.Retention <= 0 {
		return nil, nil
	}
	cut := s.opt.Clock.Now().Add(-s.opt.Retention)
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'events'::regclass ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, name := range names {
		end, ok := partitionEnd(name)
		if !ok || end.After(cut) {
			continue
		}
		id := pgx.Identifier{name}.Sanitize()
		if _, err := tx.Exec(ctx, `UPDATE devices d SET stored = d.stored - c.n
			FROM (SELECT site, device, count(*) AS n FROM `+id+` GROUP BY site, device) c
			WHERE d.site = c.site AND d.device = c.device`); err != nil {
			return nil, fmt.Errorf("count the events of %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `DROP TABLE `+id); err != nil {
			return nil, fmt.Errorf("drop %s: %w", name, err)
		}
		delete(s.parts, name)
		s.opt.Logger.Info("dropped expired events partition", "partition", name, "before", end)
		dropped = append(dropped, name)
	}
	return dropped, nil
}
