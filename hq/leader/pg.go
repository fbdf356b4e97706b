package leader

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/internal/clock"
)

// Defaults of PGConfig.
const (
	// DefaultLockKey is the advisory lock key of HQ's leader.
	DefaultLockKey int64 = 0x746f626972616c // "tobiral"
	// DefaultPoll is the pause between two attempts at the lock of a
	// replica that does not lead: the time another replica takes over
	// once the leader's session is gone.
	DefaultPoll = 2 * time.Second
	// DefaultCheck is the pause between two checks that the leader's
	// connection still holds: how long a leader may act after losing it.
	DefaultCheck = 2 * time.Second
)

// PGConfig configures a PG elector.
type PGConfig struct {
	// URL is the database every replica shares. Required.
	URL string
	// LockKey is the advisory lock; default DefaultLockKey.
	LockKey int64
	// Poll is the pause between attempts at the lock; default DefaultPoll.
	Poll time.Duration
	// Check is the pause between checks of a leader's connection; default
	// DefaultCheck.
	Check time.Duration
	// Clock times polls and checks; default clock.System{}.
	Clock clock.Clock
	// Logger receives the elector's logs; default slog.Default().
	Logger *slog.Logger
}

// PG elects the replica that holds a session-level PostgreSQL advisory
// lock (pg_try_advisory_lock) on a connection of its own: held while it
// leads, released when it gives up, and by PostgreSQL when the session
// ends (the replica died or its connection broke). The leader checks its
// connection every Check and stops leading when it fails; the others try
// the lock every Poll.
type PG struct {
	cfg PGConfig
}

// NewPG checks cfg and returns a PG elector. It does not connect; Lead
// does.
func NewPG(cfg PGConfig) (*PG, error) {
	if _, err := url.Parse(cfg.URL); err != nil || cfg.URL == "" {
		return nil, fmt.Errorf("leader: database URL: %v", err)
	}
	if cfg.Poll < 0 || cfg.Check < 0 {
		return nil, fmt.Errorf("leader: negative poll %v or check %v", cfg.Poll, cfg.Check)
	}
	cfg.LockKey = cmp.Or(cfg.LockKey, DefaultLockKey)
	cfg.Poll = cmp.Or(cfg.Poll, DefaultPoll)
	cfg.Check = cmp.Or(cfg.Check, DefaultCheck)
	cfg.Clock = cmp.Or(cfg.Clock, clock.Clock(clock.System{}))
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &PG{cfg: cfg}, nil
}

// Lead implements Elector: it connects, and tries the lock every Poll
// until it holds it; a failed connection or query is an error.
func (p *PG) Lead(ctx context.Context) (context.Context, func(), error) {
	conn, err := pgx.Connect(ctx, p.cfg.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("leader: connect: %w", err)
	}
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, p.cfg.LockKey).Scan(&got); err != nil {
			conn.Close(context.Background())
			return nil, nil, fmt.Errorf("leader: try advisory lock %d: %w", p.cfg.LockKey, err)
		}
		if got {
			break
		}
		if !sleep(ctx, p.cfg.Clock, p.cfg.Poll) {
			conn.Close(context.Background())
			return nil, nil, ctx.Err()
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.hold(lctx, conn)
		cancel()
	}()
	release := func() {
		cancel()
		<-done
		// Unlocking is a courtesy: closing the session releases the lock.
		uctx, ucancel := context.WithTimeout(context.Background(), p.cfg.Check)
		defer ucancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, p.cfg.LockKey); err != nil {
			p.cfg.Logger.Debug("cannot unlock the leader lock; closing its session releases it", "err", err)
		}
		conn.Close(uctx)
	}
	return lctx, release, nil
}

// hold checks conn every Check until ctx ends or a check fails.
func (p *PG) hold(ctx context.Context, conn *pgx.Conn) {
	for sleep(ctx, p.cfg.Clock, p.cfg.Check) {
		cctx, cancel := context.WithTimeout(ctx, p.cfg.Check)
		err := conn.Ping(cctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("the leader's database session failed: leadership lost", "err", err)
			return
		}
	}
}
