package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
)

// scrape GETs http://addr/metrics and parses the text exposition.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s/metrics: %v", addr, err)
	}
	return fams
}

// metricValue returns the value of the series of family name whose labels
// include labels (a histogram's sample count); ok is false without one.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, want := range labels {
			if have[k] != want {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// describing is a Registerer that only records the names of what is
// registered with it (from the collectors' descriptions: vectors without
// series yet, too).
type describing struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describing) Unregister(prometheus.Collector) bool { return false }

// registeredNames returns the names of every metric the edge's registry
// (as tobira run builds it) and HQ's serve.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	store, err := policy.Open(filepath.Join(dir, "policy.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ob, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	reg, _, err := newEdgeRegistry(&stores{policy: store, outbox: ob}, nil, nil, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	d := &describing{names: map[string]bool{}}
	// Describe, not Gather: vectors show no series before their first use.
	if err := d.Register(reg); err != nil {
		t.Fatal(err)
	}
	svc, err := hq.Open(hq.Config{Path: filepath.Join(dir, "hq.db"), Metrics: d})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	return d.names
}

// histogramSuffix is what PromQL adds to a histogram's name.
var histogramSuffix = regexp.MustCompile(`_(bucket|sum|count)$`)

// TestDashboardUsesRegisteredMetrics loads the Grafana dashboard and checks
// that every tobira metric its queries name is registered by tobira run or
// tobira-hq serve, so the dashboard cannot drift from the code.
func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana/tobira-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	names := registeredNames(t)
	used := map[string]bool{}
	word := regexp.MustCompile(`\btobira_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range word.FindAllString(tg.Expr, -1) {
				used[n] = true
				if !names[n] && !names[histogramSuffix.ReplaceAllString(n, "")] {
					t.Errorf("panel %q uses %s, which no registry defines", p.Title, n)
				}
			}
		}
	}
	if len(used) < 10 {
		t.Errorf("the dashboard uses only %d tobira metrics: %v", len(used), used)
	}
	var unused []string
	for n := range names {
		if strings.HasPrefix(n, "tobira_") && !used[n] && !used[n+"_bucket"] && !used[n+"_count"] {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	t.Logf("metrics not on the dashboard: %v", unused)
}

// edgeMetricsAddr finds the address tobira run's metrics listener got
// (listen = "127.0.0.1:0") in its log.
func edgeMetricsAddr(t *testing.T, log *syncWriter) string {
	t.Helper()
	re := regexp.MustCompile(`metrics listener serving /metrics"? addr=(\S+)`)
	log.mu.Lock()
	defer log.mu.Unlock()
	m := re.FindStringSubmatch(log.w.String())
	if m == nil {
		t.Fatalf("no metrics listener in the log:\n%s", log.w.String())
	}
	return m[1]
}

// checkRunMetrics scrapes both listeners after TestRunEndToEnd's two taps
// (one granted, one refused in lockdown) and checks the values moved.
func checkRunMetrics(t *testing.T, edgeAddr, hqAddr string, svc *hq.Service) {
	t.Helper()
	front := map[string]string{"door": "front"}
	// The edge's outbox drains once HQ acks; the ack may still be on its way.
	waitFor(t, "the edge's outbox drained (tobira_outbox_depth 0)", 10*time.Second, func() bool {
		v, ok := metricValue(scrape(t, edgeAddr), "tobira_outbox_depth", nil)
		return ok && v == 0
	})
	edge := scrape(t, edgeAddr)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tobira_taps_total", map[string]string{"door": "front", "result": "granted", "reason": "enrolled"}, 1},
		{"tobira_taps_total", map[string]string{"door": "front", "result": "denied", "reason": "locked_down"}, 1},
		{"tobira_read_seconds", front, 2},
		{"tobira_decide_seconds", front, 2},
		{"tobira_outbox_depth", nil, 0},
		{"tobira_outbox_oldest_event_age_seconds", nil, 0},
		{"tobira_link_connected", nil, 1},
		{"tobira_snapshot_version", nil, 1},
		{"tobira_door_mode", map[string]string{"door": "front", "mode": "locked_down"}, 1},
		{"tobira_door_mode", map[string]string{"door": "front", "mode": "normal"}, 0},
		{"tobira_door_state", map[string]string{"door": "front", "state": "locked"}, 1},
		{"tobira_door_alarm", map[string]string{"door": "front", "kind": "forced_open"}, 0},
	} {
		if v, ok := metricValue(edge, c.name, c.labels); !ok || v != c.want {
			t.Errorf("edge %s%v = %v (present %t), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if v, ok := metricValue(edge, "tobira_snapshot_age_seconds", nil); !ok || v < 0 || v > 120 {
		t.Errorf("edge tobira_snapshot_age_seconds = %v (present %t), want a few seconds", v, ok)
	}
	if _, ok := metricValue(edge, "tobira_clock_trusted", nil); !ok {
		t.Error("edge tobira_clock_trusted missing")
	}

	stored, err := svc.Count()
	if err != nil {
		t.Fatal(err)
	}
	dev := map[string]string{"site": "e2e", "device": "ctl-1"}
	hqFams := scrape(t, hqAddr)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tobira_hq_events_stored_total", nil, float64(stored)},
		{"tobira_hq_devices_online", nil, 1},
		{"tobira_hq_device_unacked_events", dev, 0},
	} {
		if v, ok := metricValue(hqFams, c.name, c.labels); !ok || v != c.want {
			t.Errorf("HQ %s%v = %v (present %t), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if stored < 2 {
		t.Errorf("HQ stores %d events, want the two decisions at least", stored)
	}
	for _, name := range []string{"tobira_hq_event_batches_total", "tobira_hq_store_commit_seconds"} {
		if v, ok := metricValue(hqFams, name, nil); !ok || v < 1 {
			t.Errorf("HQ %s = %v (present %t), want >= 1", name, v, ok)
		}
	}
	if v, ok := metricValue(hqFams, "tobira_hq_device_last_event_age_seconds", dev); !ok || v > 60 {
		t.Errorf("HQ tobira_hq_device_last_event_age_seconds = %v (present %t), want a recent event", v, ok)
	}
}
