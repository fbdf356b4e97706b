package e2e_test

// Single-entry tickets under faults (issue 12, item 1): a ticket used at
// gate 1 must be refused at gate 2 whatever happened to HQ, the broker or
// HQ's session in between, through a real mosquitto.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/faultproxy"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// markWait bounds how long a gate may take to learn another gate's mark
// once HQ and the broker are back. It is an integration deadline.
const markWait = 15 * time.Second

// testGate is one gate of the venue: its policy store stays, its link can
// be stopped and started again on the same outbox file.
type testGate struct {
	t      *testing.T
	url    string
	device string
	key    ed25519.PublicKey
	store  *policy.Store
	obPath string
	known  *knownSet     // tickets it holds marks of (in memory)
	checks time.Duration // online-check budget; 0: off
	noMark bool          // no mark sharing (only online checks)
	edge   *tsync.Edge
	stop   func()
}

// newTestGate returns gate device of a venue of n tickets, not running.
func newTestGate(t *testing.T, url, device string, key ed25519.PublicKey, n int) *testGate {
	g := &testGate{t: t, url: url, device: device, key: key, store: venueStore(t, n),
		obPath: filepath.Join(t.TempDir(), "events.db"), known: newKnownSet()}
	t.Cleanup(g.halt)
	return g
}

// start runs the gate's link.
func (g *testGate) start() {
	g.t.Helper()
	ob, err := tsync.OpenOutbox(g.obPath)
	if err != nil {
		g.t.Fatal(err)
	}
	var marks tsync.MarkStore = trackedMarks{MarkStore: g.store, g: g}
	if g.noMark {
		marks = nil
	}
	e, err := tsync.NewEdge(tsync.EdgeConfig{
		Broker: g.url, Site: "venue", Device: g.device, Marks: marks, TicketChecks: g.checks > 0,
		Status: tsync.StatusFunc(func(context.Context) (proto.Status, error) {
			return proto.Status{Doors: []proto.DoorStatus{{Name: g.device}}}, nil
		}),
		Keys: []ed25519.PublicKey{g.key}, AckTimeout: time.Second, ConnectRetry: 200 * time.Millisecond,
		MaxReconnect: 500 * time.Millisecond, MarkInterval: time.Hour, StatusInterval: time.Hour, Logger: discardLogger(),
	}, ob)
	if err != nil {
		g.t.Fatal(err)
	}
	stop := runStoppable(e.Run)
	g.edge = e
	g.store.SetTicketCheck(e.CheckTicket, g.checks)
	g.stop = func() {
		g.store.SetTicketCheck(nil, 0)
		if err := stop(); err != nil {
			g.t.Errorf("gate %s Run: %v", g.device, err)
		}
		ob.Close()
	}
}

// runStoppable runs run in the background; the function it returns
// cancels run's context and returns run's error.
func runStoppable(run func(context.Context) error) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// halt stops the gate's link (a clean stop); its files stay.
func (g *testGate) halt() {
	if g.stop != nil {
		g.stop()
		g.stop, g.edge = nil, nil
	}
}

// admit taps ticket i at the gate and wants it admitted.
func (g *testGate) admit(i int) {
	g.t.Helper()
	if d := g.store.DecideAt(policy.Request{Credential: ticket(i), Door: g.device, Now: time.Now()}); d.Reason != policy.ReasonTicket {
		g.t.Fatalf("ticket %d at %s: %s, want %s", i, g.device, d.Reason, policy.ReasonTicket)
	}
	k, _ := ticket(i).Key()
	g.known.add(k) // its own mark
	if g.edge != nil {
		g.edge.Notify()
	}
}

// learned waits up to markWait for a merge carrying ticket i's mark and
// reports whether one came.
func (g *testGate) learned(i int) bool { return g.learnedAll([]int{i}) }

// learnedAll waits up to markWait until merges carried the marks of every
// ticket of is, and reports whether they did.
func (g *testGate) learnedAll(is []int) bool { return g.known.waitAll(is, markWait) }

// trackedMarks is a gate's MarkStore that notes every merged ticket.
type trackedMarks struct {
	tsync.MarkStore
	g *testGate
}

