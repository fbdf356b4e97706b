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
