package alarm

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/sync/proto"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

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
		state   State // "" absent
		count   int
	}
	off, on := false, true
	ev := func(e proto.Event) *proto.Event { return &e }
	tests := []struct {
		name  string
		id    string
		steps []step
	}{
		{"forced open, ack, close", ID("s", "d", "front", ForcedOpen), []step{
			{ev: ev(door("forced_open")), raised: 1, state: Active, count: 1},
			{ev: ev(door("forced_open")), state: Active, count: 2},
			{ack: "guard sent", state: Acknowledged, count: 2},
			{ack: "again", wantErr: ErrState, state: Acknowledged, count: 2},
			{ev: ev(door("forced_cleared")), state: Cleared, count: 2},
			{ack: "late", wantErr: ErrState, state: Cleared, count: 2},
			{ev: ev(door("forced_open")), raised: 1, state: Active, count: 1},
		}},
		{"held open cleared unacknowledged", ID("s", "d", "front", HeldOpen), []step{
			{ev: ev(door("held_open")), raised: 1, state: Active, count: 1},
			{ev: ev(door("closed")), state: Cleared, count: 1},
		}},
		{"no comment", ID("s", "d", "front", Tamper), []step{
			{ev: ev(door("tamper")), raised: 1, state: Active, count: 1},
			{ack: " ", wantErr: ErrComment, state: Active, count: 1},
		}},
		{"repeated wrong PIN", ID("s", "d", "front", WrongPIN), []step{
			{ev: &wrongPIN},
			{ev: &wrongPIN},
			{ev: &wrongPIN, raised: 1, state: Active, count: 1},
			{ev: &granted, state: Cleared, count: 1},
		}},
		{"ticket conflict reported by HQ", ID("s", "gate-2", "", TicketConflict), []step{
			{ev: &proto.Event{Type: proto.TypeSystem, Reason: "device_refused", Detail: "device=gate-2 refused=ticket_conflict count=1: x"},
				raised: 1, state: Active, count: 1},
		}},
		{"offline", ID("s", "d", "", Offline), []step{
			{online: &off, raised: 1, state: Active, count: 1},
			{online: &off, state: Active, count: 1},
			{online: &on, state: Cleared, count: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewMemory()
			for i, s := range tt.steps {
				now := t0.Add(time.Duration(i) * time.Second)
				var err error
				raised := 0
				switch {
				case s.ev != nil:
					var as []Alarm
					as, err = l.Observe("s", "d", *s.ev, now)
					raised = len(as)
				case s.online != nil:
					var a *Alarm
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
					if !errors.Is(err, ErrNotFound) {
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

// TestRestartKeepsAlarms checks that a list opened again on the same
// file has the alarms and acknowledgements of the one before.
func TestRestartKeepsAlarms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.db")
	open := func() (*bolt.DB, *List) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Open(db, []byte("test-format"))
		if err != nil {
			t.Fatal(err)
		}
		return db, l
	}
	db, l := open()
	if _, err := l.Observe("s", "d", door("forced_open"), t0); err != nil {
		t.Fatal(err)
	}
	id := ID("s", "d", "front", ForcedOpen)
	if _, _, err := l.Ack(id, "op", "checked", t0); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, l = open()
	defer db.Close()
	a, err := l.Get(id)
	if err != nil || a.State != Acknowledged || a.AckComment != "checked" || !a.First.Equal(t0) {
		t.Fatalf("after restart: %+v %v", a, err)
	}
}
