package e2e_test

// Performance runs on a real mosquitto, off by default: set
// TOBIRA_BENCH_SCALE=full (1 million events) or TOBIRA_BENCH_SCALE=small.
// Figures go to docs/PERFORMANCE.md.

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// benchScale skips unless TOBIRA_BENCH_SCALE is set, and returns the
// backlog size.
func benchScale(t *testing.T) int {
	switch os.Getenv("TOBIRA_BENCH_SCALE") {
	case "full":
		return 1000000
	case "small":
		return 50000
	default:
		t.Skip("set TOBIRA_BENCH_SCALE=small or full to run performance tests")
		return 0
	}
}

func TestPerfDrainVersusMosquittoClients(t *testing.T) {
	n := benchScale(t)
	// A window of 32 batches: with group commits at HQ, more batches in
	// flight mean fewer fsyncs per event (window 8: ~100k events/s, 32:
	// ~170k on the dev VM; see docs/PERFORMANCE.md).
	const batch, window = 1000, 32
	m := mosquittotest.Start(t)
	ob := newOutbox(t)
	appendBacklog(t, ob, 1, uint64(n))

	// The same bytes the edge will send: one line per batch payload.
	var payloadBytes int64
	lines, err := os.Create(t.TempDir() + "/batches.txt")
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(lines)
	for first := uint64(1); first <= uint64(n); first += batch {
		evs := make([]proto.Event, 0, batch)
		for s := first; s < first+batch && s <= uint64(n); s++ {
			evs = append(evs, seqEvent(s))
		}
		b, _ := json.Marshal(proto.Batch{Device: "d1", Site: "s1", Events: evs})
		payloadBytes += int64(len(b))
		w.Write(b)
		w.WriteByte('\n')
	}
	w.Flush()
	lines.Close()
	msgs := (n + batch - 1) / batch

	// Ceiling: mosquitto_pub -l at QoS 1 into mosquitto_sub at QoS 1.
	// stdbuf: mosquitto_sub's stdout is a pipe, and its "SUBACK" debug
	// line must come out at once.
	sub := exec.Command("stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", portOf(m), "-q", "1", "-t", "ceiling", "-C", strconv.Itoa(msgs), "-d", "-F", "%l")
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Skipf("mosquitto_sub: %v", err)
	}
	t.Cleanup(func() { sub.Process.Kill() })
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.Contains(sc.Text(), "SUBACK") {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	in, _ := os.Open(lines.Name())
	defer in.Close()
	pub := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", portOf(m), "-q", "1", "-t", "ceiling", "-l")
	pub.Stdin = in
	start := time.Now()
	if err := pub.Run(); err != nil {
		t.Fatalf("mosquitto_pub: %v", err)
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	ceiling := time.Since(start)

	// tobira: edge drains the outbox into HQ's store, acked end to end.
	var newEvents atomic.Int64
	h := runHQ(t, m.URL(), &newEvents)
	cpu0 := cpuTime(t)
	start = time.Now()
	e := runEdge(t, m.URL(), ob, batch, window)
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(uint64(n)))
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	drain := time.Since(start)
	cpu := cpuTime(t) - cpu0
	checkHQExactly(t, h, &newEvents, uint64(n))

	t.Logf("backlog %d events, %d messages, %.1f MB of payload, batch %d, window %d", n, msgs, float64(payloadBytes)/1e6, batch, window)
	t.Logf("mosquitto_pub -> mosquitto_sub (QoS 1): %v, %.0f events/s", ceiling, float64(n)/ceiling.Seconds())
	t.Logf("tobira edge -> HQ store, acked:          %v, %.0f events/s", drain, float64(n)/drain.Seconds())
	t.Logf("ratio tobira / ceiling: %.2f", ceiling.Seconds()/drain.Seconds())
	t.Logf("CPU time of the edge and HQ (this process) during the drain: %v, %.1f µs per event", cpu.Round(time.Millisecond),
		float64(cpu.Microseconds())/float64(n))
}

// cpuTime returns the user and system CPU time this process has used: the
// drain's cost independent of other load on the machine.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// portOf returns the broker's port as a string.
func portOf(m *mosquittotest.Mosquitto) string {
	a := m.Addr()
	return a[strings.LastIndexByte(a, ':')+1:]
}

func TestPerfTapToHQLatency(t *testing.T) {
	benchScale(t)
	const taps = 2000
	m := mosquittotest.Start(t)
	ob := newOutbox(t)
	stored := make(chan time.Time, 1)
	h, err := hq.Open(hq.Config{Broker: m.URL(), Path: t.TempDir() + "/hq.db", ClientID: "hq-lat", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	h.OnEvent(func(string, string, proto.Event) { stored <- time.Now() })
	runUntilCleanup(t, h.Run, func(error) { h.Close() })
	e := runEdge(t, m.URL(), ob, 0, 0)
	// Warm up: the first event waits for both connections.
	appendBacklog(t, ob, 1, 1)
	e.Notify()
	<-stored
	lat := make([]time.Duration, 0, taps)
	for i := uint64(2); i < taps+2; i++ {
		t0 := time.Now() // the decision is made: append (fsync) and send
		if _, err := ob.Append(seqEvent(i)); err != nil {
			t.Fatal(err)
		}
		e.Notify()
		lat = append(lat, (<-stored).Sub(t0))
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	t.Logf("tap-to-HQ-stored latency over %d taps: p50 %v, p90 %v, p99 %v, max %v", taps, q(0.5), q(0.9), q(0.99), lat[len(lat)-1])
}
