package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/pgtest"
)

// serve runs the retention on the leading replica, and only with
// PostgreSQL and a retention (its job runs); a bbolt HQ needs no leader.
func TestLeaderJobs(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	bolt, err := hq.OpenBoltStore(filepath.Join(t.TempDir(), "hq.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	url := pgtest.DB(t)
	if _, err := pgstore.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	open := func(retention time.Duration) *pgstore.Store {
		st, err := pgstore.Open(t.Context(), url, pgstore.Options{Retention: retention, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	tests := []struct {
		name  string
		st    hq.Store
		url   string
		jobs  int
		leads bool
	}{
		{"bbolt", bolt, "", 0, false},
		{"postgres, no retention", open(0), url, 0, false},
		{"postgres, retention", open(24 * time.Hour), url, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs := leaderJobs(tt.st)
			if len(jobs) != tt.jobs {
				t.Fatalf("%d leader jobs, want %d", len(jobs), tt.jobs)
			}
			for _, j := range jobs {
				if err := j.Run(t.Context()); err != nil {
					t.Fatalf("job %s: %v", j.Name, err)
				}
			}
			r, err := newLeader(tt.url, jobs, false, prometheus.NewRegistry(), log)
			if err != nil || (r != nil) != tt.leads {
				t.Fatalf("newLeader = %v, %v; want a runner %v", r, err, tt.leads)
			}
			ran := false
			run := withLeader(r, func(context.Context) error { ran = true; return nil })
			if err := run(t.Context()); err != nil || !ran {
				t.Fatalf("run = %v, ran %v", err, ran)
			}
		})
	}
}
