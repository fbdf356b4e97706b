package e2e_test

// Fault tests of the events link on a real mosquitto: a backlog drained, the
// broker killed mid-drain, a proxy that cuts the connection at random
// points, and the edge process killed with SIGKILL at random moments. Each
// ends by checking that HQ holds exactly the events made, each once.
//
// TOBIRA_BENCH_SCALE=full runs them at full scale (a backlog of 1 million
// events, more kills); the default keeps `go test` quick.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/faultproxy"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// fullScale reports whether TOBIRA_BENCH_SCALE=full asks for the big runs.
func fullScale() bool { return os.Getenv("TOBIRA_BENCH_SCALE") == "full" }

// scale returns small normally and full under TOBIRA_BENCH_SCALE=full.
func scale(small, full int) int {
	if fullScale() {
		return full
	}
	return small
}

// Environment of the crash child (see TestMain).
const (
	envCrashChild  = "TOBIRA_TEST_CRASH_CHILD"
	envCrashOutbox = "TOBIRA_TEST_CRASH_OUTBOX"
	envCrashBroker = "TOBIRA_TEST_CRASH_BROKER"
	envCrashTotal  = "TOBIRA_TEST_CRASH_TOTAL"
)

func TestMain(m *testing.M) {
	if os.Getenv(envCrashChild) == "1" {
		os.Exit(crashChild())
	}
	if os.Getenv(envSnapChild) == "1" {
		os.Exit(snapChild())
	}
	if role := os.Getenv(envTicketChild); role != "" {
		os.Exit(ticketChild(role))
	}
	os.Exit(m.Run())
}

// seqEvent returns the event the tests make as sequence number seq: its
// content follows from seq, so that HQ's copy can be checked.
func seqEvent(seq uint64) proto.Event {
	ev := prototest.Event(int(seq))
	ev.Seq = seq
	ev.Detail = "event " + strconv.FormatUint(seq, 10)
	return ev
}

// appendBacklog appends events seq first..last in transactions of up to
// 10000 events.
func appendBacklog(t testing.TB, ob *tsync.Outbox, first, last uint64) {
	t.Helper()
	for lo := first; lo <= last; lo += 10000 {
		hi := min(lo+9999, last)
		evs := make([]proto.Event, 0, hi-lo+1)
		for s := lo; s <= hi; s++ {
			evs = append(evs, seqEvent(s))
		}
		got, err := ob.AppendAll(evs)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Seq != lo || got[len(got)-1].Seq != hi {
			t.Fatalf("AppendAll stored seq %d..%d, want %d..%d", got[0].Seq, got[len(got)-1].Seq, lo, hi)
		}
	}
}

// crashChild is the edge process of TestEdgeSurvivesSIGKILL: it appends
// events up to the total in small transactions while its Edge sends them,
// waits until HQ has acknowledged everything, and exits 0. The parent kills
// it at random moments.
func crashChild() int {
	total, err := strconv.ParseUint(os.Getenv(envCrashTotal), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	ob, err := tsync.OpenOutbox(os.Getenv(envCrashOutbox))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	defer ob.Close()
	e, err := tsync.NewEdge(tsync.EdgeConfig{
		Broker: os.Getenv(envCrashBroker), Site: "s1", Device: "d1", Batch: 50, Window: 4,
		AckTimeout: 2 * time.Second, RetryDelay: 100 * time.Millisecond,
		ConnectRetry: 100 * time.Millisecond, MaxReconnect: 300 * time.Millisecond,
	}, ob)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	for {
		last, err := ob.LastSeq()
		if err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			return 1
		}
		if last >= total {
			break
		}
		n := min(1+last%7, total-last) // 1..7 events per transaction
		evs := make([]proto.Event, 0, n)
		for s := last + 1; s <= last+n; s++ {
			evs = append(evs, seqEvent(s))
		}
		if _, err := ob.AppendAll(evs); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			return 1
		}
		e.Notify()
	}
	wctx, wcancel := context.WithTimeout(ctx, linkDeadline)
	defer wcancel()
	err = e.WaitDrained(wctx)
	cancel()
	<-done
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	return 0
}

// checkHQExactly checks that HQ holds seqEvent(1..n) of s1/d1, each once:
// every event when n is small, the counts and ack point always.
func checkHQExactly(t *testing.T, h *hq.Service, newEvents *atomic.Int64, n uint64) {
	t.Helper()
	if a, err := h.Acked("s1", "d1"); err != nil || a != n {
		t.Fatalf("HQ Acked = %d, %v; want %d", a, err, n)
	}
	if c, err := h.Count(); err != nil || uint64(c) != n {
		t.Fatalf("HQ Count = %d, %v; want %d", c, err, n)
	}
	if got := newEvents.Load(); uint64(got) != n {
		t.Fatalf("OnEvent called %d times, want %d", got, n)
	}
	if n > 200000 {
		return // the counts above already prove 1..n held once each
	}
	got, err := h.Events("s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	want := make([]proto.Event, 0, n)
	for s := uint64(1); s <= n; s++ {
		want = append(want, seqEvent(s))
	}
	if d := prototest.DiffEvents(got, want); d != "" {
		t.Fatalf("HQ holds other events than made: %s", d)
	}
}

// waitFor polls cond until it holds or linkDeadline passes (an integration
// deadline on an external broker).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(linkDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBacklogDrains(t *testing.T) {
	drainBacklog(t, uint64(scale(20000, 1000000)), 8)
}

