package registry_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/policy"
)

// benchRecords is how many records the benchmark site holds: 1,000,000
// when TOBIRA_BENCH_SCALE is set (make bench-full), else 20,000.
func benchRecords() int {
	if os.Getenv("TOBIRA_BENCH_SCALE") != "" {
		return 1_000_000
	}
	return 20_000
}

// benchEntries returns entries first..first+n-1, of people named by tag.
func benchEntries(first, n int, tag string) []policy.Item {
	out := make([]policy.Item, n)
	for i := range out {
		out[i] = policy.Entry{Credential: cert(uint64(first + i + 1)), Person: fmt.Sprintf("p-%d-%s", first+i, tag)}
	}
	return out
}

// BenchmarkRegistry compares the backends on a site of benchRecords
// entries: Apply of a 100-record change, WriteFull of the site, and
// WriteDelta of a 1,000-record change (content hash cached). PostgreSQL
// runs durable (fsync on), as a production server.
func BenchmarkRegistry(b *testing.B) {
	n := benchRecords()
	eachBenchBackend(b, func(b *testing.B, r *registry.Registry) { benchSite(b, r, n) })
}

// eachBenchBackend runs bench as a sub-benchmark per backend, each on a
// new empty registry; PostgreSQL runs durable (fsync on), as a production
// server.
func eachBenchBackend(b *testing.B, bench func(b *testing.B, r *registry.Registry)) {
	srv, err := pgtest.Start(context.Background(), pgtest.Options{Durable: true})
	if err != nil {
		pgtest.Unavailable(b, err)
	}
	defer srv.Stop()
	opens := []struct {
		name string
		open func(b *testing.B) *registry.Registry
	}{
		{"bbolt", func(b *testing.B) *registry.Registry {
			r, err := registry.Open(filepath.Join(b.TempDir(), "registry.db"), registry.Options{Logger: discard})
			if err != nil {
				b.Fatal(err)
			}
			return r
		}},
		{"postgres", func(b *testing.B) *registry.Registry {
			url, err := srv.CreateDB(context.Background())
			if err == nil {
				_, err = pgstore.Migrate(context.Background(), url)
			}
			if err != nil {
				b.Fatal(err)
			}
			r, err := pgstore.OpenRegistry(context.Background(), url, registry.Options{Logger: discard})
			if err != nil {
				b.Fatal(err)
			}
			return r
		}},
	}
	for _, o := range opens {
		b.Run(o.name, func(b *testing.B) {
			r := o.open(b)
			defer r.Close()
			bench(b, r)
		})
	}
}

// benchSite fills site "s" of r with n entries and runs the
// sub-benchmarks.
func benchSite(b *testing.B, r *registry.Registry, n int) {
	ctx := context.Background()
	const chunk = 10_000
	for first := 0; first < n; first += chunk {
		if _, err := r.Apply(ctx, "s", registry.Change{Put: benchEntries(first, min(chunk, n-first), "a")}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Apply100", func(b *testing.B) {
		for i := range b.N {
			if _, err := r.Apply(ctx, "s", registry.Change{Put: benchEntries(i*100%n, 100, strconv.Itoa(i))}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "records/s")
	})
	b.Run(fmt.Sprintf("WriteFull%d", n), func(b *testing.B) {
		for range b.N {
			if _, err := r.WriteFull(ctx, "s", io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("WriteDelta1000", func(b *testing.B) {
		a, err := r.Apply(ctx, "s", registry.Change{Put: benchEntries(0, 1000, "delta")})
		if err == nil {
			_, _, err = r.ContentHash(ctx, "s")
		}
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if _, err := r.WriteDelta(ctx, "s", a.Rev-1, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
