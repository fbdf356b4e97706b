package e2e_test

// A compromised gate against HQ's mark checks (issue 12, item 3), and
// conflicts a partition makes unavoidable, through a real mosquitto.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// venueRules are HQ's ticket rules of venueStore's venue: event "concert"
// at door group "gates" (gate-1, gate-2, gate-3); door side-1 is in group
// "side".
type venueRules struct{ start, end time.Time }

// TicketEvent implements hq.TicketRules.
func (r venueRules) TicketEvent(_ context.Context, site, event string) (hq.TicketEvent, bool, error) {
	if site != "venue" || event != "concert" {
		return hq.TicketEvent{}, false, nil
	}
	return hq.TicketEvent{Start: r.start, End: r.end, DoorGroup: "gates"}, true, nil
}

// DoorGroups implements hq.TicketRules.
func (venueRules) DoorGroups(_ context.Context, site, door string) ([]string, bool, error) {
	switch {
	case site != "venue":
		return nil, false, nil
	case door == "side-1":
		return []string{"side"}, true, nil
	case strings.HasPrefix(door, "gate-"):
		return []string{"gates"}, true, nil
	}
	return nil, false, nil
}

// newRulesRig is a venue rig whose HQ has venueRules.
func newRulesRig(t *testing.T, gates, tickets int) *venueRig {
	now := time.Now().UTC()
	conf := func(port int) string {
		return fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n", port)
	}
	return newVenueRigWith(t, rigOptions{conf: conf, gates: gates, tickets: tickets, rules: venueRules{start: now.Add(-time.Hour), end: now.Add(24 * time.Hour)}})
}

// connectAs connects a plain MQTT client with clientID to the rig's broker.
func (r *venueRig) connectAs(t *testing.T, clientID string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(r.m.URL()).SetClientID(clientID))
	if tok := c.Connect(); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// publishJSON publishes v as JSON on topic at QoS 1.
