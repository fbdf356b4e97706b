package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// eventColumns are the columns ingest COPYs into events.
var eventColumns = []string{"site", "device", "seq", "received", "time", "type", "door", "granted", "reason", "credential", "body"}

// devKey names a device.
type devKey struct{ site, device string }

// devState is a device's row during an ingest transaction.
type devState struct {
	acked, maxSeq uint64
	added         int64
	// held are the seqs above acked that are held (loaded when the row
	// says some are, then kept up to date by the transaction).
	held map[uint64]bool
}

// StoreEvents implements hq.EventStore: one transaction that locks the
// batches' device rows, settles dedup against them, COPYs the new events
// into the partitioned table and moves the ack points.
func (s *Store) StoreEvents(ctx context.Context, batches []hq.EventBatch) ([]hq.BatchResult, error) {
	if err := s.ensurePartitions(ctx, batches); err != nil {
		return nil, err
	}
	var res []hq.BatchResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		res, err = s.storeTx(ctx, tx, batches)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store %d batches in PostgreSQL: %w", len(batches), err)
	}
	return res, nil
}

// storeTx is StoreEvents inside tx.
func (s *Store) storeTx(ctx context.Context, tx pgx.Tx, batches []hq.EventBatch) ([]hq.BatchResult, error) {
	devs, err := lockDevices(ctx, tx, batches)
	if err != nil {
		return nil, err
	}
	res := make([]hq.BatchResult, len(batches))
	var rows [][]any
	for i, b := range batches {
		k := devKey{b.Site, b.Device}
		d := devs[k]
		if d.held == nil {
			if d.held, err = loadHeld(ctx, tx, k, d); err != nil {
				return nil, err
			}
		}
		for j, ev := range b.Events {
			if ev.Seq > math.MaxInt64 {
				return nil, fmt.Errorf("%s/%s: seq %d does not fit a bigint", b.Site, b.Device, ev.Seq)
			}
			if ev.Seq <= d.acked || d.held[ev.Seq] {
				res[i].Dups++
				continue
			}
			d.held[ev.Seq] = true
			d.maxSeq = max(d.maxSeq, ev.Seq)
			d.added++
			res[i].Added = append(res[i].Added, ev)
			rows = append(rows, []any{b.Site, b.Device, int64(ev.Seq), b.Received, ev.Time, ev.Type, ev.Door,
				ev.Granted, ev.Reason, strings.ToLower(ev.Credential), b.JSON[j]})
		}
		for d.held[d.acked+1] {
			delete(d.held, d.acked+1)
			d.acked++
		}
		res[i].Ack = d.acked
	}
	if len(rows) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, eventColumns, pgx.CopyFromRows(rows)); err != nil {
			return nil, fmt.Errorf("copy %d events: %w", len(rows), err)
		}
	}
	if s.afterCopy != nil {
		if err := s.afterCopy(ctx, tx); err != nil {
			return nil, err
		}
	}
	return res, updateDevices(ctx, tx, devs)
}

