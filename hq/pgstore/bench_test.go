package pgstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// BenchmarkIngestVsCopy stores devices x perDevice events through
// StoreEvents (1,000-event batches, groupSize batches per transaction, as
// HQ's group commit makes them) and, into a second database with the same
// schema, COPYs the same rows with nothing else: the ratio ingest/copy is
// what dedup and ack keeping cost. On a durable server (fsync on), as a
// production one.
func BenchmarkIngestVsCopy(b *testing.B) {
	const devices, perDevice, batch, groupSize = 100, 2000, 1000, 8
	srv, err := pgtest.Start(context.Background(), pgtest.Options{Durable: true})
	if err != nil {
		pgtest.Unavailable(b, err)
	}
	defer srv.Stop()
	received := time.Now().UTC()
	var batches []hq.EventBatch
	for d := range devices {
		for first := 1; first <= perDevice; first += batch {
			evs := make([]proto.Event, 0, batch)
			for i := first; i < first+batch; i++ {
				ev := prototest.Event(i)
				ev.Seq = uint64(i)
				evs = append(evs, ev)
			}
			eb, err := hq.NewEventBatch("s1", fmt.Sprintf("d%03d", d), received, evs)
			if err != nil {
				b.Fatal(err)
			}
			batches = append(batches, eb)
		}
	}
	total := float64(devices * perDevice)
	var ingest, plain time.Duration
	for range b.N {
		ingest += timeIngest(b, srv, batches, groupSize)
		plain += timeCopy(b, srv, batches)
	}
	b.ReportMetric(total*float64(b.N)/ingest.Seconds(), "ingest-events/s")
	b.ReportMetric(total*float64(b.N)/plain.Seconds(), "copy-events/s")
	b.ReportMetric(plain.Seconds()/ingest.Seconds(), "ingest/copy")
}

// newDB returns a fresh migrated database on srv.
func newDB(b *testing.B, srv *pgtest.Server) string {
	url, err := srv.CreateDB(b.Context())
	if err == nil {
		_, err = pgstore.Migrate(b.Context(), url)
	}
	if err != nil {
		b.Fatal(err)
	}
	return url
}

// timeIngest stores batches through StoreEvents, groupSize at a time.
func timeIngest(b *testing.B, srv *pgtest.Server, batches []hq.EventBatch, groupSize int) time.Duration {
	s, err := pgstore.Open(b.Context(), newDB(b, srv), pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	for i := 0; i < len(batches); i += groupSize {
		if _, err := s.StoreEvents(b.Context(), batches[i:min(i+groupSize, len(batches))]); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// timeCopy COPYs the rows of batches into the events table, in
// transactions of the same size as timeIngest's, after making the
// partition.
func timeCopy(b *testing.B, srv *pgtest.Server, batches []hq.EventBatch) time.Duration {
	ctx := b.Context()
	url := newDB(b, srv)
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	day := batches[0].Received.Truncate(24 * time.Hour)
	if _, err := c.Exec(ctx, fmt.Sprintf(`CREATE TABLE p PARTITION OF events FOR VALUES FROM ('%s') TO ('%s')`,
		day.Format(time.RFC3339), day.Add(24*time.Hour).Format(time.RFC3339))); err != nil {
		b.Fatal(err)
	}
	cols := []string{"site", "device", "seq", "received", "time", "type", "door", "granted", "reason", "credential", "body"}
	start := time.Now()
	for i := 0; i < len(batches); i += 8 {
		var rows [][]any
		for _, eb := range batches[i:min(i+8, len(batches))] {
			for j, ev := range eb.Events {
				rows = append(rows, []any{eb.Site, eb.Device, int64(ev.Seq), eb.Received, ev.Time, ev.Type, ev.Door,
					ev.Granted, ev.Reason, strings.ToLower(ev.Credential), eb.JSON[j]})
			}
		}
		if _, err := c.CopyFrom(ctx, pgx.Identifier{"events"}, cols, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}
