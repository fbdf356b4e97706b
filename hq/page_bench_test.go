package hq_test

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

// benchEvents is how many events the page benchmarks hold: 10 million
// with TOBIRA_BENCH_SCALE=10m (make bench-full; the store file is built
// once and cached under $TMPDIR), else 100,000.
func benchEvents() int {
	if os.Getenv("TOBIRA_BENCH_SCALE") == "10m" {
		return 10_000_000
	}
	return 100_000
}

// benchStore returns a bbolt store of n events over 100 devices of 10
// sites, each credential used by 10 events, cached under $TMPDIR.
func benchStore(b *testing.B, n int) *hq.BoltStore {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("tobira-hq-pages-%d.db", n))
	if _, err := os.Stat(path); err != nil {
		build := path + ".tmp"
		os.Remove(build)
		s, err := hq.OpenBoltStore(build, nil)
		if err != nil {
			b.Fatal(err)
		}
		const devices, batch = 100, 10_000
		per := n / devices
		for d := range devices {
			for first := 1; first <= per; first += batch {
				evs := make([]proto.Event, 0, batch)
				for i := first; i < first+batch && i <= per; i++ {
					ev := prototest.Event(i)
					ev.Seq = uint64(i)
					ev.Credential = fmt.Sprintf("02%016x", (i*devices+d)/10)
					evs = append(evs, ev)
				}
				eb, err := hq.NewEventBatch(fmt.Sprintf("s%d", d%10), fmt.Sprintf("d%03d", d), time.Now(), evs)
				if err == nil {
					_, err = s.StoreEvents(b.Context(), []hq.EventBatch{eb})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(build, path); err != nil {
			b.Fatal(err)
		}
	}
	s, err := hq.OpenBoltStore(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkQueryPage times one page of 50 events on the bbolt store:
// the newest, one deep in the middle (by cursor), a site's, a
// credential's, and the denied decisions.
func BenchmarkQueryPage(b *testing.B) {
	n := benchEvents()
	s := benchStore(b, n)
	mid := hq.Cursor{Time: prototest.Base.Add(time.Duration(n/200) * time.Second), Site: "s5", Device: "d055", Seq: uint64(n / 200)}
	no := false
	tests := []struct {
		name  string
		q     hq.EventQuery
		after hq.Cursor
	}{
		{"newest", hq.EventQuery{}, hq.Cursor{}},
		{"middle", hq.EventQuery{}, mid},
		{"site", hq.EventQuery{Site: "s3"}, mid},
		{"credential", hq.EventQuery{Credential: fmt.Sprintf("02%016x", n/20)}, hq.Cursor{}},
		{"denied", hq.EventQuery{Granted: &no}, mid},
	}
	for _, tt := range tests {
		b.Run(fmt.Sprintf("%s/events=%d", tt.name, n), func(b *testing.B) {
			for b.Loop() {
				p, err := s.QueryPage(b.Context(), tt.q, tt.after, 50)
				if err != nil || len(p.Events) == 0 {
					b.Fatalf("page: %d events, %v", len(p.Events), err)
				}
			}
		})
	}
}