// lockDevices makes the rows of the batches' devices and locks them, in
// key order (two transactions never wait on each other in a circle).
func lockDevices(ctx context.Context, tx pgx.Tx, batches []hq.EventBatch) (map[devKey]*devState, error) {
	keys := make([]devKey, 0, len(batches))
	for _, b := range batches {
		keys = append(keys, devKey{b.Site, b.Device})
	}
	slices.SortFunc(keys, func(a, b devKey) int { return strings.Compare(a.site+"\x00"+a.device, b.site+"\x00"+b.device) })
	keys = slices.Compact(keys)
	sites, names := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		sites[i], names[i] = k.site, k.device
	}
	if _, err := tx.Exec(ctx, `INSERT INTO devices (site, device) SELECT * FROM unnest($1::text[], $2::text[])
		ORDER BY 1, 2 ON CONFLICT DO NOTHING`, sites, names); err != nil {
		return nil, fmt.Errorf("add devices: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT site, device, acked, max_seq FROM devices
		WHERE (site, device) IN (SELECT * FROM unnest($1::text[], $2::text[]))
		ORDER BY site COLLATE "C", device COLLATE "C" FOR UPDATE`, sites, names)
	if err != nil {
		return nil, fmt.Errorf("lock devices: %w", err)
	}
	devs := make(map[devKey]*devState, len(keys))
	var k devKey
	var acked, maxSeq int64
	_, err = pgx.ForEachRow(rows, []any{&k.site, &k.device, &acked, &maxSeq}, func() error {
		devs[k] = &devState{acked: uint64(acked), maxSeq: uint64(maxSeq)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lock devices: %w", err)
	}
	if len(devs) != len(keys) {
		return nil, fmt.Errorf("locked %d device rows, want %d", len(devs), len(keys))
	}
	return devs, nil
}

// loadHeld returns the seqs held above d's ack point: none to look up
// unless the row says some are held beyond a gap.
func loadHeld(ctx context.Context, tx pgx.Tx, k devKey, d *devState) (map[uint64]bool, error) {
	held := map[uint64]bool{}
	if d.maxSeq <= d.acked {
		return held, nil
	}
	rows, err := tx.Query(ctx, `SELECT seq FROM events WHERE site = $1 AND device = $2 AND seq > $3`, k.site, k.device, int64(d.acked))
	if err != nil {
		return nil, fmt.Errorf("read events of %s/%s held beyond a gap: %w", k.site, k.device, err)
	}
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&seq}, func() error {
		held[uint64(seq)] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read events of %s/%s held beyond a gap: %w", k.site, k.device, err)
	}
	return held, nil
}

// updateDevices writes the devices' new ack points, highest seqs and
// counts.
func updateDevices(ctx context.Context, tx pgx.Tx, devs map[devKey]*devState) error {
	n := len(devs)
	sites, names := make([]string, 0, n), make([]string, 0, n)
	acked, maxSeq, added := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	for k, d := range devs {
		sites, names = append(sites, k.site), append(names, k.device)
		acked, maxSeq, added = append(acked, int64(d.acked)), append(maxSeq, int64(d.maxSeq)), append(added, d.added)
	}
	_, err := tx.Exec(ctx, `UPDATE devices d SET acked = u.acked, max_seq = u.max_seq, stored = d.stored + u.added
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(site, device, acked, max_seq, added)
		WHERE d.site = u.site AND d.device = u.device`, sites, names, acked, maxSeq, added)
	if err != nil {
		return fmt.Errorf("update %d devices' ack points: %w", n, err)
	}
	return nil
}

// Acked implements hq.EventStore.
func (s *Store) Acked(ctx context.Context, site, device string) (uint64, error) {
	var acked int64
	err := s.pool.QueryRow(ctx, `SELECT acked FROM devices WHERE site = $1 AND device = $2`, site, device).Scan(&acked)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read ack point of %s/%s: %w", site, device, err)
	}
	return uint64(acked), nil
}

// Count implements hq.EventStore from the devices' counters.
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(stored), 0)::bigint FROM devices`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return int(n), nil
}

// Events implements hq.EventStore.
func (s *Store) Events(ctx context.Context, site, device string) ([]proto.Event, error) {
	var evs []proto.Event
	err := s.Query(ctx, hq.EventQuery{Site: site, Device: device}, func(ev hq.StoredEvent) error {
		evs = append(evs, ev.Event)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read events of %s/%s: %w", site, device, err)
	}
	return evs, nil
}

// Query implements hq.EventStore with the events table's indexes.
func (s *Store) Query(ctx context.Context, q hq.EventQuery, fn func(hq.StoredEvent) error) error {
	where, args := queryWhere(q)
	sql := `SELECT site, device, body FROM events` + where + ` ORDER BY site, device, seq`
	if q.Limit > 0 {
		sql += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("query events: %w", err)
	}
	var se hq.StoredEvent
	var body []byte
	_, err = pgx.ForEachRow(rows, []any{&se.Site, &se.Device, &body}, func() error {
		se.Event = proto.Event{}
		if err := json.Unmarshal(body, &se.Event); err != nil {
			return fmt.Errorf("decode event of %s/%s: %w", se.Site, se.Device, err)
		}
		return fn(se)
	})
	if err != nil {
		return fmt.Errorf("query events: %w", err)
	}
	return nil
}

// queryWhere returns the WHERE clause of q and its arguments.
func queryWhere(q hq.EventQuery) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if q.Site != "" {
		add("site = $%d", q.Site)
	}
	if q.Device != "" {
		add("device = $%d", q.Device)
	}
	if q.Sites != nil {
		add("site = ANY($%d)", q.Sites)
	}
	if !q.From.IsZero() {
		add("time >= $%d", q.From)
	}
	if !q.To.IsZero() {
		add("time < $%d", q.To)
	}
	if q.Door != "" {
		add("door = $%d", q.Door)
	}
	if q.Credential != "" {
		add("credential = $%d", strings.ToLower(q.Credential))
	}
	if q.Credentials != nil {
		add("credential = ANY($%d)", lowerAll(q.Credentials))
	}
	if q.Type != "" {
		add("type = $%d", q.Type)
	}
	if q.Reason != "" {
		add("reason = $%d", q.Reason)
	}
	switch {
	case q.Granted == nil:
	case *q.Granted:
		add("type = '"+proto.TypeDecision+"' AND granted = $%d", true)
	default:
		// As events_denied_time's predicate, so that it is used.
		conds = append(conds, "type = '"+proto.TypeDecision+"' AND NOT granted")
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// lowerAll returns ss in lower case, as the credential column holds them
// (never nil, so that an empty list selects nothing).
func lowerAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}