// scaleDeadline is the integration deadline for draining n events: generous,
// it only stops a hung run.
func scaleDeadline(n uint64) time.Duration {
	return linkDeadline + time.Duration(n)*time.Millisecond
}

func TestEdgeDrainsAcrossBrokerRestarts(t *testing.T) {
	n := uint64(scale(20000, 200000))
	m := mosquittotest.Start(t)
	ob := newOutbox(t)
	appendBacklog(t, ob, 1, n)
	var newEvents atomic.Int64
	h := runHQ(t, m.URL(), &newEvents)
	e := runEdge(t, m.URL(), ob, 200, 4)
	for _, frac := range []int64{4, 2} { // kill the broker at 1/4 and at 1/2 of the drain
		waitFor(t, fmt.Sprintf("HQ to store 1/%d of the backlog", frac), func() bool {
			return newEvents.Load() >= int64(n)/frac
		})
		m.Restart(t)
	}
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(n))
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	checkHQExactly(t, h, &newEvents, n)
}

func TestEdgeThroughCuttingProxy(t *testing.T) {
	n := uint64(scale(3000, 50000))
	m := mosquittotest.Start(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("proxy seed %d", seed)
	maxCuts := scale(15, 200)
	p, err := faultproxy.Start(t.Context(), faultproxy.Config{
		Target: m.Addr(), MinBytes: 2000, MaxBytes: 40000, MaxCuts: maxCuts, Seed: seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ob := newOutbox(t)
	var newEvents atomic.Int64
	h := runHQ(t, m.URL(), &newEvents)
	e := runEdge(t, p.URL("tcp"), ob, 20, 4)
	for lo := uint64(1); lo <= n; lo += 100 { // appended while the link is cut again and again
		appendBacklog(t, ob, lo, min(lo+99, n))
		e.Notify()
	}
	// Each cut costs a reconnection back-off (up to MaxReconnect) and the
	// re-sending of the window: at full scale the 200 cuts alone take
	// about 100 s, so the deadline grows with them.
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(n)+time.Duration(maxCuts)*time.Second)
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatalf("%v (after %d cuts)", err, p.Cuts())
	}
	if p.Cuts() == 0 {
		t.Fatal("the proxy never cut the connection; the test proves nothing")
	}
	t.Logf("%d events through %d connections, %d cut", n, p.Connections(), p.Cuts())
	checkHQExactly(t, h, &newEvents, n)
}

func TestEdgeSurvivesSIGKILL(t *testing.T) {
	n := uint64(scale(6000, 100000))
	kills := scale(8, 25)
	m := mosquittotest.Start(t)
	var newEvents atomic.Int64
	h := runHQ(t, m.URL(), &newEvents)
	outbox := filepath.Join(t.TempDir(), "events.db")
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, seed))
	t.Logf("kill seed %d", seed)

	var logs bytes.Buffer
	var logMu sync.Mutex
	t.Cleanup(func() {
		if t.Failed() {
			logMu.Lock()
			t.Logf("child output:\n%s", logs.String())
			logMu.Unlock()
		}
	})
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashChild+"=1", envCrashOutbox+"="+outbox,
			envCrashBroker+"="+m.URL(), envCrashTotal+"="+strconv.FormatUint(n, 10))
		w := lockedBuffer{mu: &logMu, b: &logs}
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	killed := 0
	for i := 0; i < kills; i++ {
		cmd := child()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// A random moment: while it appends, sends, or waits for acks.
		// (Sleeping picks the moment; nothing waits on it for a result.)
		select {
		case err := <-exited:
			t.Logf("child %d finished before its kill: %v", i, err)
			i = kills
			continue
		case <-time.After(time.Duration(10+rnd.IntN(300)) * time.Millisecond):
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		killed++
	}
	cmd := child() // the last run finishes its work
	if err := cmd.Wait(); err != nil {
		t.Fatalf("last child: %v", err)
	}
	t.Logf("killed the edge %d times with SIGKILL", killed)
	if killed == 0 {
		t.Fatal("the edge was never killed; the test proves nothing")
	}
	waitFor(t, "HQ's OnEvent calls", func() bool { return uint64(newEvents.Load()) >= n })
	checkHQExactly(t, h, &newEvents, n)
}

// lockedBuffer lets two child pipes write into one buffer.
type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

// Write implements io.Writer.
func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
