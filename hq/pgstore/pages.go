package pgstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// QueryPage implements hq.EventStore: newest first by (time, site,
// device, seq), from after. Each filter has an index that starts with its
// column and goes on in that order (migration 00002), so a page is a
// backward range scan of it; the explicit "time <= cursor time" bounds the
// scan, the row comparison drops the ties at that time already shown.
func (s *Store) QueryPage(ctx context.Context, q hq.EventQuery, after hq.Cursor, limit int) (hq.EventPage, error) {
	limit = min(max(limit, 1), hq.MaxPageSize)
	sql, args := pageSQL(q, after, limit+1)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return hq.EventPage{}, fmt.Errorf("query a page of events: %w", err)
	}
	var page hq.EventPage
	var se hq.StoredEvent
	var body []byte
	_, err = pgx.ForEachRow(rows, []any{&se.Site, &se.Device, &body}, func() error {
		if len(page.Events) == limit {
			page.More = true
			return nil
		}
		se.Event = proto.Event{}
		if err := json.Unmarshal(body, &se.Event); err != nil {
			return fmt.Errorf("decode event of %s/%s: %w", se.Site, se.Device, err)
		}
		page.Events = append(page.Events, se)
		return nil
	})
	if err != nil {
		return hq.EventPage{}, fmt.Errorf("query a page of events: %w", err)
	}
	if page.More {
		page.Next = hq.CursorOf(page.Events[len(page.Events)-1])
	}
	return page, nil
}

// pageSQL returns the statement of a page of up to limit events and its
// arguments.
func pageSQL(q hq.EventQuery, after hq.Cursor, limit int) (string, []any) {
	q.Limit = 0
	where, args := queryWhere(q)
	if !after.IsZero() {
		n := len(args)
		cond := fmt.Sprintf("time <= $%d AND (time, site, device, seq) < ($%d, $%d, $%d, $%d)", n+1, n+1, n+2, n+3, n+4)
		args = append(args, after.Time, after.Site, after.Device, int64(min(after.Seq, 1<<63-1)))
		if where == "" {
			where = " WHERE " + cond
		} else {
			where += " AND " + cond
		}
	}
	return `SELECT site, device, body FROM events` + where +
		fmt.Sprintf(` ORDER BY time DESC, site DESC, device DESC, seq DESC LIMIT %d`, limit), args
}
