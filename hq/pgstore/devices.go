package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// PutStatus implements hq.DeviceStore. An offline status (a will) only
// sets "online" to false in the stored one.
func (s *Store) PutStatus(ctx context.Context, site, device string, st proto.Status, received time.Time) error {
	b, err := json.Marshal(st)
	if err == nil {
		_, err = s.pool.Exec(ctx, `INSERT INTO device_status (site, device, online, status, received)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (site, device) DO UPDATE SET online = EXCLUDED.online, received = EXCLUDED.received,
				status = CASE WHEN EXCLUDED.online THEN EXCLUDED.status
					ELSE jsonb_set(device_status.status, '{online}', 'false') END`,
			site, device, st.Online, b, received)
	}
	if err != nil {
		return fmt.Errorf("store status of %s/%s: %w", site, device, err)
	}
	return nil
}

// Devices implements hq.DeviceStore: the devices with events joined with
// those with a status.
func (s *Store) Devices(ctx context.Context) ([]hq.DeviceRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT coalesce(d.site, s.site), coalesce(d.device, s.device), coalesce(d.acked, 0),
			s.status, s.received
		FROM devices d FULL JOIN device_status s ON d.site = s.site AND d.device = s.device
		ORDER BY coalesce(d.site, s.site) COLLATE "C", coalesce(d.device, s.device) COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	var out []hq.DeviceRecord
	var r hq.DeviceRecord
	var acked int64
	var status []byte
	var seen *time.Time
	_, err = pgx.ForEachRow(rows, []any{&r.Site, &r.Device, &acked, &status, &seen}, func() error {
		d := hq.DeviceRecord{Site: r.Site, Device: r.Device, Acked: uint64(acked)}
		if status != nil {
			if err := json.Unmarshal(status, &d.Status); err != nil {
				return fmt.Errorf("decode status of %s/%s: %w", r.Site, r.Device, err)
			}
			d.Seen = seen.UTC()
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	return out, nil
}

// PutResult implements hq.DeviceStore.
func (s *Store) PutResult(ctx context.Context, r proto.Result, received time.Time) error {
	b, err := json.Marshal(r)
	if err == nil {
		_, err = s.pool.Exec(ctx, `INSERT INTO results (id, site, device, kind, status, body, received)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (id) DO UPDATE SET site = EXCLUDED.site, device = EXCLUDED.device, kind = EXCLUDED.kind,
				status = EXCLUDED.status, body = EXCLUDED.body, received = EXCLUDED.received`,
			r.ID, r.Site, r.Device, r.Kind, r.Status, b, received)
	}
	if err != nil {
		return fmt.Errorf("store result %s: %w", r.ID, err)
	}
	return nil
}

// Result implements hq.DeviceStore.
func (s *Store) Result(ctx context.Context, id string) (proto.Result, bool, error) {
	r, ok, err := rowJSON[proto.Result](ctx, s.pool, `SELECT body FROM results WHERE id = $1`, id)
	if err != nil {
		return proto.Result{}, false, fmt.Errorf("read result %s: %w", id, err)
	}
	return r, ok, nil
}

// EachResult calls fn for every stored result, by ID; an error from fn
// ends it and is returned.
func (s *Store) EachResult(ctx context.Context, fn func(proto.Result) error) error {
	rows, err := s.pool.Query(ctx, `SELECT body FROM results ORDER BY id`)
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	var b []byte
	_, err = pgx.ForEachRow(rows, []any{&b}, func() error {
		var r proto.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("decode result: %w", err)
		}
		return fn(r)
	})
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	return nil
}
