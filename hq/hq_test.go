package hq_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers (log handlers).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openHQ opens an HQ service on b's store at loc with logs into buf (nil:
// test output).
func openHQ(t *testing.T, b backend, loc string, buf *syncBuffer) *hq.Service {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	if buf != nil {
		log = slog.New(slog.NewTextHandler(buf, nil))
	}
	h, err := hq.Open(b.config(t, hq.Config{Logger: log}, loc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestHQAcksOnlyContiguous(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		topic := proto.EventsTopic("s1", "d1")
		steps := []struct {
			first, last int
			wantAck     uint64
			wantStored  string
		}{
			{3, 4, 0, "[3 4]"},         // ahead of a gap: kept, nothing to ack
			{6, 6, 0, "[3 4 6]"},       // another gap
			{1, 2, 4, "[1 2 3 4 6]"},   // first gap fills: ack jumps over the held 3, 4
			{5, 5, 6, "[1 2 3 4 5 6]"}, // second gap fills
			{7, 9, 9, "[1 2 3 4 5 6 7 8 9]"},
		}
		for _, s := range steps {
			ack, err := h.Ingest(topic, prototest.BatchPayload(t, "s1", "d1", s.first, s.last))
			if err != nil {
				t.Fatalf("Ingest %d..%d: %v", s.first, s.last, err)
			}
			if ack != s.wantAck {
				t.Fatalf("Ingest %d..%d acked %d, want %d", s.first, s.last, ack, s.wantAck)
			}
			if got := prototest.StoredSeqs(t, h, "s1", "d1"); got != s.wantStored {
				t.Fatalf("after %d..%d stored %s, want %s", s.first, s.last, got, s.wantStored)
			}
			if a, err := h.Acked("s1", "d1"); err != nil || a != s.wantAck {
				t.Fatalf("Acked = %d, %v; want %d", a, err, s.wantAck)
			}
		}
	})
}

func TestHQDropsDuplicatesAndAcksAgain(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		var mu sync.Mutex
		var seen []uint64
		h.OnEvent(func(site, device string, ev proto.Event) {
			mu.Lock()
			defer mu.Unlock()
			if site != "s1" || device != "d1" {
				t.Errorf("OnEvent for %s/%s, want s1/d1", site, device)
			}
			seen = append(seen, ev.Seq)
		})
		topic := proto.EventsTopic("s1", "d1")
		steps := []struct {
			first, last int
			wantAck     uint64
			wantCount   int
			wantSeen    string
		}{
			{1, 3, 3, 3, "[1 2 3]"},
			{1, 3, 3, 3, "[1 2 3]"},     // the same batch again: acked, not stored
			{2, 5, 5, 5, "[1 2 3 4 5]"}, // overlapping: only 4, 5 are new
			{1, 1, 5, 5, "[1 2 3 4 5]"}, // an old one: the ack is still the high point
		}
		for _, s := range steps {
			ack, err := h.Ingest(topic, prototest.BatchPayload(t, "s1", "d1", s.first, s.last))
			if err != nil {
				t.Fatal(err)
			}
			n, err := h.Count()
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			got := fmt.Sprint(seen)
			mu.Unlock()
			if ack != s.wantAck || n != s.wantCount || got != s.wantSeen {
				t.Fatalf("Ingest %d..%d: ack %d, count %d, OnEvent %s; want %d, %d, %s",
					s.first, s.last, ack, n, got, s.wantAck, s.wantCount, s.wantSeen)
			}
		}
	})
}

func TestHQKeepsDevicesApart(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		for _, dev := range []struct{ site, device string }{{"s1", "d1"}, {"s1", "d2"}, {"s2", "d1"}} {
			if ack, err := h.Ingest(proto.EventsTopic(dev.site, dev.device), prototest.BatchPayload(t, dev.site, dev.device, 1, 2)); err != nil || ack != 2 {
				t.Fatalf("Ingest for %s/%s = %d, %v; want 2", dev.site, dev.device, ack, err)
			}
		}
		if n, err := h.Count(); err != nil || n != 6 {
			t.Fatalf("Count = %d, %v; want 6", n, err)
		}
		if got := prototest.StoredSeqs(t, h, "s2", "d1"); got != "[1 2]" {
			t.Fatalf("s2/d1 holds %s, want [1 2]", got)
		}
		if got := prototest.StoredSeqs(t, h, "s9", "d9"); got != "[]" {
			t.Fatalf("unknown device holds %s, want []", got)
		}
	})
}

