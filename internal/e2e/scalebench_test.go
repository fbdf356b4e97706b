package e2e_test

// Performance runs of HQ at scale (issue 11), off by default like the
// other TestPerf runs: TOBIRA_BENCH_SCALE=small (make bench) or full (make
// bench-full, the figures of docs/PERFORMANCE.md). The devices are real
// sync.Edges with their own bbolt outboxes (the harness of
// scaleharness_test.go); HQ runs in this process on PostgreSQL.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/amqpintake"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/internal/rabbittest"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// warnCount is a slog handler counting the records at Warn and above by
// message: what went wrong during a bench, in its figure line.
type warnCount struct {
	mu sync.Mutex
	n  map[string]int
}

// newWarnCount returns an empty warnCount.
func newWarnCount() *warnCount { return &warnCount{n: map[string]int{}} }

// Enabled implements slog.Handler.
func (w *warnCount) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

// Handle implements slog.Handler.
func (w *warnCount) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n[r.Message]++
	return nil
}

// WithAttrs implements slog.Handler.
func (w *warnCount) WithAttrs([]slog.Attr) slog.Handler { return w }

// WithGroup implements slog.Handler.
func (w *warnCount) WithGroup(string) slog.Handler { return w }

// String lists the counts, e.g. `"no ack from HQ in time, sending again" x12`.
func (w *warnCount) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.n) == 0 {
		return "none"
	}
	var parts []string
	for _, m := range slices.Sorted(maps.Keys(w.n)) {
		parts = append(parts, fmt.Sprintf("%q x%d", m, w.n[m]))
	}
	return strings.Join(parts, ", ")
}

// benchLogs are the warnings of a bench's devices and HQ.
type benchLogs struct{ devices, hq *warnCount }

// newBenchLogs returns empty benchLogs.
func newBenchLogs() benchLogs { return benchLogs{newWarnCount(), newWarnCount()} }

// tune gives a bench gate the Edge's default ack timeout and retry delay
// and the devices' warning count as its log.
func (b benchLogs) tune(c *tsync.EdgeConfig) {
	defaultAcks(c)
	c.Logger = slog.New(b.devices)
}

// String describes the warnings.
func (b benchLogs) String() string {
	return fmt.Sprintf("device warnings: %v; HQ warnings: %v", b.devices, b.hq)
}

// benchSize returns small or full after benchScale's skip.
func benchSize(t *testing.T, small, full int) int {
	if benchScale(t) == 1000000 {
		return full
	}
	return small
}

// defaultAcks gives a bench gate the Edge's default ack timeout and retry
// delay (the harness's short ones suit fault tests: with a thousand
// devices draining at once, a 2 s ack timeout re-sends batches HQ is
// still working through).
func defaultAcks(c *tsync.EdgeConfig) { c.AckTimeout, c.RetryDelay = 0, 0 }

// scaleMosquitto starts a mosquitto for a fleet: the test harness's
// broker with the shipped configuration's set_tcp_nodelay and
// max_inflight_messages (deploy/mosquitto/mosquitto.conf), only errors
// logged (logging every PUBLISH of a thousand devices costs the broker
// more than routing them), and maxQueued as max_queued_messages: how many
// QoS 1 messages mosquitto holds for one client beyond those in flight
// before it drops them (0: mosquitto's default, 1000).
func scaleMosquitto(t *testing.T, maxQueued int) *mosquittotest.Mosquitto {
	return mosquittotest.StartWith(t, mosquittotest.Options{Config: func(port int) string {
		c := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_inflight_messages %d\nlog_dest stderr\nlog_type error\n", port, scaleMaxInflight)
		if maxQueued > 0 {
			c += fmt.Sprintf("max_queued_messages %d\n", maxQueued)
		}
		return c
	}})
}

// waitConnected waits until every gate of f is connected to a broker.
func waitConnected(t *testing.T, f *fleet) {
	t.Helper()
	waitFor(t, "every gate to connect", func() bool {
		return !slices.ContainsFunc(f.gates, func(g *scaleGate) bool { return !g.edge.Connected() })
	})
}

// drainFleet waits until every gate's outbox is empty and returns how
// long that took since start.
func drainFleet(t *testing.T, f *fleet, start time.Time) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(uint64(f.events)))
	defer cancel()
	for _, g := range f.gates {
		if err := g.edge.WaitDrained(ctx); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
	}
	return time.Since(start)
}

