package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/leader"
	"github.com/tobira-ac/tobira/hq/pgstore"
)

// retentionEvery is how often the leading replica drops expired events
// partitions.
const retentionEvery = time.Hour

// leaderJobs returns the work of serve that must run on one replica at a
// time: with PostgreSQL and a retention, dropping the expired events
// partitions (ingest also drops them whenever it makes a partition; this
// keeps the retention when no new partition is due).
func leaderJobs(st hq.Store) []leader.Job {
	ps, ok := st.(*pgstore.Store)
	if !ok || ps.Retention() <= 0 {
		return nil
	}
	return []leader.Job{{Name: "retention", Every: retentionEvery, Run: func(ctx context.Context) error {
		_, err := ps.DropExpired(ctx)
		return err
	}}}
}

// newLeader returns the runner of serve's leader jobs, nil when there are
// none and elect is false (elect: others ask Runner.Leading, as the
// console's alarm sweep does); metrics (if set) gets its gauge tobira_hq_leader. Replicas sharing the PostgreSQL database at url elect one with an
// advisory lock; a bbolt HQ (url empty) is alone and always leads.
func newLeader(url string, jobs []leader.Job, elect bool, metrics prometheus.Registerer, log *slog.Logger) (*leader.Runner, error) {
	if len(jobs) == 0 && !elect {
		return nil, nil
	}
	var e leader.Elector = leader.Always{}
	if url != "" {
		pg, err := leader.NewPG(leader.PGConfig{URL: url, Logger: log})
		if err != nil {
			return nil, err
		}
		e = pg
	}
	return leader.New(leader.Config{Elector: e, Jobs: jobs, Metrics: metrics, Logger: log})
}

// withLeader returns run, with r running next to it (when not nil) until
// run returns.
func withLeader(r *leader.Runner, run func(context.Context) error) func(context.Context) error {
	if r == nil {
		return run
	}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return r.Run(gctx) })
		g.Go(func() error {
			defer cancel()
			return run(gctx)
		})
		return g.Wait()
	}
}
