package console

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/benchfixture"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// benchConsole serves a console of cfg (its accounts, audit log and
// parameters set here) and returns a client logged in as an
// administrator.
func benchConsole(b *testing.B, cfg Config) (*Server, *httptest.Server, *http.Client) {
	b.Helper()
	st := testStores(b, []auth.User{{Name: "admin", Role: auth.Administrator, Sites: []string{auth.AllSites}}})
	cfg.Accounts, cfg.Audit, cfg.Params = st.Accounts, st.Audit, cheap
	con, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(con)
	b.Cleanup(srv.Close)
	c := newClient()
	res, err := c.PostForm(srv.URL+"/login", url.Values{"user": {"admin"}, "password": {testPassword}})
	if err != nil || res.StatusCode != http.StatusSeeOther {
		b.Fatalf("login: %v %v", res, err)
	}
	res.Body.Close()
	return con, srv, c
}

// fixtureNames gives the events of benchfixture.Events names from the
// registry fixture: event credential k is the registry's credential
// k mod n, so that every lookup finds a credential, a person and a name
// in the n-credential registry (the costly path). Other credentials (the
// registry's own, on its record pages) are looked up as they are.
type fixtureNames struct {
	reg *registry.Registry
	n   int
}

// Name implements Names.
func (f fixtureNames) Name(_, cred string) (string, bool) {
	k, err := strconv.ParseUint(strings.TrimPrefix(cred, "02"), 16, 64)
	if err != nil {
		return f.reg.Name(benchfixture.RegistrySite, cred)
	}
	id := benchfixture.RegistryCredential(int(k % uint64(f.n)))
	return f.reg.Name(benchfixture.RegistrySite, "02"+hex.EncodeToString([]byte(id)))
}

// BenchmarkConsolePages times console pages through the HTTP handler (a
// logged-in administrator on loopback, the page rendered whole) over
// hq.Service on the event store of benchfixture.Events (100,000 events;
// 10 million with TOBIRA_BENCH_SCALE=10m), with people's names from the
// registry of benchfixture.RegistryScale credentials (every row's name
// found): the events page newest first,
// a deep page by cursor, one site's, one credential's (10 events), one
// device's (no index: the site's events scanned), and the fleet of 100
// devices.
func BenchmarkConsolePages(b *testing.B) {
	n := benchfixture.Scale()
	store := benchfixture.Events(b, n)
	rn := benchfixture.RegistryScale()
	reg := benchfixture.Registry(b, rn)
	svc, err := hq.Open(hq.Config{Store: store, Path: filepath.Join(b.TempDir(), "hq.db")}) // Path: the ticket marks
	if err != nil {
		b.Fatal(err)
	}
	_, srv, c := benchConsole(b, Config{HQ: svc, Names: fixtureNames{reg: reg, n: rn}})
	if name, ok := (fixtureNames{reg: reg, n: rn}).Name("s0", benchfixture.EventCredential(7, 3)); !ok || !strings.HasPrefix(name, "Person ") {
		b.Fatalf("the registry fixture gives no name: %q", name)
	}
	deep := hq.Cursor{Time: prototest.Base.Add(time.Duration(n/200) * time.Second), Site: "s5", Device: "d055", Seq: uint64(n / 200)}
	pages := []benchPage{
		{"events_newest", "/events", "<tr class="},
		{"events_deep", "/events?after=" + url.QueryEscape(deep.String()), "<tr class="},
		{"events_site", "/events?site=s3", "<tr class="},
		{"events_credential", "/events?credential=" + fmt.Sprintf("02%016x", n/20), "<tr class="},
		{"events_device", "/events?device=d042", "<tr class="},
		{"fleet", "/fleet", `id="device-s0-d000"`},
	}
	timePages(b, srv.URL, c, fmt.Sprintf("events=%d/credentials=%d", n, rn), pages)
}

// benchPage is a page a benchmark loads: its path, and what its body
// must contain.
type benchPage struct{ name, path, want string }

// timePages runs a sub-benchmark per page (named page/label): it loads
// the page with c from the server at base, checks it, and reports the
// p50 and p99 of the load times.
func timePages(b *testing.B, base string, c *http.Client, label string, pages []benchPage) {
	for _, pg := range pages {
		b.Run(pg.name+"/"+label, func(b *testing.B) {
			var ms []float64
			for b.Loop() {
				t0 := time.Now()
				res, err := c.Get(base + pg.path)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
				if res.StatusCode != http.StatusOK || !strings.Contains(string(body), pg.want) {
					b.Fatalf("%s: %d %.300s", pg.path, res.StatusCode, body)
				}
			}
			reportPercentiles(b, ms, "ms")
		})
	}
}

// reportPercentiles reports the p50 and p99 of xs (in unit).
func reportPercentiles(b *testing.B, xs []float64, unit string) {
	if len(xs) == 0 {
		return
	}
	slices.Sort(xs)
	b.ReportMetric(xs[len(xs)/2], "p50-"+unit)
	b.ReportMetric(xs[min(len(xs)-1, len(xs)*99/100)], "p99-"+unit)
}

// BenchmarkLiveDelay times the live feed: from the moment HQ hands a
// stored event to the console (Server.Publish, which hq.Service calls
// from OnEvent once the event is committed) to its line arriving at a
// connected browser's server-sent-event stream over loopback HTTP, one
// event at a time; it reports the p50 and p99 delay.
func BenchmarkLiveDelay(b *testing.B) {
	f := &fakeHQ{results: map[string]proto.Result{}}
	con, srv, c := benchConsole(b, Config{HQ: f})
	req, _ := http.NewRequestWithContext(b.Context(), http.MethodGet, srv.URL+"/live/stream", nil)
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	r := bufio.NewReader(res.Body)
	if line, _ := r.ReadString('\n'); line != ": live\n" {
		b.Fatalf("first line %q", line)
	}
	var us []float64
	seq := uint64(0)
	for b.Loop() {
		seq++
		ev := proto.Event{Seq: seq, Type: proto.TypeDecision, Door: "main", Granted: true, Reason: "ok", Time: time.Now()}
		t0 := time.Now()
		con.Publish("s0", "d000", ev)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, "data: ") {
				if !strings.Contains(line, fmt.Sprintf(`"seq":%d,`, seq)) {
					b.Fatalf("event %d: got %q", seq, line)
				}
				break
			}
		}
		us = append(us, float64(time.Since(t0).Nanoseconds())/1000)
	}
	reportPercentiles(b, us, "µs")
}
