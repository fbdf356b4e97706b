package leader_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/hq/leader"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestNewChecksConfig(t *testing.T) {
	run := func(context.Context) error { return nil }
	tests := []struct {
		name string
		cfg  leader.Config
		ok   bool
	}{
		{"one job", leader.Config{Elector: leader.Always{}, Jobs: []leader.Job{{Name: "j", Every: time.Hour, Run: run}}}, true},
		{"no jobs", leader.Config{Elector: leader.Always{}}, true},
		{"no elector", leader.Config{}, false},
		{"no period", leader.Config{Elector: leader.Always{}, Jobs: []leader.Job{{Name: "j", Run: run}}}, false},
		{"no name", leader.Config{Elector: leader.Always{}, Jobs: []leader.Job{{Every: time.Hour, Run: run}}}, false},
		{"no function", leader.Config{Elector: leader.Always{}, Jobs: []leader.Job{{Name: "j", Every: time.Hour}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := leader.New(tt.cfg); (err == nil) != tt.ok {
				t.Fatalf("New = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// waitUntil polls cond until it holds, failing after an integration
// deadline (a real database answers in between).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start runs r until the test ends.
func start(t *testing.T, r *leader.Runner) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// A single HQ always leads: its job runs at once and then every period,
// and a failing run does not stop the next.
func TestAlwaysRunsJobsEveryPeriod(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	var runs atomic.Int64
	reg := prometheus.NewRegistry()
	r, err := leader.New(leader.Config{Elector: leader.Always{}, Clock: clk, Logger: slog.New(slog.DiscardHandler), Metrics: reg,
		Jobs: []leader.Job{{Name: "count", Every: time.Hour, Run: func(context.Context) error {
			runs.Add(1)
			return errors.New("fails every time")
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	if g := leaderGauge(t, reg); g != 0 {
		t.Fatalf("tobira_hq_leader = %v before Run, want 0", g)
	}
	start(t, r)
	for want := int64(1); want <= 3; want++ {
		waitUntil(t, "the job's next run", func() bool { return runs.Load() == want && clk.Pending() == 1 })
		if !r.Leading() || leaderGauge(t, reg) != 1 {
			t.Fatalf("a single HQ does not lead (gauge %v)", leaderGauge(t, reg))
		}
		clk.Advance(time.Hour)
	}
}

// leaderGauge returns tobira_hq_leader of reg.
func leaderGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "tobira_hq_leader" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no tobira_hq_leader")
	return 0
}

// pgReplica is one replica's runner on a PG elector, with its job's runs.
type pgReplica struct {
	r    *leader.Runner
	runs atomic.Int64
	stop func()
}

// newPGReplica runs a replica on the database at url until stop or the
// end of the test; its job runs every every.
func newPGReplica(t *testing.T, url string, every time.Duration) *pgReplica {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	e, err := leader.NewPG(leader.PGConfig{URL: url, Poll: 100 * time.Millisecond, Check: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	p := &pgReplica{}
	p.r, err = leader.New(leader.Config{Elector: e, Logger: log, Retry: 100 * time.Millisecond,
		Jobs: []leader.Job{{Name: "count", Every: every, Run: func(context.Context) error { p.runs.Add(1); return nil }}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.r.Run(ctx) }()
	stopped := false
	p.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(p.stop)
	return p
}

// lockHolders returns the database sessions that hold the leader lock.
func lockHolders(t *testing.T, conn *pgx.Conn) []int {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1`,
		leader.DefaultLockKey)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// leading returns the replica of ps that leads, failing unless exactly
// one does.
func leading(t *testing.T, ps ...*pgReplica) (lead *pgReplica, others []*pgReplica) {
	t.Helper()
	for _, p := range ps {
		if p.r.Leading() {
			if lead != nil {
				t.Fatal("two replicas lead")
			}
			lead = p
		} else {
			others = append(others, p)
		}
	}
	if lead == nil {
		t.Fatal("no replica leads")
	}
	return lead, others
}

// Two replicas on one database: exactly one leads (holds the lock) and
// runs the job, the other never does. When the leader's session is
// killed (a broken connection), one leads again at once; when the leader
// stops, the other takes over and runs the job.
func TestPGOneLeaderTakesOver(t *testing.T) {
	url := pgtest.DB(t)
	admin, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	a := newPGReplica(t, url, 20*time.Millisecond)
	b := newPGReplica(t, url, 20*time.Millisecond)
	waitUntil(t, "a leader", func() bool { return a.r.Leading() || b.r.Leading() })
	lead, others := leading(t, a, b)
	waitUntil(t, "the leader's job to run a few times", func() bool { return lead.runs.Load() >= 5 })
	if other := others[0]; other.r.Leading() || other.runs.Load() != 0 {
		t.Fatalf("the other replica leads too (%v) or ran the job %d times", other.r.Leading(), other.runs.Load())
	}

	holders := lockHolders(t, admin)
	if len(holders) != 1 {
		t.Fatalf("sessions holding the leader lock: %v, want one", holders)
	}
	killed, total := time.Now(), a.runs.Load()+b.runs.Load()
	if _, err := admin.Exec(t.Context(), `SELECT pg_terminate_backend($1)`, holders[0]); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a new leader session", func() bool {
		h := lockHolders(t, admin)
		return len(h) == 1 && h[0] != holders[0]
	})
	relead := time.Since(killed)
	waitUntil(t, "the job to run on", func() bool { return a.runs.Load()+b.runs.Load() >= total+5 })

	lead, others = leading(t, a, b)
	lead.stop() // the leader's replica goes away
	stopped := time.Now()
	other := others[0]
	waitUntil(t, "the other replica to lead", other.r.Leading)
	took := time.Since(stopped)
	before, runs := lead.runs.Load(), other.runs.Load()
	waitUntil(t, "the new leader's job to run a few times", func() bool { return other.runs.Load() >= runs+5 })
	if lead.runs.Load() != before {
		t.Fatalf("the stopped replica ran its job on (%d -> %d)", before, lead.runs.Load())
	}
	t.Logf("lock held again %v after the leader's session was killed; the other replica led %v after the leader stopped (poll and check every 100ms)",
		relead.Round(time.Millisecond), took.Round(time.Millisecond))
}

// countingElector is Always, counting its campaigns.
type countingElector struct{ n atomic.Int64 }

// Lead implements leader.Elector.
func (e *countingElector) Lead(ctx context.Context) (context.Context, func(), error) {
	e.n.Add(1)
	return leader.Always{}.Lead(ctx)
}

// TestNoJobsHoldsTheLead: a runner without jobs (the console's sweep asks
// Leading) leads and keeps the lead instead of campaigning again and again.
func TestNoJobsHoldsTheLead(t *testing.T) {
	e := &countingElector{}
	r, err := leader.New(leader.Config{Elector: e, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	waitUntil(t, "the lead", r.Leading)
	for range 100 {
		runtime.Gosched()
	}
	if n := e.n.Load(); n != 1 || !r.Leading() {
		t.Fatalf("campaigns = %d, leading %v; want 1 campaign held", n, r.Leading())
	}
}
