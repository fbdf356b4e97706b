package sync

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/internal/clock"
)

// RegisterMetrics registers with reg the link's metrics, each read when
// scraped (nothing is updated on the event path): the outbox depth, the
// age of its oldest event, the last sequence number HQ acknowledged, and
// whether the link is connected. e may be nil (no link: not connected).
func RegisterMetrics(reg prometheus.Registerer, ob *Outbox, e *Edge, clk clock.Clock) error {
	if clk == nil {
		clk = clock.System{}
	}
	oldestAge := func() float64 {
		t, ok, err := ob.Oldest()
		if err != nil || !ok {
			return 0
		}
		return max(clk.Now().Sub(t).Seconds(), 0)
	}
	connected := func() float64 {
		if e != nil && e.Connected() {
			return 1
		}
		return 0
	}
	acked := func() float64 {
		if e == nil {
			return 0
		}
		return float64(e.Acked())
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tobira_outbox_depth",
			Help: "Events stored on the device and not yet acknowledged by HQ."},
			func() float64 { n, _ := ob.Depth(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tobira_outbox_oldest_event_age_seconds",
			Help: "Age of the oldest event waiting for HQ's acknowledgement (0 when the outbox is empty)."}, oldestAge),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tobira_outbox_acked_seq",
			Help: "Highest event sequence number HQ has acknowledged since start."}, acked),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tobira_link_connected",
			Help: "1 while the link to HQ's broker is connected and subscribed, 0 otherwise."}, connected),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
