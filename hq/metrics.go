package hq

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/proto"
)

// DefaultDeviceMetricsTTL is how long a device keeps its per-device series
// after its last events message (Config.DeviceMetricsTTL).
const DefaultDeviceMetricsTTL = 24 * time.Hour

// metrics are HQ's Prometheus metrics. Counters move on the ingest path;
// devices online and per-device lag are read when scraped.
type metrics struct {
	stored, batches, duplicates prometheus.Counter
	commit                      prometheus.Histogram
	refused                     *prometheus.CounterVec
	devices                     *deviceLag
}

// Refusal reasons of tobira_hq_refused_messages_total.
const (
	refusedMalformed       = "malformed"        // payload or topic does not follow the contract
	refusedWrongDevice     = "wrong_device"     // payload names another device than its topic
	refusedUnexpectedTopic = "unexpected_topic" // a topic HQ does not serve
	refusedStoreError      = "store_error"      // the store failed; the device sends again
	refusedSeqAhead        = "seq_ahead"        // events too far beyond the device's ack point (Limits.SeqWindow)
	refusedRateLimited     = "rate_limited"     // new events beyond the device's event bucket
	refusedByteLimited     = "byte_limited"     // new event bytes beyond the device's byte bucket
	refusedTooLarge        = "too_large"        // a payload beyond its leaf's bound (maxPayload)
	refusedNeedRepeat      = "need_repeat"      // chunks asked again within Limits.NeedInterval (not re-sent)
	refusedRequestLimited  = "request_limited"  // marks, marks-get or ticket-check beyond the device's request bucket
	refusedMark            = "mark_refused"     // a ticket mark HQ judged false (docs/HQ.md, "Ticket marks between gates")
	refusedTicketConflict  = "ticket_conflict"  // a ticket entry conflicting with another gate's (stored, reported)
)

// errWrongDevice marks an events message whose payload names another
// device than its topic (counted apart from other malformed messages).
var errWrongDevice = errors.New("wrong device")

// newMetrics creates HQ's metrics and registers them with reg (nil: kept
// but not exported).
func newMetrics(reg prometheus.Registerer, h *Service, ttl time.Duration) (*metrics, error) {
	m := &metrics{
		stored: prometheus.NewCounter(prometheus.CounterOpts{Name: "tobira_hq_events_stored_total",
			Help: "Events stored, not counting duplicates."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "tobira_hq_event_batches_total",
			Help: "Events messages (batches) stored."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "tobira_hq_event_duplicates_total",
			Help: "Events received again that HQ already held (dropped and acknowledged again)."}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tobira_hq_store_commit_seconds",
			Help:    "Time of one group commit of events to the store (fsync included).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tobira_hq_refused_messages_total",
			Help: "Messages refused, by reason (malformed, wrong_device, unexpected_topic, store_error, seq_ahead, rate_limited, byte_limited, too_large, need_repeat)."}, []string{"reason"}),
		devices: newDeviceLag(h.clk, cmpDuration(ttl, DefaultDeviceMetricsTTL)),
	}
	if reg == nil {
		return m, nil
	}
	online := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tobira_hq_devices_online",
		Help: "Devices whose last word (status or will) says online."}, func() float64 { return float64(h.relay.online()) })
	for _, c := range []prometheus.Collector{m.stored, m.batches, m.duplicates, m.commit, m.refused, online, m.devices} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// cmpDuration is d, or def when d is not positive.
func cmpDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// refusedReason names the refusal reason of an ingest error.
func refusedReason(err error) string {
	switch {
	case errors.Is(err, errWrongDevice):
		return refusedWrongDevice
	case errors.Is(err, proto.ErrMalformed):
		return refusedMalformed
	default:
		return refusedStoreError
	}
}

// committed counts one group commit of reqs that took d.
func (m *metrics) committed(reqs []*storeReq, d time.Duration, err error) {
	m.commit.Observe(d.Seconds())
	for _, r := range reqs {
		if err != nil {
			m.refused.WithLabelValues(refusedStoreError).Inc()
			continue
		}
		m.batches.Inc()
		m.stored.Add(float64(len(r.res.Added)))
		m.duplicates.Add(float64(r.res.Dups))
		last := uint64(0)
		for _, ev := range r.batch.Events {
			last = max(last, ev.Seq)
		}
		m.devices.saw(r.batch.Site, r.batch.Device, last, r.res.Ack)
	}
}

// deviceLag keeps, per device, the highest sequence number received, the
// acknowledgement point and when its last events message came. A device
// not heard from for ttl loses its series (the label set stays bounded
// by the devices active in the last ttl).
type deviceLag struct {
	clk clock.Clock
	ttl time.Duration

	mu      sync.Mutex
	devices map[[2]string]*deviceSeen

	gap, age *prometheus.Desc
}

// deviceSeen is what deviceLag knows of one device.
type deviceSeen struct {
	received, acked uint64
	at              time.Time
}

func newDeviceLag(clk clock.Clock, ttl time.Duration) *deviceLag {
	return &deviceLag{clk: clk, ttl: ttl, devices: map[[2]string]*deviceSeen{},
		gap: prometheus.NewDesc("tobira_hq_device_unacked_events",
			"Highest sequence number received from the device minus the one HQ acknowledges (events held beyond a gap).",
			[]string{"site", "device"}, nil),
		age: prometheus.NewDesc("tobira_hq_device_last_event_age_seconds",
			"Seconds since the device's last events message was stored.", []string{"site", "device"}, nil),
	}
}

// saw records an events message of a device.
func (l *deviceLag) saw(site, device string, received, acked uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]string{site, device}
	d := l.devices[k]
	if d == nil {
		d = &deviceSeen{}
		l.devices[k] = d
	}
	d.received, d.acked, d.at = max(d.received, received), acked, l.clk.Now()
}

// Describe implements prometheus.Collector.
func (l *deviceLag) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.gap
	ch <- l.age
}

// Collect implements prometheus.Collector; it drops the devices not seen
// for ttl.
func (l *deviceLag) Collect(ch chan<- prometheus.Metric) {
	now := l.clk.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, d := range l.devices {
		age := now.Sub(d.at)
		if age > l.ttl {
			delete(l.devices, k)
			continue
		}
		gap := uint64(0)
		if d.received > d.acked {
			gap = d.received - d.acked
		}
		ch <- prometheus.MustNewConstMetric(l.gap, prometheus.GaugeValue, float64(gap), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(l.age, prometheus.GaugeValue, age.Seconds(), k[0], k[1])
	}
}
