package hq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// limitsDeadline bounds each wait on the real broker.
const limitsDeadline = 60 * time.Second

// runLimitedHQ runs an HQ with cfg on b's store against the real
// mosquitto m until the test ends, and returns it once subscribed.
func runLimitedHQ(t *testing.T, b backend, m *mosquittotest.Mosquitto, cfg hq.Config) *hq.Service {
	t.Helper()
	cfg.Broker, cfg.ClientID = m.URL(), "hq-limits"
	cfg.ConnectRetry, cfg.MaxReconnect = 200*time.Millisecond, 500*time.Millisecond
	h := openHQWith(t, b, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("HQ Run: %v", err)
		}
	})
	select {
	case <-h.Ready():
	case <-time.After(limitsDeadline):
		t.Fatal("HQ never subscribed")
	}
	return h
}

// testLog logs into the test's output.
func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// openHQWith opens an HQ with cfg on a fresh store of b.
func openHQWith(t *testing.T, b backend, cfg hq.Config) *hq.Service {
	t.Helper()
	h, err := hq.Open(b.config(t, cfg, b.newStore(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// device connects a raw MQTT client, as a rogue device would.
func device(t *testing.T, m *mosquittotest.Mosquitto, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID(id))
	if tok := c.Connect(); !tok.WaitTimeout(limitsDeadline) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// pub publishes payload at QoS 1.
func pub(t *testing.T, c mqtt.Client, topic string, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(limitsDeadline) || tok.Error() != nil {
		t.Fatalf("publish to %s: %v", topic, tok.Error())
	}
}

// count counts the messages on topic.
func count(t *testing.T, c mqtt.Client, topic string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	if tok := c.Subscribe(topic, 1, func(mqtt.Client, mqtt.Message) { n.Add(1) }); !tok.WaitTimeout(limitsDeadline) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	return &n
}

// eventually waits until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limitsDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fleetEntry returns site/device in h's fleet view (zero when absent).
func fleetEntry(t *testing.T, h *hq.Service, site, dev string) hq.DeviceInfo {
	t.Helper()
	devs, err := h.Fleet()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if d.Site == site && d.Device == dev {
			return d
		}
	}
	return hq.DeviceInfo{}
}

// refusalEvents returns the device_refused events HQ stored for site.
func refusalEvents(t *testing.T, h *hq.Service, site string) []proto.Event {
	t.Helper()
	evs, err := h.Events(site, hq.SystemDevice)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestLimitsSeqFlood: a device floods HQ through a real mosquitto with
// full batches numbered from 10^12 (issue 12: 200,000 bogus events, 174
// MB in seconds). HQ stores none of them, counts them in the fleet view,
// stores one device_refused event, and still takes the device's next
// legitimate batch.
func TestLimitsSeqFlood(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		m := mosquittotest.Start(t)
		h := runLimitedHQ(t, b, m, hq.Config{Logger: testLog(t)})
		c := device(t, m, "rogue")
		acks := count(t, c, proto.AckTopic("s1", "d1"))
		const batches = 20
		topic := proto.EventsTopic("s1", "d1")
		for i := range batches {
			first := 1_000_000_000_000 + i*proto.MaxBatch
			pub(t, c, topic, prototest.BatchPayload(t, "s1", "d1", first, first+proto.MaxBatch-1))
		}
		pub(t, c, topic, prototest.BatchPayload(t, "s1", "d1", 1, 3))
		eventually(t, "the ack of the legitimate batch", func() bool { return acks.Load() > 0 })
		eventually(t, "every flood batch refused", func() bool {
			return fleetEntry(t, h, "s1", "d1").Refused["seq_ahead"] == batches
		})
		if evs, err := h.Events("s1", "d1"); err != nil || len(evs) != 3 || evs[2].Seq != 3 {
			t.Fatalf("stored %d events of s1/d1 (%v), want seq 1..3 only", len(evs), err)
		}
		d := fleetEntry(t, h, "s1", "d1")
		if d.LastRefusal == nil || d.LastRefusal.Reason != "seq_ahead" || !strings.Contains(d.LastRefusal.Detail, "beyond the acknowledged") {
			t.Fatalf("last refusal %+v, want seq_ahead of a flood batch", d.LastRefusal)
		}
		evs := refusalEvents(t, h, "s1")
		if len(evs) != 1 || evs[0].Type != proto.TypeSystem || evs[0].Reason != hq.ReasonDeviceRefused ||
			!strings.HasPrefix(evs[0].Detail, "device=d1 refused=seq_ahead count=1:") {
			t.Fatalf("HQ's own events %+v, want one device_refused event for d1", evs)
		}
	})
}

// TestLimitsEventRate: a device sends contiguous full batches faster
// than its bucket allows. The first fits the burst and is acked; the
// others are refused, not stored and not acked (the edge sends them
// again later); the fleet view counts them.
func TestLimitsEventRate(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		m := mosquittotest.Start(t)
		h := runLimitedHQ(t, b, m, hq.Config{Logger: testLog(t),
			Limits: hq.Limits{EventRate: 1, EventBurst: proto.MaxBatch}})
		c := device(t, m, "fast")
		acks := count(t, c, proto.AckTopic("s1", "d1"))
		topic := proto.EventsTopic("s1", "d1")
		for i := range 5 {
			first := 1 + i*proto.MaxBatch
			pub(t, c, topic, prototest.BatchPayload(t, "s1", "d1", first, first+proto.MaxBatch-1))
			if i == 0 {
				eventually(t, "the ack of the first batch", func() bool { return acks.Load() > 0 })
			}
		}
		eventually(t, "four batches refused", func() bool {
			return fleetEntry(t, h, "s1", "d1").Refused["rate_limited"] == 4
		})
		if a, err := h.Acked("s1", "d1"); err != nil || a != proto.MaxBatch {
			t.Fatalf("Acked = %d, %v; want %d", a, err, proto.MaxBatch)
		}
		if n := acks.Load(); n != 1 {
			t.Fatalf("%d acks, want 1", n)
		}
		if evs, err := h.Events("s1", "d1"); err != nil || len(evs) != proto.MaxBatch {
			t.Fatalf("stored %d events, %v; want %d", len(evs), err, proto.MaxBatch)
		}
	})
}

