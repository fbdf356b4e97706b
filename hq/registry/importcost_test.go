package registry_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// freeAreaCSV is a credentials CSV of free-area IDs first..first+n-1, in
// the order of perm (nil: ascending).
func freeAreaCSV(first, n int, perm []int) string {
	var s strings.Builder
	s.WriteString("type,free_area_id,person\n")
	for i := range n {
		if perm != nil {
			i = perm[i]
		}
		fmt.Fprintf(&s, "freearea,fa%010d,p%010d\n", first+i, first+i)
	}
	return s.String()
}

// costRatio returns how many times longer fn(big) takes than fn(small),
// each the fastest of three runs on a new bbolt registry.
func costRatio(t *testing.T, small, big int, fn func(r *registry.Registry, n int) error) float64 {
	t.Helper()
	fastest := func(n int) time.Duration {
		best := time.Duration(1 << 62)
		for range 3 {
			r, err := registry.Open(filepath.Join(t.TempDir(), "r.db"), registry.Options{Logger: discard})
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			err = fn(r, n)
			best = min(best, time.Since(t0))
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		return best
	}
	s, b := fastest(small), fastest(big)
	t.Logf("%d: %v, %d: %v", small, s, big, b)
	return float64(b) / float64(s)
}

// TestChangeCostLinear checks that a change into a new site (bbolt, one
// transaction) costs time in proportion to its size with keys in random
// order: 8x the records must take well under 64x the time (the square,
// which keys put out of order into one bbolt node cost before a change's
// keys were sorted). A ratio, not a time: it holds on a slow machine.
func TestChangeCostLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 x 3 x 45,000 records")
	}
	const small, big, most = 5_000, 40_000, 24.0
	cases := []struct {
		name string
		fn   func(r *registry.Registry, n int) error
	}{
		{"Apply", func(r *registry.Registry, n int) error {
			ch := registry.Change{}
			for _, i := range rand.Perm(n) {
				ch.Put = append(ch.Put, policy.Entry{Credential: cert(uint64(i + 1)), Person: fmt.Sprintf("p%d", i)})
			}
			_, err := r.Apply(context.Background(), "s", ch)
			return err
		}},
		{"SetNames", func(r *registry.Registry, n int) error {
			names := make(map[string]string, n) // a map: random order
			for i := range n {
				names[fmt.Sprintf("p%d", i)] = fmt.Sprintf("Person %d", i)
			}
			return r.SetNames("s", names)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := costRatio(t, small, big, c.fn); got > most {
				t.Errorf("%d records took %.1fx the time of %d, want below %.0fx (linear: 8x)", big, got, small, most)
			}
		})
	}
}

// BenchmarkImportIntoSite times a 20,000-row credentials import into a
// site of 100,000, 200,000 and 400,000 credentials on each backend
// (filled by the same imports; each iteration fills a new site), and
// reports the last one's time over the first's (1: the cost does not grow
// with the site).
func BenchmarkImportIntoSite(b *testing.B) {
	const chunk = 20_000
	sizes := []int{100_000, 200_000, 400_000}
	eachBenchBackend(b, func(b *testing.B, r *registry.Registry) {
		ctx := context.Background()
		times := map[int]time.Duration{}
		for i := range b.N {
			site := fmt.Sprintf("s%d", i) // a new site each time: every import writes
			for first := 0; first <= sizes[len(sizes)-1]; first += chunk {
				t0 := time.Now()
				if _, err := r.ImportCSV(ctx, site, "credentials", "c.csv", strings.NewReader(freeAreaCSV(first, chunk, nil))); err != nil {
					b.Fatal(err)
				}
				times[first] += time.Since(t0)
			}
		}
		for _, n := range sizes {
			b.ReportMetric(float64(times[n].Milliseconds())/float64(b.N), fmt.Sprintf("ms/import@%dk", n/1000))
		}
		b.ReportMetric(float64(times[sizes[2]])/float64(times[sizes[0]]), "ratio-400k/100k")
	})
}
