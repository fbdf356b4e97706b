// Package benchfixture builds the large stores the page benchmarks of hq
// and hq/console read (make bench at 100,000 rows, make bench-full at 10
// million): built once and cached under $TMPDIR, since a 10-million-row
// store takes many minutes to build.
package benchfixture

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
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

// RegistryScale is how many credentials the registry fixtures hold: 10
// million with TOBIRA_BENCH_SCALE=10m, else 10,000.
func RegistryScale() int {
	if os.Getenv("TOBIRA_BENCH_SCALE") == "10m" {
		return 10_000_000
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
	os.RemoveAll(tmp)
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
