package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq/console/alarm"
)

var _ alarm.PINCounter = (*Alarms)(nil)

// WrongPIN implements alarm.PINCounter on table wrong_pins (migration
// 00009): under the advisory lock of the door's wrong_pin alarm (the one
// Update takes), it deletes the door's rows at or before
// now-alarm.WrongPINWindow, adds one at now and counts the door's rows, so
// replicas seeing a door's wrong PINs at once count each once.
func (s *Alarms) WrongPIN(site, device, door string, now time.Time) (int, error) {
	ctx := context.Background()
	id := alarm.ID(site, device, door, alarm.WrongPIN)
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, alarmLockClass, id); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM wrong_pins WHERE site = $1 AND device = $2 AND door = $3 AND at <= $4`,
			site, device, door, now.Add(-alarm.WrongPINWindow))
		b.Queue(`INSERT INTO wrong_pins (site, device, door, at) VALUES ($1, $2, $3, $4)`, site, device, door, now)
		b.Queue(`SELECT count(*) FROM wrong_pins WHERE site = $1 AND device = $2 AND door = $3`, site, device, door).
			QueryRow(func(r pgx.Row) error { return r.Scan(&n) })
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("wrong PIN at %s/%s/%s: %w", site, device, door, err)
	}
	return n, nil
}
