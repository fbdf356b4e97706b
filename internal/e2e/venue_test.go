package e2e_test

// Ticket used-marks between the gates of one venue, and enrollment intake,
// through a real mosquitto.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// ticket returns ticket credential i.
func ticket(i int) credential.Credential {
	return credential.Credential{Kind: credential.KindFreeArea, ID: fmt.Sprintf("TICKET-%06d", i)}
}

// venueStore returns a policy store holding n tickets for event "concert"
// at the gates gate-1, gate-2 and gate-3.
func venueStore(t *testing.T, n int) *policy.Store {
	t.Helper()
	s, err := policy.Open(filepath.Join(t.TempDir(), "policy.db"), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.ApplyFull(context.Background(), venueSnapshot(n, time.Now().UTC().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	return s
}

// venueSnapshot is the snapshot of venueStore: n tickets for event
// "concert" from start for 25 hours, at the gates gate-1, gate-2 and
// gate-3.
func venueSnapshot(n int, start time.Time) policy.Snapshot {
	snap := policy.Snapshot{
		Version: 1,
		Doors:   []policy.Door{{ID: "gate-1", Groups: []string{"gates"}}, {ID: "gate-2", Groups: []string{"gates"}}, {ID: "gate-3", Groups: []string{"gates"}}},
		Events:  []policy.Event{{ID: "concert", Start: start, End: start.Add(25 * time.Hour), DoorGroup: "gates"}},
	}
	for i := range n {
		snap.Allow = append(snap.Allow, policy.Entry{Credential: ticket(i), Person: fmt.Sprintf("ticket-%d", i), Event: "concert"})
	}
	return snap
}

// watchedMarks wraps a MarkStore and reports each merge.
type watchedMarks struct {
	tsync.MarkStore
	merged chan []policy.UsedMark
}

func (w watchedMarks) MergePeerMarks(ctx context.Context, marks []policy.UsedMark) (policy.MergeResult, error) {
	r, err := w.MarkStore.MergePeerMarks(ctx, marks)
	w.merged <- marks
	return r, err
}

// runGate runs an Edge named device with marks against url.
func runGate(t *testing.T, url, device string, marks tsync.MarkStore, key ed25519.PublicKey) (*tsync.Edge, *tsync.Outbox) {
	t.Helper()
	ob, err := tsync.OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := tsync.NewEdge(tsync.EdgeConfig{
		Broker: url, Site: "venue", Device: device, Marks: marks, Keys: []ed25519.PublicKey{key},
		AckTimeout: 2 * time.Second, ConnectRetry: 200 * time.Millisecond, MaxReconnect: 500 * time.Millisecond,
		MarkInterval:   time.Hour, // only Notify and connections prompt it: the measured delay is the push path
		StatusInterval: time.Hour, Logger: discardLogger(),
	}, ob)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, e.Run, func(err error) {
		if err != nil {
			t.Errorf("Edge Run: %v", err)
		}
		ob.Close()
	})
	return e, ob
}

// runHQWith runs an HQ with cfg (Broker and Path filled in).
func runHQWith(t *testing.T, url string, cfg hq.Config) *hq.Service {
	t.Helper()
	cfg.Broker, cfg.Path, cfg.ClientID = url, filepath.Join(t.TempDir(), "hq.db"), "hq-"+t.Name()
	cfg.ConnectRetry, cfg.MaxReconnect = 200*time.Millisecond, 500*time.Millisecond
	cfg.Logger = discardLogger()
	h, err := hq.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, h.Run, func(error) { h.Close() })
	return h
}

// waitOnline polls HQ's fleet until every device is online.
func waitOnline(t *testing.T, h *hq.Service, devices ...string) {
	t.Helper()
	deadline := time.Now().Add(linkDeadline)
	for time.Now().Before(deadline) {
		devs, err := h.Fleet()
		if err != nil {
			t.Fatal(err)
		}
		online := 0
		for _, d := range devs {
			if slices.Contains(devices, d.Device) && d.Online {
				online++
			}
		}
		if online == len(devices) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("devices %v not online at HQ within %v", devices, linkDeadline)
}

// TestTicketUsedAtOneGateIsRefusedAtTheOther taps tickets at gate 1 and
// checks that gate 2 refuses each of them once HQ has relayed the mark. It
// measures the gate-to-gate delay: from the decision at gate 1 to the
// merged mark at gate 2.
func TestTicketUsedAtOneGateIsRefusedAtTheOther(t *testing.T) {
	const tickets = 200
	m := mosquittotest.Start(t)
	key := testKeyPair(t)
	h := runHQWith(t, m.URL(), hq.Config{Key: key})
	s1, s2 := venueStore(t, tickets), venueStore(t, tickets)
	w2 := watchedMarks{MarkStore: s2, merged: make(chan []policy.UsedMark, 16)}
	e1, _ := runGate(t, m.URL(), "gate-1", s1, key.Public().(ed25519.PublicKey))
	runGate(t, m.URL(), "gate-2", w2, key.Public().(ed25519.PublicKey))
	waitOnline(t, h, "gate-1", "gate-2")

	delays := make([]time.Duration, 0, tickets)
	for i := range tickets {
		c := ticket(i)
		start := time.Now()
		if d := s1.DecideAt(policy.Request{Credential: c, Door: "gate-1", Now: start}); d.Reason != policy.ReasonTicket {
			t.Fatalf("ticket %d at gate 1: %s, want %s", i, d.Reason, policy.ReasonTicket)
		}
		e1.Notify()
		key, _ := c.Key()
		waitMerged(t, w2.merged, key)
		delays = append(delays, time.Since(start))
		if d := s2.DecideAt(policy.Request{Credential: c, Door: "gate-2", Now: time.Now()}); d.Reason != policy.ReasonTicketUsed {
			t.Fatalf("ticket %d at gate 2 after the sync: %s, want %s", i, d.Reason, policy.ReasonTicketUsed)
		}
	}
	slices.Sort(delays)
	q := func(p float64) time.Duration { return delays[int(p*float64(len(delays)-1))] }
	t.Logf("gate-to-gate delay over %d tickets: p50 %v, p90 %v, p99 %v, max %v", tickets, q(0.5), q(0.9), q(0.99), delays[len(delays)-1])
	if f := os.Getenv("TOBIRA_PERF_OUT"); f != "" {
		_ = os.WriteFile(f, fmt.Appendf(nil, "tickets=%d p50=%v p90=%v p99=%v max=%v\n", tickets, q(0.5), q(0.9), q(0.99), delays[len(delays)-1]), 0o644)
	}
}

// waitMerged waits until a merge at the gate carried the ticket key.
func waitMerged(t *testing.T, merged <-chan []policy.UsedMark, key []byte) {
	t.Helper()
	timeout := time.NewTimer(linkDeadline)
	defer timeout.Stop()
	for {
		select {
		case ms := <-merged:
			for _, m := range ms {
				if string(m.Ticket) == string(key) {
					return
				}
			}
		case <-timeout.C:
			t.Fatalf("mark of ticket %x not merged at gate 2 within %v", key, linkDeadline)
		}
	}
}

func testKeyPair(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// TestForgedPeerMarksRefused publishes marks signed by a key the gate does
// not pin, and marks of another site: the gate merges neither and still
// grants the ticket.
func TestForgedPeerMarksRefused(t *testing.T) {
	m := mosquittotest.Start(t)
	key, other := testKeyPair(t), testKeyPair(t)
	s := venueStore(t, 1)
	w := watchedMarks{MarkStore: s, merged: make(chan []policy.UsedMark, 4)}
	runGate(t, m.URL(), "gate-2", w, key.Public().(ed25519.PublicKey))
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID("forger"))
	if tok := c.Connect(); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	k, _ := ticket(0).Key()
	mark := proto.Mark{Ticket: k, Event: "concert", State: proto.MarkIn, At: time.Now().UTC(), Door: "gate-1"}
	sign := func(priv ed25519.PrivateKey, site string) []byte {
		mark := mark
		mark.Seq, mark.Device = 1, "gate-1"
		b, _ := json.Marshal(proto.PeerMarks{Site: site, Head: 1, Marks: []proto.Mark{mark}})
		env, err := signed.Sign(proto.KindPeerMarks, b, priv)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	// The forged batches go first, then a correctly signed control batch
	// for another ticket, on one connection, so in order: once the control
	// merges, the gate was listening when the forged ones came. Until then
	// (the gate may not have subscribed yet) both are sent again.
	for _, env := range [][]byte{sign(other, "venue"), sign(key, "elsewhere")} {
		c.Publish(proto.PeerMarksTopic("venue", "gate-2"), 1, false, env).Wait()
	}
	k1, _ := ticket(999).Key()
	ctl := mark
	ctl.Ticket = k1
	deadline := time.Now().Add(linkDeadline)
	for {
		ctl.Seq, ctl.Device = 1, "gate-1"
		b, _ := json.Marshal(proto.PeerMarks{Site: "venue", Head: 1, Marks: []proto.Mark{ctl}})
		env, _ := signed.Sign(proto.KindPeerMarks, b, key)
		c.Publish(proto.PeerMarksTopic("venue", "gate-2"), 1, false, env).Wait()
		select {
		case ms := <-w.merged:
			if string(ms[0].Ticket) != string(k1) {
				t.Fatalf("merged a forged or foreign mark: %+v", ms)
			}
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the gate never merged the control mark")
			}
			for _, env := range [][]byte{sign(other, "venue"), sign(key, "elsewhere")} {
				c.Publish(proto.PeerMarksTopic("venue", "gate-2"), 1, false, env).Wait()
			}
			continue
		}
		break
	}
	if d := s.DecideAt(policy.Request{Credential: ticket(0), Door: "gate-2", Now: time.Now()}); d.Reason != policy.ReasonTicket {
		t.Errorf("ticket after forged marks: %s, want %s", d.Reason, policy.ReasonTicket)
	}
}

// discardLogger drops logs.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestEnrollmentReachesHQOnce sends enrollment records on their own
// channel: HQ's sink fails the first delivery (no ack), the edge sends
// again, the sink stores it, HQ acknowledges, and the record leaves the
// outbox. No enrollment appears in the event stream.
func TestEnrollmentReachesHQOnce(t *testing.T) {
	m := mosquittotest.Start(t)
	got := make(chan proto.Enrollment, 8)
	var calls atomic.Int32
	h := runHQWith(t, m.URL(), hq.Config{Enrollments: hq.EnrollmentSinkFunc(func(_ context.Context, e proto.Enrollment) error {
		if calls.Add(1) == 1 {
			return fmt.Errorf("registry busy")
		}
		got <- e
		return nil
	})})
	ob, err := tsync.OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if _, err := ob.AppendEnrollment([]byte("not json")); err == nil {
		t.Error("AppendEnrollment took a payload that is not a JSON object")
	}
	rec := []byte(`{"Certificate":"MIIB","Challenge":"AAEC"}`)
	seq, err := ob.AppendEnrollment(rec)
	if err != nil || seq != 1 {
		t.Fatalf("AppendEnrollment = %d, %v; want 1", seq, err)
	}
	e, err := tsync.NewEdge(tsync.EdgeConfig{Broker: m.URL(), Site: "s1", Device: "enroller", AckTimeout: 300 * time.Millisecond,
		ConnectRetry: 200 * time.Millisecond, Logger: discardLogger()}, ob)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	e.Notify()
	select {
	case en := <-got:
		if en.Site != "s1" || en.Device != "enroller" || en.Seq != 1 || string(en.Record) != string(rec) {
			t.Errorf("HQ got %+v, want seq 1 of s1/enroller with the record", en)
		}
	case <-time.After(linkDeadline):
		t.Fatal("enrollment never reached HQ")
	}
	deadline := time.Now().Add(linkDeadline)
	for {
		p, err := ob.PendingEnrollments()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enrollment still pending after HQ stored it: %+v", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := h.Count(); n != 0 {
		t.Errorf("HQ stored %d events; an enrollment must not enter the event stream", n)
	}
}