func TestHQRejectsMalformed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		good := func(t *testing.T) []byte { return prototest.BatchPayload(t, "s1", "d1", 1, 2) }
		tests := []struct {
			name    string
			topic   string
			payload func(t *testing.T) []byte
		}{
			{"bad JSON", proto.EventsTopic("s1", "d1"), func(*testing.T) []byte { return []byte(`{"site":`) }},
			{"other device than topic", proto.EventsTopic("s1", "d2"), good},
			{"other site than topic", proto.EventsTopic("s2", "d1"), good},
			{"seq 0", proto.EventsTopic("s1", "d1"), func(t *testing.T) []byte {
				return bytes.Replace(good(t), []byte(`"seq":1`), []byte(`"seq":0`), 1)
			}},
			{"gap in batch", proto.EventsTopic("s1", "d1"), func(t *testing.T) []byte {
				return bytes.Replace(good(t), []byte(`"seq":2`), []byte(`"seq":3`), 1)
			}},
			{"too big", proto.EventsTopic("s1", "d1"), func(*testing.T) []byte { return bytes.Repeat([]byte(" "), proto.MaxPayload+1) }},
			{"not an events topic", "tobira/v1/s1/d1/ack", good},
			{"wildcard in topic", "tobira/v1/s1/#/events", good},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var logs syncBuffer
				h := openHQ(t, b, b.newStore(t), &logs)
				ack, err := h.Ingest(tt.topic, tt.payload(t))
				if !errors.Is(err, proto.ErrMalformed) || ack != 0 {
					t.Fatalf("Ingest = %d, %v; want 0, ErrMalformed", ack, err)
				}
				if n, err := h.Count(); err != nil || n != 0 {
					t.Fatalf("Count = %d, %v after a rejected message; want 0", n, err)
				}
				out := logs.String()
				if !strings.Contains(out, "rejected events message") || !strings.Contains(out, "topic="+tt.topic) {
					t.Fatalf("log does not name the rejection and topic %q:\n%s", tt.topic, out)
				}
			})
		}
	})
}

func TestHQStoreSurvivesReopen(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		path := b.newStore(t)
		h, err := hq.Open(b.config(t, hq.Config{}, path))
		if err != nil {
			t.Fatal(err)
		}
		topic := proto.EventsTopic("s1", "d1")
		for _, r := range [][2]int{{1, 3}, {5, 6}} {
			if _, err := h.Ingest(topic, prototest.BatchPayload(t, "s1", "d1", r[0], r[1])); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}

		h = openHQ(t, b, path, nil)
		if n, err := h.Count(); err != nil || n != 5 {
			t.Fatalf("Count after reopen = %d, %v; want 5", n, err)
		}
		evs, err := h.Events("s1", "d1")
		if err != nil {
			t.Fatal(err)
		}
		want := []proto.Event{}
		for _, i := range []int{1, 2, 3, 5, 6} {
			ev := prototest.Event(i)
			ev.Seq = uint64(i)
			want = append(want, ev)
		}
		if d := prototest.DiffEvents(evs, want); d != "" {
			t.Fatalf("after reopen: %s", d)
		}
		if ack, err := h.Ingest(topic, prototest.BatchPayload(t, "s1", "d1", 4, 4)); err != nil || ack != 6 {
			t.Fatalf("filling the gap after reopen acked %d, %v; want 6", ack, err)
		}
	})
}

// Messages ingested at the same time share group commits: every event is
// stored once, and the final ack point is the highest sequence number.
func TestHQGroupCommitsConcurrentIngests(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		const devices, batches, size = 3, 40, 25
		h := openHQ(t, b, b.newStore(t), nil)
		var stored atomic.Int64
		h.OnEvent(func(string, string, proto.Event) { stored.Add(1) })
		var wg sync.WaitGroup
		errs := make(chan error, devices*batches)
		for d := range devices {
			device := fmt.Sprintf("d%d", d)
			for b := range batches {
				first := b*size + 1
				payload := prototest.BatchPayload(t, "s1", device, first, first+size-1)
				for range 2 { // each batch twice: duplicates in the same or another group
					wg.Go(func() {
						if _, err := h.Ingest(proto.EventsTopic("s1", device), payload); err != nil {
							errs <- err
						}
					})
				}
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for d := range devices {
			if a, err := h.Acked("s1", fmt.Sprintf("d%d", d)); err != nil || a != batches*size {
				t.Errorf("d%d: Acked = %d, %v; want %d", d, a, err, batches*size)
			}
		}
		if c, err := h.Count(); err != nil || c != devices*batches*size {
			t.Errorf("Count = %d, %v; want %d", c, err, devices*batches*size)
		}
		if got := stored.Load(); got != devices*batches*size {
			t.Errorf("OnEvent called %d times, want %d", got, devices*batches*size)
		}
	})
}

func TestHQRunNeedsBroker(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		if err := h.Run(t.Context()); !errors.Is(err, hq.ErrConfig) {
			t.Fatalf("Run without broker = %v, want ErrConfig", err)
		}
		for _, cfg := range []hq.Config{
			{Broker: "mqtt//oops"},
			{Broker: "tcp://127.0.0.1:1883", Fallbacks: []string{"tcp://127.0.0.1:1884", "http://127.0.0.1:1885"}},
		} {
			_, err := hq.Open(b.config(t, cfg, b.newStore(t)))
			if !errors.Is(err, hq.ErrConfig) {
				t.Fatalf("Open with broker %q, fallbacks %q = %v, want ErrConfig", cfg.Broker, cfg.Fallbacks, err)
			}
		}
	})
}