func publishJSON(t *testing.T, c mqtt.Client, topic string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(topic, 1, false, b); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// waitReports waits until HQ has recorded n mark reports of the venue.
func waitReports(t *testing.T, h *hq.Service, n int) []hq.MarkReport {
	t.Helper()
	var reps []hq.MarkReport
	waitFor(t, "HQ's mark reports", func() bool {
		var err error
		reps, err = h.MarkReports(context.Background(), "venue")
		if err != nil {
			t.Fatal(err)
		}
		return len(reps) >= n
	})
	return reps
}

// TestCompromisedGateMarksRefused: gate-3, compromised, sends marks that
// would block unused tickets or re-open a used one. HQ refuses each with
// its reason, acknowledges them (so they are not sent forever) and never
// passes them to gate-2; a signed peer mark dated beyond the skew is
// refused by the gate itself.
func TestCompromisedGateMarksRefused(t *testing.T) {
	r := newRulesRig(t, 2, 8)
	g1, g2 := r.gates[0], r.gates[1]
	g1.admit(0)
	if !g2.learned(0) {
		t.Fatal("gate-2 never learned gate-1's mark")
	}
	evil := r.connectAs(t, "tobira-venue-gate-3")
	acks := make(chan proto.MarksAck, 4)
	evil.Subscribe(proto.MarksAckTopic("venue", "gate-3"), 1, func(_ mqtt.Client, m mqtt.Message) {
		if a, err := proto.DecodeMarksAck(m.Payload()); err == nil {
			acks <- a
		}
	}).Wait()
	publishJSON(t, evil, proto.StatusTopic("venue", "gate-3"), proto.Status{Online: true,
		Doors: []proto.DoorStatus{{Name: "gate-3"}, {Name: "side-1"}}})
	waitOnline(t, r.hq.svc, "gate-3")
	now := time.Now().UTC()
	key := func(i int) []byte { k, _ := ticket(i).Key(); return k }
	mk := func(seq uint64, i int, st proto.MarkState, at time.Time, door string) proto.Mark {
		return proto.Mark{Seq: seq, Ticket: key(i), Event: "concert", State: st, At: at, Door: door}
	}
	want := map[uint64]string{
		1: "door is not one of the sending device's doors", // re-open ticket 0 posing as gate-1
		2: "dated beyond HQ's time plus the allowed skew",  // block ticket 1 until 2099
		3: "door is not in the event's door group",         // block ticket 2 from another group's door
		4: "exit without an entry before it",               // exit of ticket 3, never used
		5: "exit without an entry before it",               // exit of ticket 0 dated before its entry
		6: "no such ticketed event at the site",            // another event's mark
		7: "dated beyond HQ's time plus the allowed skew",  // a few hours ahead
		8: "",                                              // control: an honest entry of ticket 5
	}
	other := mk(6, 4, proto.MarkIn, now, "gate-3")
	other.Event = "other"
	batch := proto.MarkBatch{Site: "venue", Device: "gate-3", Marks: []proto.Mark{
		mk(1, 0, proto.MarkOut, now, "gate-1"),
		mk(2, 1, proto.MarkIn, time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), "gate-3"),
		mk(3, 2, proto.MarkIn, now, "side-1"),
		mk(4, 3, proto.MarkOut, now, "gate-3"),
		mk(5, 0, proto.MarkOut, now.Add(-30*time.Minute), "gate-3"),
		other,
		mk(7, 6, proto.MarkIn, now.Add(3*time.Hour), "gate-3"),
		mk(8, 5, proto.MarkIn, now, "gate-3"),
	}}
	publishJSON(t, evil, proto.MarksTopic("venue", "gate-3"), batch)
	if !g2.learned(5) {
		t.Fatal("gate-2 never learned the control mark")
	}
	// A peer mark dated beyond the gate's skew, even signed by HQ's key
	// (an older HQ, a stolen key), is refused by the gate.
	far := mk(0, 7, proto.MarkIn, now.Add(time.Hour), "gate-1")
	far.Seq, far.Device = 1000, "gate-1"
	env, err := proto.SignPeerMarks(r.hq.key, proto.PeerMarks{Site: "venue", After: 999, Head: 1000, Marks: []proto.Mark{far}})
	if err != nil {
		t.Fatal(err)
	}
	evil.Publish(proto.PeerMarksTopic("venue", "gate-2"), 1, false, env).Wait()
	settle()
	for _, i := range []int{1, 2, 3, 4, 6, 7} {
		if d := g2.store.DecideAt(policy.Request{Credential: ticket(i), Door: "gate-2", Now: time.Now()}); d.Reason != policy.ReasonTicket {
			t.Errorf("unused ticket %d at gate-2 after gate-3's marks: %s, want %s", i, d.Reason, policy.ReasonTicket)
		}
	}
	for _, i := range []int{0, 5} {
		if d := g2.store.DecideAt(policy.Request{Credential: ticket(i), Door: "gate-2", Now: time.Now()}); d.Reason != policy.ReasonTicketUsed {
			t.Errorf("used ticket %d at gate-2 after gate-3's marks: %s, want %s", i, d.Reason, policy.ReasonTicketUsed)
		}
	}
	reps, err := r.hq.svc.MarkReports(context.Background(), "venue")
	if err != nil || len(reps) != 7 {
		t.Errorf("HQ recorded %d mark reports (%v), want 7", len(reps), err)
	}
	for _, rep := range reps {
		if rep.Kind != hq.ReportRefused || rep.Device != "gate-3" {
			t.Errorf("report %+v, want a refusal of gate-3", rep)
			continue
		}
		seq := uint64(0)
		for _, m := range batch.Marks {
			if m.Same(rep.Mark) {
				seq = m.Seq
			}
		}
		if want[seq] == "" || rep.Reason != want[seq] {
			t.Errorf("mark %d refused with %q, want %q", seq, rep.Reason, want[seq])
		}
	}
	// The refusals are reported like the per-device limits': one
	// device_refused event (a minute's worth) and all 7 in the fleet view.
	wantSystemEvent(t, r.hq.svc, "device=gate-3 refused=mark_refused count=1: ", "at door gate-1")
	if n := fleetRefused(t, r.hq.svc, "gate-3", "mark_refused"); n != 7 {
		t.Errorf("fleet view counts %d mark_refused of gate-3, want 7", n)
	}
	select {
	case a := <-acks:
		if a.First != 1 || a.Last != 8 {
			t.Errorf("HQ acknowledged %d..%d, want 1..8", a.First, a.Last)
		}
	case <-time.After(linkDeadline):
		t.Error("HQ never acknowledged the batch")
	}
}