// MergePeerMarks implements tsync.MarkStore.
func (w trackedMarks) MergePeerMarks(ctx context.Context, marks []policy.UsedMark) (policy.MergeResult, error) {
	r, err := w.MarkStore.MergePeerMarks(ctx, marks)
	keys := make([][]byte, len(marks))
	for i, m := range marks {
		keys[i] = m.Ticket
	}
	w.g.known.add(keys...)
	return r, err
}

// wantRefused checks that the gate, once it has had the time to learn
// ticket i's mark, refuses it as used.
func (g *testGate) wantRefused(i int) {
	g.t.Helper()
	if !g.learned(i) {
		g.t.Logf("%s learned nothing of ticket %d within %v", g.device, i, markWait)
	}
	if d := g.store.DecideAt(policy.Request{Credential: ticket(i), Door: g.device, Now: time.Now()}); d.Reason != policy.ReasonTicketUsed {
		g.t.Fatalf("ticket %d, used at another gate, at %s: %s (granted %v), want %s: admitted twice",
			i, g.device, d.Reason, d.Granted, policy.ReasonTicketUsed)
	}
}

// testHQ is an HQ whose process can be stopped and started again on the
// same store, reaching the broker at url (a faultproxy to take it away).
type testHQ struct {
	t        *testing.T
	url      string
	path     string
	clientID string
	key      ed25519.PrivateKey
	rules    hq.TicketRules
	svc      *hq.Service
	stop     func()
}

// newTestHQ returns an HQ for url with its own store, not running.
func newTestHQ(t *testing.T, url string, key ed25519.PrivateKey) *testHQ {
	h := &testHQ{t: t, url: url, path: filepath.Join(t.TempDir(), "hq.db"), clientID: "tobira-hq", key: key}
	t.Cleanup(h.halt)
	return h
}

