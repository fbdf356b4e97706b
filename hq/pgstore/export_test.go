package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
)

// SetAfterCopy runs fn in every ingest transaction between the COPY and
// the commit.
func (s *Store) SetAfterCopy(fn func(ctx context.Context, tx pgx.Tx) error) { s.afterCopy = fn }

// PageSQL returns the statement of a page and its arguments.
func PageSQL(q hq.EventQuery, after hq.Cursor, limit int) (string, []any) {
	return pageSQL(q, after, limit)
}