// TestLimitsOversizePayloads: status, result and need payloads beyond
// HQ's bounds are refused before decoding and counted as too_large.
func TestLimitsOversizePayloads(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		m := mosquittotest.Start(t)
		h := runLimitedHQ(t, b, m, hq.Config{Logger: testLog(t)})
		c := device(t, m, "big")
		big := strings.Repeat("x", 20<<10)
		pub(t, c, proto.StatusTopic("s1", "d1"), []byte(`{"online":true,"version":"`+big+`"}`))
		pub(t, c, proto.ResultTopic("s1", "d1"), []byte(`{"id":"x","kind":"command","site":"s1","device":"d1","status":"failed","error":"`+big+`"}`))
		need := `{"transfer":"00000000000000000000000000000000","missing":[` + strings.Repeat("[0,0],", 1600) + `[0,0]]}`
		pub(t, c, proto.NeedTopic("s1", "d1"), []byte(need))
		eventually(t, "three payloads refused", func() bool {
			return fleetEntry(t, h, "s1", "d1").Refused["too_large"] == 3
		})
		d := fleetEntry(t, h, "s1", "d1")
		if d.Status.Version != "" || d.Online {
			t.Fatalf("HQ stored the oversize status (version of %d bytes)", len(d.Status.Version))
		}
		if _, ok, err := h.Result("x"); err != nil || ok {
			t.Fatalf("HQ stored the oversize result: %v, %v", ok, err)
		}
	})
}

