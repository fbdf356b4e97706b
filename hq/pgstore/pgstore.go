// Package pgstore keeps HQ's events, device status and results in
// PostgreSQL 15 (github.com/jackc/pgx/v5): the hq.Store for an HQ that its
// IT backs up and queries, and that several replicas share.
//
// Events are partitioned by the time HQ received them (Options.Partition:
// a day or a month per partition, created on demand) and old partitions
// are dropped (Options.Retention). A unique constraint on a partitioned
// table must include the partition key, so (site, device, seq) cannot be
// unique across partitions by itself. Dedup is done by the devices table
// instead, which is not partitioned: one row per device with its ack point
// (every seq up to it is held) and its highest seq. Ingest locks the rows of
// its devices (SELECT ... FOR UPDATE, in key order), drops every event at
// or below the ack point without looking at the events, looks up only the
// few events held beyond a gap, COPYs the new rows straight into the
// partitioned table and moves the ack points, in one transaction. Since
// dedup is settled under the row lock, no staging table and no ON CONFLICT
// is needed; and it still holds once retention has dropped the partition
// that held the original (the ack point remembers it).
//
// The schema is applied by Migrate (goose migrations embedded in the
// binary); Open refuses a database whose schema is behind.
package pgstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/clock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrSchemaBehind reports a database whose schema is older than this
// binary's: run "tobira-hq migrate".
var ErrSchemaBehind = errors.New("the database schema is behind this tobira-hq: run \"tobira-hq migrate\"")

// Partitioning is how long one events partition spans.
type Partitioning int

const (
	// Daily makes a partition per UTC day: retention drops a day at a
	// time.
	Daily Partitioning = iota
	// Monthly makes a partition per UTC month: fewer partitions for long
	// retentions.
	Monthly
)

// Options tune a Store.
type Options struct {
	// Partition is the span of an events partition; default Daily.
	Partition Partitioning
	// Retention drops the partitions whose events were all received more
	// than Retention ago; 0 keeps every event.
	Retention time.Duration
	// Clock tells the time of retention; default clock.System{}.
	Clock clock.Clock
	// Logger receives the store's logs; default slog.Default().
	Logger *slog.Logger
}

// Store is hq.Store on PostgreSQL. It is safe for concurrent use, also
// by several processes on the same database.
type Store struct {
	pool *pgxpool.Pool
	opt  Options

	partMu sync.Mutex
	parts  map[string]bool // partitions known to exist

	// afterCopy, when set (tests), runs in the ingest transaction after
	// the COPY and before the commit.
	afterCopy func(ctx context.Context, tx pgx.Tx) error
}

var _ hq.Store = (*Store)(nil)

// Open connects to the database at url (postgres://...) and checks that
// its schema is up to date (ErrSchemaBehind otherwise).
func Open(ctx context.Context, url string, opt Options) (*Store, error) {
	if opt.Clock == nil {
		opt.Clock = clock.System{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	pool, err := connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store %s: %w", redact(url), err)
	}
	return &Store{pool: pool, opt: opt, parts: map[string]bool{}}, nil
}

// connect opens a pool of connections to url and checks that the
// database's schema is up to date (ErrSchemaBehind otherwise).
func connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool}
	pending, err := s.withGoose(ctx, func(p *goose.Provider) (bool, error) { return p.HasPending(ctx) })
	if err == nil && pending {
		err = ErrSchemaBehind
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Migrate applies the embedded schema migrations that the database at url
// lacks, and returns the versions applied. Replicas may run it at the
// same time: goose holds a PostgreSQL advisory lock while it migrates.
func Migrate(ctx context.Context, url string) ([]int64, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", redact(url), err)
	}
	defer pool.Close()
	s := &Store{pool: pool}
	var applied []int64
	_, err = s.withGoose(ctx, func(p *goose.Provider) (bool, error) {
		res, err := p.Up(ctx)
		for _, r := range res {
			applied = append(applied, r.Source.Version)
		}
		return false, err
	})
	if err != nil {
		return applied, fmt.Errorf("migrate %s: %w", redact(url), err)
	}
	return applied, nil
}

// withGoose runs fn with a goose provider of the embedded migrations on
// s's pool.
func (s *Store) withGoose(ctx context.Context, fn func(*goose.Provider) (bool, error)) (bool, error) {
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return false, err
	}
	p, err := newProvider(db, locker)
	if err != nil {
		return false, err
	}
	return fn(p)
}

// newProvider returns the goose provider of the embedded migrations.
func newProvider(db *sql.DB, locker lock.SessionLocker) (*goose.Provider, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("embedded migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, dir, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load the schema migrations: %w", err)
	}
	return p, nil
}

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// redact drops the password from a connection URL for messages.
func redact(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// queryRower runs a query for one row: a pool, a connection or a
// transaction.
type queryRower interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// rowJSON decodes the one JSON column of the row that sql with args
// selects through q; false when there is no such row.
func rowJSON[T any](ctx context.Context, q queryRower, sql string, args ...any) (T, bool, error) {
	var v T
	var b []byte
	err := q.QueryRow(ctx, sql, args...).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	return v, err == nil, err
}
