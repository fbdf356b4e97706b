package alarm_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/hq/pgstore/pgstoretest"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/sync/proto"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend is one alarm.Store.
type backend struct {
	name string
	// open returns n lists on one new, empty store (for PostgreSQL on n
	// connection pools, like replicas).
	open func(t *testing.T, n int) []*alarm.List
}

var backends = []backend{
	{"memory", func(_ *testing.T, n int) []*alarm.List {
		l := alarm.NewMemory()
		return slices.Repeat([]*alarm.List{l}, n)
	}},
	{"bbolt", func(t *testing.T, n int) []*alarm.List {
		db, err := bolt.Open(filepath.Join(t.TempDir(), "console.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var out []*alarm.List
		for range n { // lists keep nothing in memory: a new one is a restart
			l, err := alarm.Open(db, []byte("test-format"))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, l)
		}
		return out
	}},
	{"postgres", func(t *testing.T, n int) []*alarm.List {
		var out []*alarm.List
		for _, st := range pgstoretest.Replicas(t, n) {
			out = append(out, alarm.NewList(st.Alarms()))
		}
		return out
	}},
}

func door(reason string) proto.Event {
	return proto.Event{Type: proto.TypeDoor, Door: "front", Reason: reason}
}

// TestStateMachine walks events and acknowledgements through the list
// and checks the state of one alarm after each step.
func TestStateMachine(t *testing.T) {
	wrongPIN := proto.Event{Type: proto.TypeDecision, Door: "front", Reason: "pin_wrong"}
	granted := proto.Event{Type: proto.TypeDecision, Door: "front", Granted: true}
	type step struct {
		ev      *proto.Event
		ack     string // comment; "" no ack
		online  *bool
		wantErr error
		raised  int
		state   alarm.State // "" absent
		count   int
	}
	off, on := false, true
	ev := func(e proto.Event) *proto.Event { return &e }
	tests := []struct {
		name  string
		id    string
		steps []step
	}{
		{"forced open, ack, close", alarm.ID("s", "d", "front", alarm.ForcedOpen), []step{
			{ev: ev(door("forced_open")), raised: 1, state: alarm.Active, count: 1},
			{ev: ev(door("forced_open")), state: alarm.Active, count: 2},
			{ack: "guard sent", state: alarm.Acknowledged, count: 2},
			{ack: "again", wantErr: alarm.ErrState, state: alarm.Acknowledged, count: 2},
			{ev: ev(door("forced_cleared")), state: alarm.Cleared, count: 2},
			{ack: "late", wantErr: alarm.ErrState, state: alarm.Cleared, count: 2},
			{ev: ev(door("forced_open")), raised: 1, state: alarm.Active, count: 1},
		}},
		{"held open cleared unacknowledged", alarm.ID("s", "d", "front", alarm.HeldOpen), []step{
			{ev: ev(door("held_open")), raised: 1, state: alarm.Active, count: 1},
			{ev: ev(door("closed")), state: alarm.Cleared, count: 1},
		}},
		{"no comment", alarm.ID("s", "d", "front", alarm.Tamper), []step{
			{ev: ev(door("tamper")), raised: 1, state: alarm.Active, count: 1},
			{ack: " ", wantErr: alarm.ErrComment, state: alarm.Active, count: 1},
		}},
		{"repeated wrong PIN", alarm.ID("s", "d", "front", alarm.WrongPIN), []step{
			{ev: &wrongPIN},
			{ev: &wrongPIN},
			{ev: &wrongPIN, raised: 1, state: alarm.Active, count: 1},
			{ev: &granted, state: alarm.Cleared, count: 1},
		}},
		{"ticket conflict reported by HQ", alarm.ID("s", "gate-2", "", alarm.TicketConflict), []step{
			{ev: &proto.Event{Type: proto.TypeSystem, Reason: "device_refused", Detail: "device=gate-2 refused=ticket_conflict count=1: x"},
				raised: 1, state: alarm.Active, count: 1},
		}},
		{"offline", alarm.ID("s", "d", "", alarm.Offline), []step{
			{online: &off, raised: 1, state: alarm.Active, count: 1},
			{online: &off, state: alarm.Active, count: 1},
			{online: &on, state: alarm.Cleared, count: 1},
		}},
	}
	for _, b := range backends {
		for _, tt := range tests {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				l := b.open(t, 1)[0]
				for i, s := range tt.steps {
					now := t0.Add(time.Duration(i) * time.Second)
					var err error
					raised := 0
					switch {
					case s.ev != nil:
						var as []alarm.Alarm
						as, err = l.Observe("s", "d", *s.ev, now)
						raised = len(as)
					case s.online != nil:
						var a *alarm.Alarm
						a, err = l.SetOnline("s", "d", *s.online, now)
						if a != nil {
							raised = 1
						}
					default:
						_, _, err = l.Ack(tt.id, "op", s.ack, now)
					}
					if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
						t.Fatalf("step %d: err %v, want %v", i, err, s.wantErr)
					}
					if raised != s.raised {
						t.Fatalf("step %d: raised %d, want %d", i, raised, s.raised)
					}
					a, err := l.Get(tt.id)
					if s.state == "" {
						if !errors.Is(err, alarm.ErrNotFound) {
							t.Fatalf("step %d: alarm %+v, want none", i, a)
						}
						continue
					}
					if err != nil || a.State != s.state || a.Count != s.count {
						t.Fatalf("step %d: %+v %v, want state %s count %d", i, a, err, s.state, s.count)
					}
				}
			})
		}
	}
}

