package pgstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tobira-ac/tobira/hq/console/alarm"
)

// Alarms is the console's alarm list's alarm.Store on PostgreSQL (table
// alarms, migration 00005), shared by the replicas: Update holds a
// transaction-level advisory lock on the alarm's ID (the row may not exist
// yet, so there is no row to lock), so two replicas raising, clearing or
// acknowledging one alarm at once take turns.
type Alarms struct {
	pool *pgxpool.Pool
}

var _ alarm.Store = (*Alarms)(nil)

// alarmLockClass is the first key of the advisory locks on alarm IDs (the
// second is the ID's hash); two-key advisory locks do not overlap the
// one-key ones goose and others take.
const alarmLockClass = 0x616c726d // "alrm"

// Alarms returns the alarm store on s's connections.
func (s *Store) Alarms() *Alarms { return &Alarms{pool: s.pool} }

// Update implements alarm.Store.
func (s *Alarms) Update(id string, fn func(*alarm.Alarm) (*alarm.Alarm, error)) error {
	ctx := context.Background()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, alarmLockClass, id); err != nil {
			return fmt.Errorf("lock alarm %s: %w", id, err)
		}
		cur, ok, err := getAlarm(ctx, tx, id)
		if err != nil {
			return err
		}
		var a *alarm.Alarm
		if ok {
			a = &cur
		}
		if a, err = fn(a); err != nil || a == nil {
			return err
		}
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode alarm %s: %w", id, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO alarms (id, state, last, body) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, last = EXCLUDED.last, body = EXCLUDED.body`,
			id, string(a.State), a.Last, b)
		if err != nil {
			return fmt.Errorf("store alarm %s: %w", id, err)
		}
		return nil
	})
}

// getAlarm reads the alarm id through q.
func getAlarm(ctx context.Context, q queryRower, id string) (alarm.Alarm, bool, error) {
	a, ok, err := rowJSON[alarm.Alarm](ctx, q, `SELECT body FROM alarms WHERE id = $1`, id)
	if err != nil {
		return alarm.Alarm{}, false, fmt.Errorf("read alarm %s: %w", id, err)
	}
	return a, ok, nil
}

// Get implements alarm.Store.
func (s *Alarms) Get(id string) (alarm.Alarm, bool, error) {
	return getAlarm(context.Background(), s.pool, id)
}

// All implements alarm.Store.
func (s *Alarms) All() ([]alarm.Alarm, error) {
	rows, err := s.pool.Query(context.Background(), `SELECT body FROM alarms`)
	if err != nil {
		return nil, fmt.Errorf("read the alarms: %w", err)
	}
	out, err := scanJSON[alarm.Alarm](rows)
	if err != nil {
		return nil, fmt.Errorf("read the alarms: %w", err)
	}
	return out, nil
}
