package hq_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// outbox records what a Service publishes.
type outbox struct {
	mu  sync.Mutex
	msg map[string][][]byte // topic -> payloads
}

// publish is the Service's publishFunc.
func (o *outbox) publish(_ context.Context, topic string, payload []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.msg == nil {
		o.msg = map[string][][]byte{}
	}
	o.msg[topic] = append(o.msg[topic], payload)
	return nil
}

// take returns and forgets the payloads published to topic.
func (o *outbox) take(topic string) [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.msg[topic]
	delete(o.msg, topic)
	return p
}

// venueRules: every door of the site is in group "gates", event "ev1"
// runs all day, single entry.
type venueRules struct{}

func (venueRules) TicketEvent(_ context.Context, _, event string) (hq.TicketEvent, bool, error) {
	if event != "ev1" {
		return hq.TicketEvent{}, false, nil
	}
	return hq.TicketEvent{Start: markT0.Add(-time.Hour), End: markT0.Add(time.Hour), DoorGroup: "gates"}, true, nil
}

func (venueRules) DoorGroups(context.Context, string, string) ([]string, bool, error) {
	return []string{"gates"}, true, nil
}

// TestReplicasRelayMarks: two Services on one PostgreSQL split the intake.
// Replica B takes every gate's status; replica A takes the marks and the
// online ticket checks: A knows the gates' doors and pushes every mark to
// every other gate from the shared device status, and of two checks of
// one single-entry ticket at once, one on each replica, exactly one is
// admitted.
func TestReplicasRelayMarks(t *testing.T) {
	url := pgtest.DB(t)
	if _, err := pgstore.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	pub, key, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ver, err := signed.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(markT0.Add(time.Minute))
	replica := func() (*hq.Service, *outbox) {
		st, err := pgstore.Open(context.Background(), url, pgstore.Options{Logger: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		h, err := hq.Open(hq.Config{Store: st, Marks: st.Marks(), Key: key, TicketRules: venueRules{}, Logger: testLog(t),
			Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h, &outbox{}
	}
	a, outA := replica()
	b, outB := replica()
	send := func(h *hq.Service, o *outbox, topic string, v any) {
		t.Helper()
		p, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		h.Handle(t.Context(), o.publish, topic, p)
	}
	gates := []string{"g1", "g2", "g3"}
	for _, g := range gates {
		send(b, outB, proto.StatusTopic("s1", g), proto.Status{Online: true, Doors: []proto.DoorStatus{{Name: "door-" + g}}})
	}

	send(a, outA, proto.MarksTopic("s1", "g1"), proto.MarkBatch{Site: "s1", Device: "g1",
		Marks: []proto.Mark{{Seq: 1, Ticket: []byte("t1"), Event: "ev1", State: proto.MarkIn, At: markT0, Door: "door-g1"}}})
	if acks := outA.take(proto.MarksAckTopic("s1", "g1")); len(acks) != 1 {
		t.Fatalf("replica A acknowledged g1's marks %d times, want once (does it know g1's doors from B's status?)", len(acks))
	}
	for _, g := range gates {
		pushed := outA.take(proto.PeerMarksTopic("s1", g))
		if g == "g1" {
			if len(pushed) != 0 {
				t.Errorf("the mark was pushed back to its own gate g1")
			}
			continue
		}
		if len(pushed) != 1 {
			t.Fatalf("replica A pushed %d messages to %s, want the mark once", len(pushed), g)
		}
		pm, err := proto.OpenPeerMarks(ver, pushed[0])
		if err != nil || len(pm.Marks) != 1 || pm.Marks[0].Seq != 1 || pm.Head != 1 || !pm.Pushed || pm.Asked != nil {
			t.Fatalf("push to %s = %+v, %v; want mark 1, marked pushed", g, pm, err)
		}
	}
	// Replica B answers a marks-get from the shared store, naming what
	// was asked: after 0 (mark 1), and after 9, beyond the head (the gate
	// starts over).
	for _, after := range []uint64{0, 9} {
		send(b, outB, proto.MarksGetTopic("s1", "g2"), proto.MarksGet{After: after})
		got := outB.take(proto.PeerMarksTopic("s1", "g2"))
		if len(got) != 1 {
			t.Fatalf("replica B answered a marks-get after %d %d times, want once", after, len(got))
		}
		pm, err := proto.OpenPeerMarks(ver, got[0])
		if err != nil || pm.Head != 1 || pm.Pushed || pm.Asked == nil || *pm.Asked != after || pm.Renumbered(after) != (after > 1) {
			t.Fatalf("answer to after %d = %+v, %v; want head 1, asked %d", after, pm, err, after)
		}
	}

	// A gate whose status B took after A read the device status: A holds
	// its marks back (not acknowledged: the gate sends them again) until
	// its cache of the device status expires.
	send(b, outB, proto.StatusTopic("s1", "g4"), proto.Status{Online: true, Doors: []proto.DoorStatus{{Name: "door-g4"}}})
	g4marks := proto.MarkBatch{Site: "s1", Device: "g4",
		Marks: []proto.Mark{{Seq: 1, Ticket: []byte("t4"), Event: "ev1", State: proto.MarkIn, At: markT0, Door: "door-g4"}}}
	send(a, outA, proto.MarksTopic("s1", "g4"), g4marks)
	if acks := outA.take(proto.MarksAckTopic("s1", "g4")); len(acks) != 0 {
		t.Fatalf("replica A acknowledged g4's marks before it could know g4's doors")
	}
	clk.Advance(time.Second)
	send(a, outA, proto.MarksTopic("s1", "g4"), g4marks)
	if acks := outA.take(proto.MarksAckTopic("s1", "g4")); len(acks) != 1 {
		t.Fatalf("replica A acknowledged g4's marks %d times once its cache expired, want once", len(acks))
	}
	for _, g := range gates {
		if n := len(outA.take(proto.PeerMarksTopic("s1", g))); n != 1 {
			t.Errorf("g4's mark pushed %d times to %s, want once", n, g)
		}
	}

	// g2 on replica A and g3 on replica B check the same ticket at once.
	var wg sync.WaitGroup
	for i, r := range []struct {
		h *hq.Service
		o *outbox
	}{{a, outA}, {b, outB}} {
		g := gates[i+1]
		wg.Go(func() {
			send(r.h, r.o, proto.TicketCheckTopic("s1", g), proto.TicketCheck{Site: "s1", Device: g, ID: 1,
				Mark: proto.Mark{Ticket: []byte("t2"), Event: "ev1", State: proto.MarkIn, At: markT0.Add(time.Duration(i)), Door: "door-" + g}})
		})
	}
	wg.Wait()
	var verdicts []string
	for i, o := range []*outbox{outA, outB} {
		for _, p := range o.take(proto.TicketVerdictTopic("s1", gates[i+1])) {
			v, err := proto.OpenTicketVerdict(ver, p)
			if err != nil {
				t.Fatal(err)
			}
			verdicts = append(verdicts, string(v.Verdict))
		}
	}
	slices.Sort(verdicts)
	if want := []string{string(proto.VerdictAdmit), string(proto.VerdictUsed)}; !slices.Equal(verdicts, want) {
		t.Fatalf("verdicts of two checks of one ticket on two replicas = %v, want %v", verdicts, want)
	}
}
