package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Spool is hq.Spool in the Store's database (migration 00008): every
// replica of HQ reads the transfers, chunks, commands and offers any of
// them, or the admin commands, recorded.
type Spool struct{ s *Store }

var _ hq.Spool = Spool{}

// Spool returns the spool in s's database.
func (s *Store) Spool() Spool { return Spool{s: s} }

// PutTransfer implements hq.Spool: the manifest, the payload chunk by
// chunk and the device's latest transfer, in one transaction.
func (sp Spool) PutTransfer(ctx context.Context, m proto.Manifest, envelope []byte, payload io.Reader) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("spool transfer: %w", err)
	}
	err := pgx.BeginFunc(ctx, sp.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO spool_transfers (transfer, site, device, grp, manifest, envelope) VALUES ($1, $2, $3, $4, $5, $6)`,
			m.Transfer, m.Site, m.Device, m.Group, m, envelope); err != nil {
			return err
		}
		buf := make([]byte, m.ChunkSize)
		for i := range m.Chunks {
			data := buf[:m.ChunkLen(i)]
			if _, err := io.ReadFull(payload, data); err != nil {
				return fmt.Errorf("read chunk %d: %w", i, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO spool_chunks (transfer, index, data) VALUES ($1, $2, $3)`, m.Transfer, i, data); err != nil {
				return err
			}
		}
		kind, name := target(m.Device, m.Group)
		_, err := tx.Exec(ctx, `INSERT INTO spool_latest (site, kind, name, transfer) VALUES ($1, $2, $3, $4)
			ON CONFLICT (site, kind, name) DO UPDATE SET transfer = excluded.transfer`, m.Site, kind, name, m.Transfer)
		return err
	})
	if err != nil {
		return fmt.Errorf("spool transfer %s to %s/%s%s: %w", m.Transfer, m.Site, m.Device, m.Group, err)
	}
	return nil
}

// Transfer implements hq.Spool.
func (sp Spool) Transfer(ctx context.Context, transfer string) (proto.Manifest, error) {
	var m proto.Manifest
	err := sp.s.pool.QueryRow(ctx, `SELECT manifest FROM spool_transfers WHERE transfer = $1`, transfer).Scan(&m)
	if errors.Is(err, pgx.ErrNoRows) {
		err = hq.ErrNotSpooled
	}
	if err != nil {
		return m, fmt.Errorf("spooled transfer %s: %w", transfer, err)
	}
	return m, nil
}

// Chunk implements hq.Spool.
func (sp Spool) Chunk(ctx context.Context, m proto.Manifest, i int) ([]byte, error) {
	var data []byte
	err := sp.s.pool.QueryRow(ctx, `SELECT data FROM spool_chunks WHERE transfer = $1 AND index = $2`, m.Transfer, i).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		err = hq.ErrNotSpooled
	}
	if err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", i, m.Transfer, err)
	}
	return data, nil
}

// target returns the kind and name of a device's or a group's row.
func target(device, group string) (kind, name string) {
	if group != "" {
		return "group", group
	}
	return "device", device
}

// Latest implements hq.Spool.
func (sp Spool) Latest(ctx context.Context, site, device string) (hq.SpooledEnvelope[proto.Manifest], error) {
	return sp.latest(ctx, site, "device", device)
}

// LatestGroup implements hq.Spool.
func (sp Spool) LatestGroup(ctx context.Context, site, group string) (hq.SpooledEnvelope[proto.Manifest], error) {
	return sp.latest(ctx, site, "group", group)
}

// latest returns the latest transfer of the device or group (kind) name.
func (sp Spool) latest(ctx context.Context, site, kind, name string) (hq.SpooledEnvelope[proto.Manifest], error) {
	var l hq.SpooledEnvelope[proto.Manifest]
	err := sp.s.pool.QueryRow(ctx, `SELECT t.manifest, t.envelope FROM spool_latest l JOIN spool_transfers t USING (transfer)
		WHERE l.site = $1 AND l.kind = $2 AND l.name = $3`, site, kind, name).Scan(&l.Value, &l.Envelope)
	if errors.Is(err, pgx.ErrNoRows) {
		err = hq.ErrNotSpooled
	}
	if err != nil {
		return l, fmt.Errorf("latest snapshot of %s %s of site %s: %w", kind, name, site, err)
	}
	return l, nil
}

// PutCommand implements hq.Spool: a read-modify-write under the device's
// row lock.
func (sp Spool) PutCommand(ctx context.Context, c hq.SpooledEnvelope[proto.Command]) error {
	site, device := c.Value.Site, c.Value.Device
	err := pgx.BeginFunc(ctx, sp.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO spool_commands (site, device, commands) VALUES ($1, $2, '[]')
			ON CONFLICT (site, device) DO NOTHING`, site, device); err != nil {
			return err
		}
		var before []hq.SpooledEnvelope[proto.Command]
		if err := tx.QueryRow(ctx, `SELECT commands FROM spool_commands WHERE site = $1 AND device = $2 FOR UPDATE`,
			site, device).Scan(&before); err != nil {
			return err
		}
		after, err := json.Marshal(hq.ModesInForce(before, c))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE spool_commands SET commands = $3 WHERE site = $1 AND device = $2`, site, device, string(after))
		return err
	})
	if err != nil {
		return fmt.Errorf("record command %s for %s/%s: %w", c.Value.ID, site, device, err)
	}
	return nil
}

// Commands implements hq.Spool.
func (sp Spool) Commands(ctx context.Context, site, device string) ([]hq.SpooledEnvelope[proto.Command], error) {
	var out []hq.SpooledEnvelope[proto.Command]
	err := sp.s.pool.QueryRow(ctx, `SELECT commands FROM spool_commands WHERE site = $1 AND device = $2`, site, device).Scan(&out)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("commands in force for %s/%s: %w", site, device, err)
	}
	return out, nil
}

// PutOffer implements hq.Spool.
func (sp Spool) PutOffer(ctx context.Context, o hq.SpooledEnvelope[proto.ReleaseOffer]) error {
	kind, name := target(o.Value.Device, o.Value.Group)
	_, err := sp.s.pool.Exec(ctx, `INSERT INTO spool_offers (site, kind, name, offer, envelope) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (site, kind, name) DO UPDATE SET offer = excluded.offer, envelope = excluded.envelope`,
		o.Value.Site, kind, name, o.Value, o.Envelope)
	if err != nil {
		return fmt.Errorf("record release offer %s for %s %s of site %s: %w", o.Value.ID, kind, name, o.Value.Site, err)
	}
	return nil
}

// Offers implements hq.Spool.
func (sp Spool) Offers(ctx context.Context, site, device string, groups []string) ([]hq.SpooledEnvelope[proto.ReleaseOffer], error) {
	rows, err := sp.s.pool.Query(ctx, `SELECT offer, envelope FROM spool_offers
		WHERE site = $1 AND ((kind = 'device' AND name = $2) OR (kind = 'group' AND name = ANY($3)))`, site, device, groups)
	if err != nil {
		return nil, fmt.Errorf("release offers for %s/%s: %w", site, device, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hq.SpooledEnvelope[proto.ReleaseOffer], error) {
		var o hq.SpooledEnvelope[proto.ReleaseOffer]
		err := r.Scan(&o.Value, &o.Envelope)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("release offers for %s/%s: %w", site, device, err)
	}
	return out, nil
}
