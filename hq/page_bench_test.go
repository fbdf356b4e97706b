package hq_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/benchfixture"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// BenchmarkQueryPage times one page of 50 events on the bbolt store of
// benchfixture.Events (100,000 events; 10 million with
// TOBIRA_BENCH_SCALE=10m, make bench-full): the newest, one deep in the
// middle (by cursor), a site's, a credential's, and the denied decisions.
func BenchmarkQueryPage(b *testing.B) {
	n := benchfixture.Scale()
	s := benchfixture.Events(b, n)
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
