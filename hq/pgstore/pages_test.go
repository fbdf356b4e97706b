package pgstore_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// TestPagePlans checks with EXPLAIN that a page of each filter is a
// range scan of the filter's index (backward, with no sort), on a table
// of 20,000 events over 20 devices of 2 sites.
func TestPagePlans(t *testing.T) {
	url := migrated(t)
	s := open(t, url, pgstore.Options{})
	at := time.Now().UTC()
	for d := range 20 {
		var evs []proto.Event
		for i := 1; i <= 1000; i++ {
			ev := prototest.Event(i)
			ev.Seq, ev.Door = uint64(i), fmt.Sprintf("door-%d", i%10)
			ev.Granted = i%50 != 0
			if !ev.Granted {
				ev.Reason = "revoked"
			}
			evs = append(evs, ev)
		}
		b, err := hq.NewEventBatch(fmt.Sprintf("s%d", d%2), fmt.Sprintf("d%02d", d), at, evs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.StoreEvents(t.Context(), []hq.EventBatch{b}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	if _, err := c.Exec(t.Context(), `ANALYZE events`); err != nil {
		t.Fatal(err)
	}
	no := false
	after := hq.Cursor{Time: prototest.Base.Add(500 * time.Second), Site: "s1", Device: "d05", Seq: 500}
	tests := []struct {
		name  string
		q     hq.EventQuery
		index string // the partition's index name has it
	}{
		{"everything", hq.EventQuery{}, "time_site_device_seq_idx"},
		{"site", hq.EventQuery{Site: "s1"}, "site_time_device_seq_idx"},
		{"device", hq.EventQuery{Device: "d03"}, "device_time_site_seq_idx"},
		{"site and device", hq.EventQuery{Site: "s1", Device: "d03"}, "device_time_site_seq_idx"},
		{"door", hq.EventQuery{Door: "door-3"}, "door_time_site_device_seq_idx"},
		{"credential", hq.EventQuery{Credential: prototest.Event(7).Credential}, "credential_time_site_device_seq_idx"},
		{"reason", hq.EventQuery{Reason: "revoked"}, "reason_time_site_device_seq_idx"},
		{"denied", hq.EventQuery{Granted: &no}, "time_site_device_seq_idx1"},
		{"time range", hq.EventQuery{From: prototest.Base.Add(100 * time.Second), To: prototest.Base.Add(200 * time.Second)}, "time_site_device_seq_idx"},
	}
	for _, tt := range tests {
		for _, cur := range []hq.Cursor{{}, after} {
			t.Run(fmt.Sprintf("%s/cursor=%v", tt.name, !cur.IsZero()), func(t *testing.T) {
				sql, args := pgstore.PageSQL(tt.q, cur, 51)
				rows, err := c.Query(t.Context(), "EXPLAIN "+sql, args...)
				if err != nil {
					t.Fatal(err)
				}
				lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				plan := strings.Join(lines, "\n")
				// A backward scan in page order; or, for a value with few
				// events (a credential's 20), a bitmap scan of the index and a
				// sort of those few.
				ordered := strings.Contains(plan, "Index Scan Backward using") && !strings.Contains(plan, "Sort")
				few := strings.Contains(plan, "Bitmap Index Scan on")
				if !strings.Contains(plan, tt.index+" ") || strings.Contains(plan, "Seq Scan") || !ordered && !few {
					t.Fatalf("plan does not range-scan the %s index:\n%s", tt.index, plan)
				}
			})
		}
	}
}
