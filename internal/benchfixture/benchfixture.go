// Package benchfixture builds the large stores the page benchmarks of hq
// and hq/console read (make bench at 100,000 rows, make bench-full at 10
// million): built once and cached under $TMPDIR, since a 10-million-row
// store takes many minutes to build.
package benchfixture

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// Scale is how many rows the page benchmarks hold: 10 million with
// TOBIRA_BENCH_SCALE=10m (make bench-full), else 100,000.
func Scale() int {
	if os.Getenv("TOBIRA_BENCH_SCALE") == "10m" {
		return 10_000_000
	}
	return 100_000
}

// RegistryScale is how many credentials the registry fixture holds: 1
// million with TOBIRA_BENCH_SCALE=10m, else 10,000. Not 10 million: an
// import into a site costs time in proportion to the site's size (about
// 17 µs per credential already there, measured in 20,000-row imports),
// so the fixture, built by imports of 100,000 rows, would take hours.
func RegistryScale() int {
	if os.Getenv("TOBIRA_BENCH_SCALE") == "10m" {
		return 1_000_000
	}
	return 10_000
}

// Event fixture shape: Devices devices of Sites sites (site s<d%10>,
// device d<ddd>); each credential is used by 10 events.
const (
	Devices = 100
	Sites   = 10
)

// EventCredential is the credential of event i (1-based, per device) of
// device d in the event store.
func EventCredential(i, d int) string { return fmt.Sprintf("02%016x", (i*Devices+d)/10) }

// Events returns a bbolt event store of n events over Devices devices,
// cached as $TMPDIR/tobira-hq-pages-<n>.db; tb's cleanup closes it.
func Events(tb testing.TB, n int) *hq.BoltStore {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("tobira-hq-pages-%d.db", n))
	build(tb, path, func(build string) error { return buildEvents(tb, build, n) })
	s, err := hq.OpenBoltStore(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// build makes path with fn (into path.tmp, renamed when done) unless it
// exists.
func build(tb testing.TB, path string, fn func(build string) error) {
	if _, err := os.Stat(path); err == nil {
		return
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	start := time.Now()
	if err := fn(tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("built %s in %v", path, time.Since(start).Round(time.Second))
}

// buildEvents writes the event store into path.
func buildEvents(tb testing.TB, path string, n int) error {
	s, err := hq.OpenBoltStore(path, nil)
	if err != nil {
		return err
	}
	const batch = 10_000
	per := n / Devices
	for d := range Devices {
		for first := 1; first <= per; first += batch {
			evs := make([]proto.Event, 0, batch)
			for i := first; i < first+batch && i <= per; i++ {
				ev := prototest.Event(i)
				ev.Seq = uint64(i)
				ev.Credential = EventCredential(i, d)
				evs = append(evs, ev)
			}
			eb, err := hq.NewEventBatch(fmt.Sprintf("s%d", d%Sites), fmt.Sprintf("d%03d", d), time.Now(), evs)
			if err == nil {
				_, err = s.StoreEvents(tb.Context(), []hq.EventBatch{eb})
			}
			if err != nil {
				s.Close()
				return err
			}
		}
	}
	return s.Close()
}

// RegistrySite is the site of the registry fixture's credentials.
const RegistrySite = "s0"

// RegistryCredential is the free-area ID of credential i of the registry
// fixture; its person is "p<i>" named "Person <i>".
func RegistryCredential(i int) string { return fmt.Sprintf("fa%010d", i) }

// Registry returns a registry holding n free-area credentials of n
// people with names at RegistrySite (the people have names but no
// records: a name lookup reads the credential's record, then the name), cached as
// $TMPDIR/tobira-hq-registry-<n>.db; tb's cleanup closes it.
func Registry(tb testing.TB, n int) *registry.Registry {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("tobira-hq-registry-%d.db", n))
	build(tb, path, func(build string) error { return buildRegistry(tb, build, n) })
	r, err := registry.Open(path, registry.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// buildRegistry imports the registry fixture into path in batches.
func buildRegistry(tb testing.TB, path string, n int) error {
	r, err := registry.Open(path, registry.Options{})
	if err != nil {
		return err
	}
	defer r.Close()
	const batch = 100_000
	for first := 0; first < n; first += batch {
		var creds strings.Builder
		creds.WriteString("type,free_area_id,person\n")
		names := map[string]string{}
		for i := first; i < min(first+batch, n); i++ {
			fmt.Fprintf(&creds, "freearea,%s,p%d\n", RegistryCredential(i), i)
			names[fmt.Sprintf("p%d", i)] = fmt.Sprintf("Person %d", i)
		}
		if _, err := r.ImportCSV(tb.Context(), RegistrySite, "credentials", "credentials.csv", strings.NewReader(creds.String())); err != nil {
			return err
		}
		if err := r.SetNames(RegistrySite, names); err != nil {
			return err
		}
	}
	return r.Close()
}