// TestLimitsNeedOverlappingRanges: a 4.4 KB need with 256 overlapping
// ranges over a one-chunk snapshot made HQ re-send that chunk 256 times
// (issue 12). HQ merges and clamps the ranges and sends the chunk once;
// the same need again within Limits.NeedInterval sends nothing.
func TestLimitsNeedOverlappingRanges(t *testing.T) {
	m := mosquittotest.Start(t)
	spool := t.TempDir()
	h := runLimitedHQ(t, backends[0], m, hq.Config{Logger: testLog(t), Spool: spool})
	_, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	snd, err := hq.DialSender(t.Context(), hq.Config{Broker: m.URL(), ClientID: "sender", Spool: spool}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	path := filepath.Join(t.TempDir(), "snap.bin")
	if err := os.WriteFile(path, []byte("one small chunk"), 0o600); err != nil {
		t.Fatal(err)
	}
	man, err := snd.PublishSnapshot(t.Context(), hq.SnapshotOffer{Site: "s1", Device: "d1", Version: 1, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	c := device(t, m, "needy")
	chunks := count(t, c, proto.ChunkTopic("s1", "d1"))
	var missing []string
	for i := range proto.MaxNeedRanges {
		missing = append(missing, fmt.Sprintf("[0,%d]", 1<<20+i))
	}
	need := []byte(fmt.Sprintf(`{"transfer":%q,"missing":[%s]}`, man.Transfer, strings.Join(missing, ",")))
	pub(t, c, proto.NeedTopic("s1", "d1"), need)
	pub(t, c, proto.NeedTopic("s1", "d1"), need)
	eventually(t, "the repeated need refused", func() bool {
		return fleetEntry(t, h, "s1", "d1").Refused["need_repeat"] == 1
	})
	time.Sleep(500 * time.Millisecond) // would-be extra chunks arrive
	if n := chunks.Load(); n != 1 {
		t.Fatalf("HQ sent the one chunk %d times for two needs of %d ranges, want once", n, proto.MaxNeedRanges)
	}
}

// TestLimitsMarkRequests: a device floods HQ with marks, marks-get,
// sync-get and ticket-check messages (each stored in or answered from HQ's mark store,
// marks acknowledged, ticket-check with a signed verdict). HQ handles the
// burst of the device's request bucket, refuses the rest unanswered as
// request_limited and counts them in the fleet view.
func TestLimitsMarkRequests(t *testing.T) {
	const burst, sent = 3, 10
	now := time.Now().UTC()
	for _, tc := range []struct {
		name    string
		topic   string // the request's topic
		answers string // where HQ answers it
		payload func(i int) any
	}{
		{"marks", proto.MarksTopic("s1", "d1"), proto.MarksAckTopic("s1", "d1"),
			func(i int) any {
				return proto.MarkBatch{Site: "s1", Device: "d1", Marks: []proto.Mark{{Seq: uint64(i + 1),
					Ticket: []byte(fmt.Sprintf("ticket-%d", i)), Event: "e1", State: proto.MarkIn, At: now, Door: "door-1"}}}
			}},
		{"marks-get", proto.MarksGetTopic("s1", "d1"), proto.PeerMarksTopic("s1", "d1"),
			func(int) any { return proto.MarksGet{} }},
		{"sync-get", proto.SyncGetTopic("s1", "d1"), proto.SyncTopic("s1", "d1"),
			func(int) any {
				return proto.SyncGet{ID: proto.NewCommandID(), Want: []string{proto.WantSnapshot, proto.WantCommands}}
			}},
		{"ticket-check", proto.TicketCheckTopic("s1", "d1"), proto.TicketVerdictTopic("s1", "d1"),
			func(i int) any {
				return proto.TicketCheck{Site: "s1", Device: "d1", ID: uint64(i + 1), Mark: proto.Mark{
					Ticket: []byte(fmt.Sprintf("ticket-%d", i)), Event: "e1", State: proto.MarkIn, At: now, Door: "door-1"}}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mosquittotest.Start(t)
			_, key, err := signed.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			h := runLimitedHQ(t, backends[0], m, hq.Config{Logger: testLog(t), Key: key,
				Limits: hq.Limits{RequestRate: 0.001, RequestBurst: burst}})
			c := device(t, m, "asker")
			answers := count(t, c, tc.answers)
			for i := range sent {
				b, err := json.Marshal(tc.payload(i))
				if err != nil {
					t.Fatal(err)
				}
				pub(t, c, tc.topic, b)
			}
			eventually(t, "the requests beyond the burst refused", func() bool {
				return fleetEntry(t, h, "s1", "d1").Refused["request_limited"] == sent-burst
			})
			time.Sleep(500 * time.Millisecond) // would-be extra answers arrive
			if n := answers.Load(); n != burst {
				t.Fatalf("HQ answered %d of %d requests, want the burst of %d", n, sent, burst)
			}
			evs := refusalEvents(t, h, "s1")
			if len(evs) != 1 || !strings.HasPrefix(evs[0].Detail, "device=d1 refused=request_limited count=1:") {
				t.Fatalf("HQ's own events %+v, want one device_refused event for d1's requests", evs)
			}
		})
	}
}
