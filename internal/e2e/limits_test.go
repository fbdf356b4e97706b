package e2e_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
)

// TestBacklogDrainNotLimited: a device that kept a 100,000-event backlog
// (TOBIRA_BENCH_SCALE=full: 1,000,000) drains it through a real
// mosquitto into an HQ with the default per-device limits (hq.Limits),
// batch 1000 and window 32 as the drain benchmark: every event is stored
// once and acknowledged, and HQ refuses nothing.
func TestBacklogDrainNotLimited(t *testing.T) {
	h := drainBacklog(t, uint64(scale(100000, 1000000)), 32)
	devs, err := h.Fleet()
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range devs {
		if len(dev.Refused) > 0 {
			t.Fatalf("HQ refused messages of %s/%s during a legitimate drain: %v, last %+v", dev.Site, dev.Device, dev.Refused, dev.LastRefusal)
		}
	}
}

// drainBacklog makes a backlog of n events in an outbox, drains it through
// a real mosquitto into an HQ with the default limits (batch 1000, window
// batches in flight), checks that HQ holds each event once, and returns
// HQ.
func drainBacklog(t *testing.T, n uint64, window int) *hq.Service {
	t.Helper()
	m := mosquittotest.Start(t)
	ob := newOutbox(t)
	appendBacklog(t, ob, 1, n)
	var newEvents atomic.Int64
	h := runHQ(t, m.URL(), &newEvents)
	start := time.Now()
	e := runEdge(t, m.URL(), ob, 1000, window)
	ctx, cancel := context.WithTimeout(t.Context(), scaleDeadline(n))
	defer cancel()
	if err := e.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("drained %d events in %v (%.0f events/s), batch 1000, window %d", n, d, float64(n)/d.Seconds(), window)
	checkHQExactly(t, h, &newEvents, n)
	return h
}