// checkStoredOnce checks that PostgreSQL at db and HQ's OnEvent calls hold
// the fleet's events once each.
func checkStoredOnce(t *testing.T, db string, f *fleet, newEvents *atomic.Int64) {
	t.Helper()
	got := mustCountEvents(t, db)
	if got.rows != int64(f.events) || got.dups != 0 || newEvents.Load() != int64(f.events) {
		t.Fatalf("PostgreSQL holds %d events (%d repeating a site/device/seq), OnEvent %d; want %d once each",
			got.rows, got.dups, newEvents.Load(), f.events)
	}
}

// TestPerfScaleReconnect: every device holds a backlog made while the
// broker was away; the broker comes back and they all reconnect at once.
// Figure: the time until every outbox is empty, and no event lost or
// stored twice.
func TestPerfScaleReconnect(t *testing.T) {
	devices, perDevice := benchSize(t, 100, 1000), benchSize(t, 100, 1000)
	m := scaleMosquitto(t, scaleMaxQueued)
	db := migratedDB(t)
	var newEvents atomic.Int64
	logs := newBenchLogs()
	startReplica(t, "a", db, hq.Config{Broker: m.URL(), Logger: slog.New(logs.hq)}, &newEvents)
	f := newFleet(t, fleetConfig{gates: devices, brokers: []string{m.URL()}, batch: 200, tune: logs.tune})
	waitConnected(t, f)
	m.Stop()
	f.produce(rand.New(rand.NewPCG(1, 1)), work{eventsPerGate: perDevice})
	start, cpu0 := time.Now(), cpuTime(t)
	m.Restart(t)
	drain := drainFleet(t, f, start)
	cpu := cpuTime(t) - cpu0
	checkStoredOnce(t, db, f, &newEvents)
	t.Logf("figure: %d devices x %d events reconnecting at once: drained in %v, %.0f events/s, 0 lost, 0 twice; %s; %v",
		devices, perDevice, drain.Round(time.Millisecond), float64(f.events)/drain.Seconds(), cpuPerEvent(cpu, f.events), logs)
}

// cpuPerEvent describes the CPU time this process (devices and HQ) used
// for n events: a figure that other load on the machine does not inflate
// as much as the wall clock.
func cpuPerEvent(cpu time.Duration, n int) string {
	return fmt.Sprintf("CPU of devices + HQ %v, %.0f µs per event", cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(n))
}

// tapClock records when each tap was decided, by device and sequence
// number, and the tap-to-stored latency of each once HQ stored it.
type tapClock struct {
	mu       sync.Mutex
	decided  map[string]time.Time
	lat      []time.Duration // tap -> HQ stored
	appended []time.Duration // tap -> in the outbox (fsynced), the edge's part
}

// key names a device's event.
func (*tapClock) key(device string, seq uint64) string { return fmt.Sprint(device, "/", seq) }

// decide records that device's event seq was decided at t0.
func (c *tapClock) decide(device string, seq uint64, t0 time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.decided[c.key(device, seq)] = t0
}

// append records that a tap decided at t0 is in the outbox now.
func (c *tapClock) append(t0 time.Time) {
	d := time.Since(t0)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.appended = append(c.appended, d)
}

// stored records that HQ stored device's ev now.
func (c *tapClock) stored(device string, ev proto.Event) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t0, ok := c.decided[c.key(device, ev.Seq)]; ok {
		c.lat = append(c.lat, now.Sub(t0))
	}
}

// count returns how many latencies are recorded.
func (c *tapClock) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lat)
}

