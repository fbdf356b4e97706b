package controller

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/policy"
)

// TapRecorder counts taps for monitoring (Metrics). It is called on the
// tap path, after the lock has been driven, and must not block.
type TapRecorder interface {
	RecordTap(Tap)
}

// Metrics counts the taps of every reader loop in Prometheus form: taps by
// door, result and reason, read and decide latency, card errors by kind
// and PIN refusals. Its counters are updated once per tap; everything else
// about the controller is read at scrape time (RegisterStateMetrics).
type Metrics struct {
	taps       *prometheus.CounterVec
	read       *prometheus.HistogramVec
	decide     *prometheus.HistogramVec
	cardErrors *prometheus.CounterVec
	pinRefused *prometheus.CounterVec
}

// latencyBuckets spans a tap's parts: decisions take microseconds, card
// reads hundreds of milliseconds, PIN entry seconds.
var latencyBuckets = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewMetrics creates the tap metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		taps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tobira_taps_total",
			Help: "Cards presented, by door, result (granted, denied) and decision reason."}, []string{"door", "result", "reason"}),
		read: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tobira_read_seconds",
			Help: "Time spent talking to the card and verifying its certificate (PIN entry included).", Buckets: latencyBuckets}, []string{"door"}),
		decide: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tobira_decide_seconds",
			Help: "Time policy took to decide, from the snapshot.", Buckets: latencyBuckets}, []string{"door"}),
		cardErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tobira_card_errors_total",
			Help: "Taps whose card could not be identified, by door and kind (the decision reason it caused)."}, []string{"door", "kind"}),
		pinRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tobira_pin_refusals_total",
			Help: "Taps refused for the PIN, by door and reason (pin_wrong, pin_nearly_blocked, pin_blocked, pin_not_entered)."}, []string{"door", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.taps, m.read, m.decide, m.cardErrors, m.pinRefused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// RecordTap implements TapRecorder.
func (m *Metrics) RecordTap(t Tap) {
	result := "denied"
	if t.Decision.Granted {
		result = "granted"
	}
	reason := string(t.Decision.Reason)
	m.taps.WithLabelValues(t.Door, result, reason).Inc()
	m.read.WithLabelValues(t.Door).Observe(t.ReadTime.Seconds())
	m.decide.WithLabelValues(t.Door).Observe(t.DecideTime.Seconds())
	if t.ReadErr == nil {
		return
	}
	if isPINRefusal(t.Decision.Reason) {
		m.pinRefused.WithLabelValues(t.Door, reason).Inc()
		return
	}
	m.cardErrors.WithLabelValues(t.Door, reason).Inc()
}

// isPINRefusal tells the reasons that refuse a tap for its PIN.
func isPINRefusal(r policy.Reason) bool {
	switch r {
	case policy.ReasonPINWrong, policy.ReasonPINNearlyBlocked, policy.ReasonPINBlocked, policy.ReasonPINNotEntered:
		return true
	}
	return false
}

// FreshnessSource is what the state metrics need of the snapshot store
// (policy.Store).
type FreshnessSource interface {
	Freshness() (policy.Freshness, error)
	TrustTime(now time.Time) (trusted time.Time, ok bool)
}

// doorStates are the values of DoorState, one time series each.
var doorStates = []string{"forced_open", "held_open", "tamper", "fire", "open", "unlocked", "locked"}

// alarmKinds are the standing alarms of a door, by the Kind that raises
// them.
var alarmKinds = []struct {
	kind string
	on   func(door.Status) bool
}{
	{string(door.KindForcedOpen), func(s door.Status) bool { return s.ForcedOpen }},
	{string(door.KindHeldPreAlarm), func(s door.Status) bool { return s.HeldPreAlarm }},
	{string(door.KindHeldOpen), func(s door.Status) bool { return s.HeldOpen }},
	{string(door.KindFireRelease), func(s door.Status) bool { return s.Fire }},
	{string(door.KindTamper), func(s door.Status) bool { return s.Tamper }},
}

// stateCollector reads the controller's state when scraped: snapshot
// version and age, revocation data age, clock trust, and each door's
// state, mode and standing alarms.
type stateCollector struct {
	store FreshnessSource
	doors []StatusDoor
	clk   clock.Clock

	version, snapshotAge, revocationAge, clockTrusted *prometheus.Desc
	doorState, doorMode, doorAlarm                    *prometheus.Desc
}

// RegisterStateMetrics registers with reg a collector that reads, at scrape
// time, the snapshot's version and age, the revocation data's age, whether
// the clock is trusted, and each door's state, mode and standing alarms.
func RegisterStateMetrics(reg prometheus.Registerer, store FreshnessSource, doors []StatusDoor, clk clock.Clock) error {
	if store == nil {
		return errors.New("controller: state metrics need the snapshot store")
	}
	if clk == nil {
		clk = clock.System{}
	}
	return reg.Register(&stateCollector{store: store, doors: doors, clk: clk,
		version: prometheus.NewDesc("tobira_snapshot_version", "Version of the allowlist snapshot in force (0: none yet).", nil, nil),
		snapshotAge: prometheus.NewDesc("tobira_snapshot_age_seconds",
			"Seconds since the snapshot in force was applied (since start for the one found on disk); absent without a snapshot.", nil, nil),
		revocationAge: prometheus.NewDesc("tobira_revocation_data_age_seconds",
			"Seconds since the snapshot's revocation data was current (its revocations_at); absent when HQ sets none.", nil, nil),
		clockTrusted: prometheus.NewDesc("tobira_clock_trusted", "1 when the device's clock is trusted, 0 when it is not.", nil, nil),
		doorState: prometheus.NewDesc("tobira_door_state",
			"1 for the door's current state (forced_open, held_open, tamper, fire, open, unlocked, locked), 0 for the others.", []string{"door", "state"}, nil),
		doorMode: prometheus.NewDesc("tobira_door_mode", "1 for the door's mode in force, 0 for the others.", []string{"door", "mode"}, nil),
		doorAlarm: prometheus.NewDesc("tobira_door_alarm",
			"1 while the alarm of that kind stands at the door (forced_open, held_open_prealarm, held_open, fire_release, tamper).", []string{"door", "kind"}, nil),
	})
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.version, c.snapshotAge, c.revocationAge, c.clockTrusted, c.doorState, c.doorMode, c.doorAlarm} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.clk.Now()
	f, err := c.store.Freshness()
	if err == nil { // without the store's facts, the snapshot series are left out of this scrape
		c.collectFreshness(ch, now, f)
	}
	_, trusted := c.store.TrustTime(now)
	ch <- prometheus.MustNewConstMetric(c.clockTrusted, prometheus.GaugeValue, bool01(trusted))
	for _, d := range c.doors {
		name, s := d.Name(), d.Status()
		state := DoorState(s)
		for _, st := range doorStates {
			ch <- prometheus.MustNewConstMetric(c.doorState, prometheus.GaugeValue, bool01(st == state), name, st)
		}
		for _, m := range door.Modes {
			ch <- prometheus.MustNewConstMetric(c.doorMode, prometheus.GaugeValue, bool01(m == s.Mode), name, string(m))
		}
		for _, a := range alarmKinds {
			ch <- prometheus.MustNewConstMetric(c.doorAlarm, prometheus.GaugeValue, bool01(a.on(s)), name, a.kind)
		}
	}
}

// collectFreshness sends the snapshot version and the ages of the snapshot
// and of its revocation data.
func (c *stateCollector) collectFreshness(ch chan<- prometheus.Metric, now time.Time, f policy.Freshness) {
	ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(f.Version))
	if f.Version > 0 && !f.AppliedAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.snapshotAge, prometheus.GaugeValue, now.Sub(f.AppliedAt).Seconds())
	}
	if !f.RevocationsAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.revocationAge, prometheus.GaugeValue, now.Sub(f.RevocationsAt).Seconds())
	}
}

// bool01 is 1 for true and 0 for false.
func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
