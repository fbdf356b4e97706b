// Package leader picks one HQ replica at a time to run the work that must
// run once however many replicas there are (retention of old events, and
// whatever periodic job joins it), and hands that work over when the
// leader goes away.
//
// An Elector decides who leads: Always for a single HQ (bbolt store), PG
// for replicas sharing a PostgreSQL database (a session-level advisory
// lock held on a dedicated connection). A Runner campaigns with an
// Elector and, while it leads, runs its Jobs every period.
//
// Leadership is a lease that can end without notice (a lost connection),
// and a paused leader may act for a moment after another took over: jobs
// must be safe to run twice (retention is: it drops under a transaction
// lock of its own).
package leader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/internal/clock"
)

// Elector decides whether this replica leads.
type Elector interface {
	// Lead blocks until this replica leads, or until ctx ends or the
	// elector fails (an error). It returns a context that ends when the
	// leadership does (lost, or ctx ended), and release, which gives the
	// leadership up; call release once done with it.
	Lead(ctx context.Context) (leading context.Context, release func(), err error)
}

// Always is the Elector of a single HQ: it always leads at once.
type Always struct{}

// Lead implements Elector.
func (Always) Lead(ctx context.Context) (context.Context, func(), error) {
	c, cancel := context.WithCancel(ctx)
	return c, cancel, nil
}

// Job is periodic work that must run on one replica at a time.
type Job struct {
	// Name names the job in logs.
	Name string
	// Every is the pause between two runs; the first run is when the
	// replica starts leading.
	Every time.Duration
	// Run does the work once. An error is logged; the job runs again
	// after Every.
	Run func(ctx context.Context) error
}

// DefaultRetry is the pause before campaigning again after an elector
// failed (e.g. the database is unreachable).
const DefaultRetry = 2 * time.Second

// Config configures a Runner.
type Config struct {
	// Elector decides who leads. Required.
	Elector Elector
	// Jobs run while this replica leads.
	Jobs []Job
	// Retry is the pause after an elector failed; default DefaultRetry.
	Retry time.Duration
	// Clock times the jobs and retries; default clock.System{}.
	Clock clock.Clock
	// Logger receives the runner's logs; default slog.Default().
	Logger *slog.Logger
	// Metrics, if set, receives the gauge tobira_hq_leader: 1 while this
	// replica leads, else 0.
	Metrics prometheus.Registerer
}

// Runner runs jobs while its replica leads.
type Runner struct {
	cfg     Config
	leading atomic.Bool
}

// New checks cfg and returns a Runner; Run starts it.
func New(cfg Config) (*Runner, error) {
	if cfg.Elector == nil {
		return nil, errors.New("leader: no elector")
	}
	for _, j := range cfg.Jobs {
		if j.Name == "" || j.Every <= 0 || j.Run == nil {
			return nil, fmt.Errorf("leader: job %q needs a name, a positive period (%v) and a function", j.Name, j.Every)
		}
	}
	cfg.Retry = cmp.Or(cfg.Retry, DefaultRetry)
	cfg.Clock = cmp.Or(cfg.Clock, clock.Clock(clock.System{}))
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	r := &Runner{cfg: cfg}
	if cfg.Metrics != nil {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tobira_hq_leader",
			Help: "1 while this HQ replica leads (runs the work that runs once, such as retention), else 0."},
			func() float64 {
				if r.Leading() {
					return 1
				}
				return 0
			})
		if err := cfg.Metrics.Register(g); err != nil {
			return nil, fmt.Errorf("leader: metrics: %w", err)
		}
	}
	return r, nil
}

// Leading reports whether this replica leads now.
func (r *Runner) Leading() bool { return r.leading.Load() }

// Run campaigns until ctx ends and, whenever it leads, runs the jobs until
// the leadership ends. It returns nil when ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	log := r.cfg.Logger
	for ctx.Err() == nil {
		lctx, release, err := r.cfg.Elector.Lead(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Warn("cannot campaign for leadership; trying again", "retry", r.cfg.Retry, "err", err)
			sleep(ctx, r.cfg.Clock, r.cfg.Retry)
			continue
		}
		r.leading.Store(true)
		log.Info("this replica leads: running the jobs that run once", "jobs", len(r.cfg.Jobs))
		r.runJobs(lctx)
		r.leading.Store(false)
		release()
		if ctx.Err() == nil {
			log.Warn("this replica lost the leadership; campaigning again")
		}
	}
	return nil
}

// runJobs runs every job now and then every period until ctx ends (with
// no jobs it only holds the lead: others ask Leading).
func (r *Runner) runJobs(ctx context.Context) {
	var wg sync.WaitGroup
	for _, j := range r.cfg.Jobs {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := j.Run(ctx); err != nil && ctx.Err() == nil {
					r.cfg.Logger.Error("leader job failed; it runs again later", "job", j.Name, "every", j.Every, "err", err)
				}
				sleep(ctx, r.cfg.Clock, j.Every)
			}
		})
	}
	wg.Wait()
	<-ctx.Done()
}

// sleep waits d on clk; false when ctx ended first.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}
