package sync

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/sync/proto"
)

// The policy store's marks and the wire's marks carry the same facts, and
// the state numbers agree, both ways.
func TestMarkConversion(t *testing.T) {
	at := time.Date(2026, 11, 21, 18, 0, 0, 0, time.UTC)
	tests := []struct {
		store policy.MarkState
		wire  proto.MarkState
	}{
		{policy.MarkIn, proto.MarkIn},
		{policy.MarkOut, proto.MarkOut},
	}
	for _, tt := range tests {
		m := policy.UsedMark{Ticket: []byte{2, 1}, Event: "concert", State: tt.store, At: at, Door: "gate-1"}
		w := wireMarks([]policy.UsedMark{m})[0]
		if w.State != tt.wire || string(w.Ticket) != string(m.Ticket) || w.Event != m.Event || !w.At.Equal(at) || w.Door != m.Door {
			t.Errorf("wireMarks(%+v) = %+v", m, w)
		}
		if back := storeMarks([]proto.Mark{w})[0]; back.State != tt.store || string(back.Ticket) != string(m.Ticket) ||
			back.Event != m.Event || !back.At.Equal(at) || back.Door != m.Door {
			t.Errorf("storeMarks(%+v) = %+v, want %+v", w, back, m)
		}
	}
}

// countingPub counts what is published, by topic.
type countingPub map[string]int

// publish implements publisher.
func (p countingPub) publish(_ context.Context, topic string, _ []byte) error {
	p[topic]++
	return nil
}

// A marks-get asked again deafAfter times on one connection makes the
// loop tell deaf (the Edge then reconnects under another client ID)
// instead of asking once more; a new connection starts the count again.
func TestMarkLoopTellsDeaf(t *testing.T) {
	ob, err := OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	pub := countingPub{}
	var deaf []string
	l := &markLoop{ob: ob, pub: pub, log: slog.New(slog.DiscardHandler), site: "s", device: "d", clk: clock.System{},
		kick: make(chan struct{}, 1), ask: &askBackoff{clk: clock.System{}, first: time.Second},
		deaf: func(why string) { deaf = append(deaf, why) }}
	topic := proto.MarksGetTopic("s", "d")
	for _, step := range []struct {
		what      string
		do        func()
		asks      int // marks-gets published so far
		deafTimes int
	}{
		{"connected", func() { l.connected(t.Context()) }, 1, 0},
		{"asked again twice", func() { l.askAgain(t.Context()); l.askAgain(t.Context()) }, 3, 0},
		{"a third time: deaf, not asked", func() { l.askAgain(t.Context()) }, 3, 1},
		{"asked again after that", func() { l.askAgain(t.Context()) }, 4, 1},
		{"reconnected, asked again twice", func() { l.connected(t.Context()); l.askAgain(t.Context()); l.askAgain(t.Context()) }, 7, 1},
	} {
		step.do()
		if pub[topic] != step.asks || len(deaf) != step.deafTimes {
			t.Fatalf("%s: %d marks-gets, deaf told %d times (%q); want %d, %d", step.what, pub[topic], len(deaf), deaf, step.asks, step.deafTimes)
		}
	}
}

// A connected gate with nothing outstanding asks for the site's marks
// again once refresh has passed since its last marks-get: a push HQ lost
// is caught up then. While a marks-get is unanswered, the backoff times
// the asks instead.
func TestMarkLoopRefreshes(t *testing.T) {
	ob, err := OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	clk := clocktest.New(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	l := &markLoop{ob: ob, pub: countingPub{}, log: slog.New(slog.DiscardHandler), site: "s", device: "d",
		clk: clk, kick: make(chan struct{}, 1), ask: &askBackoff{clk: clk, first: time.Second}, refresh: 30 * time.Second}
	for _, step := range []struct {
		what string
		do   func()
		due  bool
	}{
		{"asked on connecting, unanswered", func() { l.connected(t.Context()) }, false},
		{"still unanswered after refresh", func() { clk.Advance(31 * time.Second) }, false},
		{"answered just now", func() { l.ask.answered(); l.fetch(t.Context()); l.ask.answered() }, false},
		{"29 s later", func() { clk.Advance(29 * time.Second) }, false},
		{"30 s later", func() { clk.Advance(time.Second) }, true},
	} {
		step.do()
		if got := l.refreshDue(); got != step.due {
			t.Fatalf("%s: refresh due %v, want %v", step.what, got, step.due)
		}
	}
}

// Rounds that send the same first mark without an ack have the status
// published again every statusAfter of them (HQ takes a gate's marks only
// once it knows the gate's doors); a new first mark starts the count
// again.
func TestMarkLoopRepeatsStatus(t *testing.T) {
	var nudges int
	l := &markLoop{log: slog.New(slog.DiscardHandler), status: func() { nudges++ }}
	for _, step := range []struct {
		what   string
		first  uint64
		rounds int
		want   int // status nudges so far
	}{
		{"rounds short of statusAfter", 1, statusAfter - 1, 0},
		{"the statusAfter-th", 1, 1, 1},
		{"acked up to 1: mark 2 first", 2, statusAfter - 1, 1},
		{"mark 2 sent statusAfter times", 2, 1, 2},
		{"twice statusAfter", 2, statusAfter, 3},
	} {
		for range step.rounds {
			l.unacked(step.first)
		}
		if nudges != step.want {
			t.Fatalf("%s: %d status nudges, want %d", step.what, nudges, step.want)
		}
	}
}