// TestPerfScaleTapLatency: every device connected, taps spread over them
// at a fixed rate in all; each tap appends its event (fsynced) and wakes
// the device's Edge. Figure: tap -> HQ stored (committed in PostgreSQL)
// latency percentiles.
func TestPerfScaleTapLatency(t *testing.T) {
	devices, rate := benchSize(t, 100, 1000), benchSize(t, 100, 500)
	taps := rate * benchSize(t, 10, 30)
	m := scaleMosquitto(t, scaleMaxQueued)
	db := migratedDB(t)
	var newEvents atomic.Int64
	logs := newBenchLogs()
	r := startReplica(t, "a", db, hq.Config{Broker: m.URL(), Logger: slog.New(logs.hq)}, &newEvents)
	clk := &tapClock{decided: map[string]time.Time{}}
	r.h.OnEvent(func(_, device string, ev proto.Event) {
		clk.stored(device, ev)
		newEvents.Add(1)
	})
	f := newFleet(t, fleetConfig{gates: devices, brokers: []string{m.URL()}, tune: logs.tune})
	waitConnected(t, f)
	// One goroutine per device appends its taps in order; the schedule
	// hands tap i to device i mod devices at start + i/rate.
	queues := make([]chan time.Time, devices)
	var wg sync.WaitGroup
	for d, g := range f.gates {
		queues[d] = make(chan time.Time, taps/devices+1)
		var next uint64
		wg.Go(func() {
			for t0 := range queues[d] {
				next++
				clk.decide(g.name, next, t0)
				if _, err := g.ob.Append(seqEvent(next)); err != nil {
					t.Error(err)
					return
				}
				clk.append(t0)
				g.edge.Notify()
			}
		})
	}
	start := time.Now()
	for i := range taps {
		at := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(at))
		queues[i%devices] <- at
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	sent := time.Since(start)
	f.events = taps
	drainFleet(t, f, start)
	waitFor(t, "HQ to store every tap", func() bool { return clk.count() == taps })
	checkStoredOnce(t, db, f, &newEvents)
	t.Logf("figure: %d devices, %d taps at %.0f taps/s in all: tap -> HQ stored %s; of which tap -> in the outbox (fsync) %s; %v",
		devices, taps, float64(taps)/sent.Seconds(), percentiles(clk.lat), percentiles(clk.appended), logs)
}

// percentiles describes the distribution of ds: p50, p90, p99, max.
func percentiles(ds []time.Duration) string {
	s := slices.Sorted(slices.Values(ds))
	q := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))].Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %v, p90 %v, p99 %v, max %v", q(0.5), q(0.9), q(0.99), q(1))
}

// TestPerfScaleReplicas: the same backlogs drained through the RabbitMQ
// quorum-queue intake by one HQ replica, then by two, each on a fresh
// database of one PostgreSQL. Figure: events/s of each and the ratio.
func TestPerfScaleReplicas(t *testing.T) {
	devices, perDevice := benchSize(t, 20, 200), benchSize(t, 200, 1000)
	c := rabbittest.Start(t, rabbittest.Options{})
	pg, err := pgtest.Start(t.Context(), pgtest.Options{})
	if err != nil {
		pgtest.Unavailable(t, err)
	}
	t.Cleanup(func() { pg.Stop() })
	var amqp []string
	for _, n := range c.Nodes {
		amqp = append(amqp, n.AMQPURL())
	}
	rates := map[int]float64{}
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			db, err := pg.CreateDB(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pgstore.Migrate(t.Context(), db); err != nil {
				t.Fatal(err)
			}
			var newEvents atomic.Int64
			logs := newBenchLogs()
			for i := range replicas {
				log := slog.New(logs.hq)
				in, err := amqpintake.New(amqpintake.Config{URLs: rotate(amqp, i), RetryDelay: 200 * time.Millisecond, Logger: log})
				if err != nil {
					t.Fatal(err)
				}
				startReplica(t, fmt.Sprintf("%d-%d", replicas, i), db, hq.Config{Broker: c.Nodes[i].MQTTURL(), Intake: in, Logger: log}, &newEvents)
			}
			f := newFleet(t, fleetConfig{gates: devices, brokers: c.MQTTURLs(), batch: 200, tune: logs.tune})
			waitConnected(t, f)
			start, cpu0 := time.Now(), cpuTime(t)
			f.produce(rand.New(rand.NewPCG(1, 1)), work{eventsPerGate: perDevice})
			drain := drainFleet(t, f, start)
			cpu := cpuTime(t) - cpu0
			checkStoredOnce(t, db, f, &newEvents)
			rates[replicas] = float64(f.events) / drain.Seconds()
			t.Logf("figure: %d replicas, %d devices x %d events through the quorum queue: %v, %.0f events/s; %s; %v",
				replicas, devices, perDevice, drain.Round(time.Millisecond), rates[replicas], cpuPerEvent(cpu, f.events), logs)
		})
	}
	if rates[1] > 0 && rates[2] > 0 {
		t.Logf("figure: ingest ratio 2 replicas / 1 replica: %.2f", rates[2]/rates[1])
	}
}

// scaleMaxQueued and scaleMaxInflight are the brokers'
// max_queued_messages and max_inflight_messages in the scale benches: the
// shipped configuration's.
const (
	scaleMaxQueued   = 100000
	scaleMaxInflight = 1000
)
