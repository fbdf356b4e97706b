package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Marks is hq.MarkStore on PostgreSQL (tables mark_sites, marks and
// mark_reports, migration 00004). Record locks the site's mark_sites row
// (SELECT ... FOR UPDATE) before it reads any history, so replicas
// recording marks of one site take turns: sequence numbers are consecutive
// without a gap or a repeat, and of two entries of one ticket judged at
// once (an online ticket check on two replicas) the second sees the first.
type Marks struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

var _ hq.MarkStore = (*Marks)(nil)

// Marks returns the mark store on s's connections; its Close does nothing
// (s owns the connections).
func (s *Store) Marks() *Marks {
	return &Marks{pool: s.pool, now: s.opt.Clock.Now}
}

// Close implements hq.MarkStore; the connections are the Store's.
func (m *Marks) Close() error { return nil }

// Record implements hq.MarkStore.
func (m *Marks) Record(ctx context.Context, site, device string, marks []proto.Mark, judge hq.MarkJudge) (hq.Recorded, error) {
	var res hq.Recorded
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		var head, reports int64
		if _, err := tx.Exec(ctx, `INSERT INTO mark_sites (site) VALUES ($1) ON CONFLICT DO NOTHING`, site); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT head, reports FROM mark_sites WHERE site = $1 FOR UPDATE`, site).Scan(&head, &reports); err != nil {
			return err
		}
		var err error
		res, err = hq.RecordMarks(pgMarkTx{ctx: ctx, tx: tx, site: site}, uint64(head), device, marks, judge, m.now().UTC())
		if err != nil {
			return err
		}
		for _, r := range res.Reports {
			reports++
			b, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode report: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO mark_reports (site, n, kind, device, received, body) VALUES ($1, $2, $3, $4, $5, $6)`,
				site, reports, r.Kind, r.Device, r.Received, b); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE mark_sites SET head = $2, reports = $3 WHERE site = $1`, site, int64(res.Head), reports)
		return err
	})
	if err != nil {
		return hq.Recorded{}, fmt.Errorf("record %d marks of %s/%s: %w", len(marks), site, device, err)
	}
	return res, nil
}

// pgMarkTx is an hq.MarkTx in a transaction holding the site's lock.
type pgMarkTx struct {
	ctx  context.Context
	tx   pgx.Tx
	site string
}

// History implements hq.MarkTx: the ticket's newest hq.MaxTicketMarks
// marks, by At (of equal At, the later stored first, as hq.BoltMarks
// keeps them).
func (t pgMarkTx) History(ticket []byte) ([]proto.Mark, error) {
	rows, err := t.tx.Query(t.ctx, `SELECT body FROM marks WHERE site = $1 AND ticket = $2
		ORDER BY at_ns DESC, seq ASC LIMIT $3`, t.site, ticket, hq.MaxTicketMarks)
	if err != nil {
		return nil, fmt.Errorf("read history of ticket %x: %w", ticket, err)
	}
	h, err := scanJSON[proto.Mark](rows)
	if err != nil {
		return nil, fmt.Errorf("read history of ticket %x: %w", ticket, err)
	}
	slices.Reverse(h)
	return h, nil
}

// Put implements hq.MarkTx; the history is the marks table itself.
func (t pgMarkTx) Put(m proto.Mark, _ []proto.Mark) error {
	_, err := insertMark(t.ctx, t.tx, t.site, m, false)
	return err
}

// insertMark inserts m as a mark of site; with ignoreHeld a mark whose
// sequence number is held is skipped. It reports whether it inserted m.
func insertMark(ctx context.Context, tx pgx.Tx, site string, m proto.Mark, ignoreHeld bool) (bool, error) {
	q := `INSERT INTO marks (site, seq, device, ticket, event, door, state, at_ns, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	if ignoreHeld {
		q += ` ON CONFLICT DO NOTHING`
	}
	b, err := json.Marshal(m)
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = tx.Exec(ctx, q, site, int64(m.Seq), m.Device, m.Ticket, m.Event, m.Door, int16(m.State), m.At.UnixNano(), b)
	}
	if err != nil {
		return false, fmt.Errorf("store mark %d of site %s: %w", m.Seq, site, err)
	}
	return tag.RowsAffected() == 1, nil
}

// scanJSON decodes rows of one JSON column into Ts.
func scanJSON[T any](rows pgx.Rows) ([]T, error) {
	var out []T
	var b []byte
	_, err := pgx.ForEachRow(rows, []any{&b}, func() error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("decode %T: %w", v, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// After implements hq.MarkStore. The head is read in the same snapshot as
// the marks.
func (m *Marks) After(ctx context.Context, site string, after uint64, limit int) ([]proto.Mark, uint64, error) {
	var out []proto.Mark
	var head int64
	err := pgx.BeginTxFunc(ctx, m.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT head FROM mark_sites WHERE site = $1`, site).Scan(&head)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT body FROM marks WHERE site = $1 AND seq > $2 ORDER BY seq LIMIT $3`, site, int64(after), limit)
		if err != nil {
			return err
		}
		out, err = scanJSON[proto.Mark](rows)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read marks of site %s after %d: %w", site, after, err)
	}
	return out, uint64(head), nil
}

// Reports implements hq.MarkStore.
func (m *Marks) Reports(ctx context.Context, site string) ([]hq.MarkReport, error) {
	rows, err := m.pool.Query(ctx, `SELECT body FROM mark_reports WHERE site = $1 ORDER BY n`, site)
	if err != nil {
		return nil, fmt.Errorf("read mark reports of site %s: %w", site, err)
	}
	out, err := scanJSON[hq.MarkReport](rows)
	if err != nil {
		return nil, fmt.Errorf("read mark reports of site %s: %w", site, err)
	}
	return out, nil
}

// Import stores marks of site with the sequence numbers they have, and
// reports as the site's reports 1, 2, 3, ..., skipping those already
// held, and raises the site's head and report count to match: for
// "tobira-hq migrate-store", which copies a bbolt mark store (before
// serve records marks of the site here). It returns how many marks and
// reports were new.
func (m *Marks) Import(ctx context.Context, site string, marks []proto.Mark, reports []hq.MarkReport) (newMarks, newReports int, err error) {
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		newMarks, newReports = 0, 0
		if _, err := tx.Exec(ctx, `INSERT INTO mark_sites (site) VALUES ($1) ON CONFLICT DO NOTHING`, site); err != nil {
			return err
		}
		var head, nrep int64
		if err := tx.QueryRow(ctx, `SELECT head, reports FROM mark_sites WHERE site = $1 FOR UPDATE`, site).Scan(&head, &nrep); err != nil {
			return err
		}
		for _, mk := range marks {
			added, err := insertMark(ctx, tx, site, mk, true)
			if err != nil {
				return err
			}
			if added {
				newMarks++
			}
			head = max(head, int64(mk.Seq))
		}
		for i, r := range reports {
			b, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode report %d: %w", i+1, err)
			}
			tag, err := tx.Exec(ctx, `INSERT INTO mark_reports (site, n, kind, device, received, body)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, site, int64(i+1), r.Kind, r.Device, r.Received, b)
			if err != nil {
				return fmt.Errorf("store report %d: %w", i+1, err)
			}
			newReports += int(tag.RowsAffected())
		}
		_, err := tx.Exec(ctx, `UPDATE mark_sites SET head = $2, reports = $3 WHERE site = $1`, site, head, max(nrep, int64(len(reports))))
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("import %d marks and %d reports of site %s: %w", len(marks), len(reports), site, err)
	}
	return newMarks, newReports, nil
}
