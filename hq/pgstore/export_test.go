package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// SetAfterCopy runs fn in every ingest transaction between the COPY and
// the commit.
func (s *Store) SetAfterCopy(fn func(ctx context.Context, tx pgx.Tx) error) { s.afterCopy = fn }