// TestPartitionConflictReported: gates 1 and 2 both offline admit the
// same single-entry ticket (a partition makes it unavoidable). When they
// come back, HQ records the conflict and each gate reports it as a
// "ticket"/"ticket_conflict" event that reaches HQ.
func TestPartitionConflictReported(t *testing.T) {
	r := newRulesRig(t, 2, 4)
	g1, g2 := r.gates[0], r.gates[1]
	g1.halt()
	g2.halt()
	g1.admit(0)
	g2.admit(0)
	g1.start()
	g2.start()
	reps := waitReports(t, r.hq.svc, 1)
	if reps[0].Kind != hq.ReportConflict || reps[0].Other == nil {
		t.Fatalf("HQ report %+v, want a conflict naming the other entry", reps[0])
	}
	wantSystemEvent(t, r.hq.svc, "device="+reps[0].Device+" refused=ticket_conflict count=1: entry of ticket", "also entered at door "+reps[0].Other.Door)
	if n := fleetRefused(t, r.hq.svc, reps[0].Device, "ticket_conflict"); n != 1 {
		t.Errorf("fleet view counts %d ticket_conflict of %s, want 1", n, reps[0].Device)
	}
	for _, dev := range []string{"gate-1", "gate-2"} {
		waitFor(t, "the conflict event of "+dev, func() bool {
			evs, err := r.hq.svc.Events("venue", dev)
			if err != nil {
				t.Fatal(err)
			}
			return slices.ContainsFunc(evs, func(ev proto.Event) bool {
				return ev.Type == proto.TypeTicket && ev.Reason == tsync.ReasonTicketConflict
			})
		})
	}
	for _, g := range r.gates {
		if d := g.store.DecideAt(policy.Request{Credential: ticket(0), Door: g.device, Now: time.Now()}); d.Reason != policy.ReasonTicketUsed {
			t.Errorf("ticket 0 at %s after the conflict: %s, want %s", g.device, d.Reason, policy.ReasonTicketUsed)
		}
	}
}

// wantSystemEvent waits until HQ has stored, under hq.SystemDevice of the
// venue, a device_refused event whose detail starts with prefix and
// contains part.
func wantSystemEvent(t *testing.T, h *hq.Service, prefix, part string) {
	t.Helper()
	var evs []proto.Event
	waitFor(t, "HQ's device_refused event "+prefix, func() bool {
		var err error
		if evs, err = h.Events("venue", hq.SystemDevice); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(evs, func(ev proto.Event) bool {
			return ev.Type == proto.TypeSystem && ev.Reason == hq.ReasonDeviceRefused &&
				strings.HasPrefix(ev.Detail, prefix) && strings.Contains(ev.Detail, part)
		})
	})
}

// fleetRefused returns how many messages of the venue's device HQ's fleet
// view counts as refused for reason.
func fleetRefused(t *testing.T, h *hq.Service, device, reason string) uint64 {
	t.Helper()
	devs, err := h.Fleet()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if d.Site == "venue" && d.Device == device {
			return d.Refused[reason]
		}
	}
	return 0
}