// start opens the store and runs HQ until halt, waiting until it has
// subscribed.
func (h *testHQ) start() {
	h.t.Helper()
	svc, err := hq.Open(hq.Config{Broker: h.url, Path: h.path, ClientID: h.clientID, Key: h.key, TicketRules: h.rules,
		ConnectRetry: 200 * time.Millisecond, MaxReconnect: 500 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		h.t.Fatal(err)
	}
	stop := runStoppable(svc.Run)
	h.svc = svc
	h.stop = func() {
		if err := stop(); err != nil {
			h.t.Errorf("HQ Run: %v", err)
		}
		svc.Close()
	}
	select {
	case <-svc.Ready():
	case <-time.After(linkDeadline):
		h.t.Fatal("HQ not subscribed in time")
	}
}

// halt stops HQ (a clean stop); its store stays.
func (h *testHQ) halt() {
	if h.stop != nil {
		h.stop()
		h.stop, h.svc = nil, nil
	}
}

// venueRig is a broker, an HQ reaching it through a proxy, and gates.
type venueRig struct {
	m     *mosquittotest.Mosquitto
	proxy *faultproxy.Proxy
	hq    *testHQ
	gates []*testGate
}

// rigOptions shape a venueRig.
type rigOptions struct {
	conf    func(int) string // mosquitto's config; nil: the default
	gates   int              // gates gate-1 .. gate-N
	tickets int              // tickets 0 .. N-1 of event "concert"
	rules   hq.TicketRules   // HQ's ticket rules; nil: none
}

// newVenueRig starts mosquitto (conf: nil for the default config), HQ
// through a proxy and n gates of a venue with tickets tickets, and waits
// until HQ sees every gate online.
func newVenueRig(t *testing.T, conf func(int) string, n, tickets int) *venueRig {
	t.Helper()
	return newVenueRigWith(t, rigOptions{conf: conf, gates: n, tickets: tickets})
}

// newVenueRigWith is newVenueRig with every option.
func newVenueRigWith(t *testing.T, o rigOptions) *venueRig {
	t.Helper()
	conf, n, tickets := o.conf, o.gates, o.tickets
	m := mosquittotest.StartWith(t, mosquittotest.Options{Config: conf})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p, err := faultproxy.Start(ctx, faultproxy.Config{Target: m.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	key := testKeyPair(t)
	r := &venueRig{m: m, proxy: p, hq: newTestHQ(t, p.URL("tcp"), key)}
	r.hq.rules = o.rules
	r.hq.start()
	var names []string
	for i := range n {
		g := newTestGate(t, m.URL(), fmt.Sprintf("gate-%d", i+1), key.Public().(ed25519.PublicKey), tickets)
		g.start()
		r.gates = append(r.gates, g)
		names = append(names, g.device)
	}
	waitOnline(t, r.hq.svc, names...)
	return r
}

// hqAway takes HQ's network away (its process keeps running) or brings it
// back.
func (r *venueRig) hqAway(away bool) { r.proxy.SetDown(away) }

// settle gives the link time to carry what was just recorded.
func settle() { time.Sleep(time.Second) }

// TestTicketOnceAfterHQRestart is item 1 (a): gate 2 offline, gate 1
// admits a ticket, HQ restarts (clean stop), gate 2 comes back.
func TestTicketOnceAfterHQRestart(t *testing.T) {
	r := newVenueRig(t, nil, 2, 4)
	g1, g2 := r.gates[0], r.gates[1]
	g2.halt()
	g1.admit(0)
	settle()
	r.hq.halt()
	r.hq.start()
	g2.start()
	g2.wantRefused(0)
}

// TestTicketOnceAfterBrokerKill is item 1 (b): HQ away, gate 1 admits a
// ticket, the broker is SIGKILLed and restarted, HQ comes back.
func TestTicketOnceAfterBrokerKill(t *testing.T) {
	r := newVenueRig(t, nil, 2, 4)
	g1, g2 := r.gates[0], r.gates[1]
	r.hqAway(true)
	g1.admit(0)
	settle()
	r.m.Restart(t)
	r.hqAway(false)
	g2.wantRefused(0)
}

// maxQueued is the max_queued_messages of the broker of
// TestTicketOnceAfterQueueOverflow: small, so that the overflow is quick.
const maxQueued = 10

// TestTicketOnceAfterQueueOverflow is item 1 (c): HQ away while more
// messages than the broker queues for it (max_queued_messages) are sent,
// then gate 1 admits a ticket, then HQ comes back.
func TestTicketOnceAfterQueueOverflow(t *testing.T) {
	conf := func(port int) string {
		return fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages %d\n", port, maxQueued)
	}
	r := newVenueRig(t, conf, 2, 4)
	g1, g2 := r.gates[0], r.gates[1]
	r.hqAway(true)
	settle()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(r.m.URL()).SetClientID("filler"))
	if tok := c.Connect(); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	for i := range 3 * maxQueued {
		c.Publish(proto.StatusTopic("venue", fmt.Sprintf("filler-%d", i)), 1, false, []byte(`{}`)).Wait()
	}
	c.Disconnect(100)
	g1.admit(0)
	settle()
	r.hqAway(false)
	g2.wantRefused(0)
}

// TestTicketOnceAfterSessionTakeover is item 1 (d): HQ away, a device
// connects once with HQ's client ID (clean session: HQ's persistent session
// is gone), gate 1 admits a ticket, HQ comes back.
func TestTicketOnceAfterSessionTakeover(t *testing.T) {
	r := newVenueRig(t, nil, 2, 4)
	g1, g2 := r.gates[0], r.gates[1]
	r.hqAway(true)
	settle()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(r.m.URL()).SetClientID(r.hq.clientID).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(linkDeadline) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c.Disconnect(100)
	g1.admit(0)
	settle()
	r.hqAway(false)
	g2.wantRefused(0)
}

// TestTicketOnceAfterLostMarksGet: gate 1 admits a ticket while gate 2 is
// stopped; HQ's network goes away and the broker is SIGKILLed (without
// persistence: HQ's session is gone), so gate 2's marks-get on its
// reconnection reaches no subscriber and is dropped. HQ comes back and no
// other mark is made: gate 2 must still learn the ticket (it asks again
// while unanswered).
func TestTicketOnceAfterLostMarksGet(t *testing.T) {
	r := newRulesRig(t, 2, 4)
	g1, g2 := r.gates[0], r.gates[1]
	g2.halt()
	g1.admit(0)
	settle()
	r.hqAway(true)
	r.m.Restart(t)
	g2.start()
	settle() // its marks-get is dropped
	r.hqAway(false)
	g2.wantRefused(0)
}