// TestRestartKeepsAlarms checks that a list opened again on the same
// store has the alarms and acknowledgements of the one before.
func TestRestartKeepsAlarms(t *testing.T) {
	for _, b := range backends {
		if b.name == "memory" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			ls := b.open(t, 2) // two lists on one store: the second is "after a restart"
			if _, err := ls[0].Observe("s", "d", door("forced_open"), t0); err != nil {
				t.Fatal(err)
			}
			id := alarm.ID("s", "d", "front", alarm.ForcedOpen)
			if _, _, err := ls[0].Ack(id, "op", "checked", t0); err != nil {
				t.Fatal(err)
			}
			a, err := ls[1].Get(id)
			if err != nil || a.State != alarm.Acknowledged || a.AckComment != "checked" || !a.First.Equal(t0) {
				t.Fatalf("after restart: %+v %v", a, err)
			}
			all, err := ls[1].All()
			if err != nil || len(all) != 1 || all[0].ID != id {
				t.Fatalf("All after restart = %+v, %v", all, err)
			}
		})
	}
}

// TestConcurrentRaise: lists on one store (for PostgreSQL on two
// connection pools: two replicas) see the same alarm at once: it is raised
// anew exactly once and counted every time.
func TestConcurrentRaise(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ls := b.open(t, 2)
			const workers, each = 4, 10
			var wg sync.WaitGroup
			var mu sync.Mutex
			raised := 0
			for w := range workers {
				wg.Go(func() {
					for range each {
						as, err := ls[w%2].Observe("s", "d", door("forced_open"), t0)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						raised += len(as)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			a, err := ls[0].Get(alarm.ID("s", "d", "front", alarm.ForcedOpen))
			if raised != 1 || err != nil || a.Count != workers*each {
				t.Fatalf("raised %d times, count %d (%v); want once, %d", raised, a.Count, err, workers*each)
			}
		})
	}
}

// TestWrongPINsAcrossLists: the wrong PINs of one door seen by two lists
// on one store (for PostgreSQL two connection pools: two replicas taking
// turns with the door's events) count together, 2 on one and 1 on the
// other raise the alarm exactly once; wrong PINs older than the window do
// not count. bbolt and memory are one process's: the lists on one store
// count in the process (one list in tobira-hq), so only PostgreSQL runs.
func TestWrongPINsAcrossLists(t *testing.T) {
	postgres := backends[slices.IndexFunc(backends, func(b backend) bool { return b.name == "postgres" })]
	wrong := proto.Event{Type: proto.TypeDecision, Door: "front", Reason: "pin_wrong"}
	id := alarm.ID("s", "d", "front", alarm.WrongPIN)
	tests := []struct {
		name   string
		at     []time.Duration // when each wrong PIN comes, alternating lists A, B, A, ...
		raised int
	}{
		{"two on A one on B", []time.Duration{0, time.Second, 2 * time.Second}, 1},
		{"fourth seen again", []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second}, 1},
		{"the first too old", []time.Duration{0, alarm.WrongPINWindow, alarm.WrongPINWindow + time.Second}, 0},
		{"within the window", []time.Duration{0, alarm.WrongPINWindow - 2*time.Second, alarm.WrongPINWindow - time.Second}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := postgres.open(t, 2)
			raised := 0
			for i, d := range tt.at {
				as, err := ls[i%2].Observe("s", "d", wrong, t0.Add(d))
				if err != nil {
					t.Fatal(err)
				}
				raised += len(as)
			}
			a, err := ls[0].Get(id)
			if raised != tt.raised || (tt.raised > 0 && (err != nil || a.State != alarm.Active || a.Count != len(tt.at)-2)) {
				t.Fatalf("raised %d (%+v, %v), want %d", raised, a, err, tt.raised)
			}
		})
	}
}

// TestWrongPINsAtOnce: WrongPINCount wrong PINs at one door arriving at
// the same moment on two lists (replicas) on PostgreSQL are each counted
// once, in turn (the door's lock): the alarm is raised exactly once.
func TestWrongPINsAtOnce(t *testing.T) {
	postgres := backends[slices.IndexFunc(backends, func(b backend) bool { return b.name == "postgres" })]
	wrong := proto.Event{Type: proto.TypeDecision, Door: "front", Reason: "pin_wrong"}
	for round := range 5 {
		ls := postgres.open(t, 2)
		var wg sync.WaitGroup
		var mu sync.Mutex
		raised := 0
		start := make(chan struct{})
		for i := range alarm.WrongPINCount {
			wg.Go(func() {
				<-start
				as, err := ls[i%2].Observe("s", "d", wrong, t0)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				raised += len(as)
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		if raised != 1 {
			t.Fatalf("round %d: raised %d times, want once", round, raised)
		}
	}
}
