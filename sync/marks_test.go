package sync

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/signed"
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

// The statusAfter-th round in a row that sends the same first mark
// without an ack has the status published again, once (HQ takes a gate's
// marks only once it knows the gate's doors); a new first mark starts the
// count again.
func TestMarkLoopRepeatsStatus(t *testing.T) {
	var nudges int
	l := &markLoop{log: slog.New(slog.DiscardHandler), clk: clocktest.New(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)),
		status: func() { nudges++ }}
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
		{"twice statusAfter: not again", 2, statusAfter, 2},
	} {
		for range step.rounds {
			l.unacked(step.first)
		}
		if nudges != step.want {
			t.Fatalf("%s: %d status nudges, want %d", step.what, nudges, step.want)
		}
	}
}

// mergeAll is a MarkStore that takes every peer mark and records none.
type mergeAll struct{}

// UsedMarks implements MarkStore.
func (mergeAll) UsedMarks(since uint64, _ int) ([]policy.UsedMark, uint64, error) {
	return nil, since, nil
}

// MergePeerMarks implements MarkStore.
func (mergeAll) MergePeerMarks(_ context.Context, ms []policy.UsedMark) (policy.MergeResult, error) {
	return policy.MergeResult{Changed: len(ms)}, nil
}

// The peer-marks cursor follows HQ's answers and pushes; a push, or an
// answer HQ read before a push that overtook it, behind the cursor leaves
// it alone; an answer saying HQ's head is behind what the gate asked
// (a new store) resets it, and so does any head behind the cursor from an
// HQ that marks neither answers nor pushes.
func TestMarkLoopPeerCursor(t *testing.T) {
	ob, err := OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	pubKey, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signed.NewVerifier(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC)
	marks := func(from, to uint64) []proto.Mark {
		var ms []proto.Mark
		for s := from; s <= to; s++ {
			ms = append(ms, proto.Mark{Seq: s, Device: "g2", Ticket: []byte{byte(s)}, Event: "e", State: proto.MarkIn, At: at, Door: "g2"})
		}
		return ms
	}
	asked := func(v uint64) *uint64 { return &v }
	l := &markLoop{store: mergeAll{}, ob: ob, pub: countingPub{}, v: v, log: slog.New(slog.DiscardHandler), site: "s", device: "d",
		clk: clocktest.New(at), kick: make(chan struct{}, 1), ask: &askBackoff{clk: clock.System{}, first: time.Second}, skew: time.Minute}
	for _, step := range []struct {
		what string
		p    proto.PeerMarks
		want uint64
	}{
		{"answer to after 0", proto.PeerMarks{After: 0, Head: 5, Marks: marks(1, 5), Asked: asked(0)}, 5},
		{"push of 6..8", proto.PeerMarks{After: 5, Head: 8, Marks: marks(6, 8), Pushed: true}, 8},
		{"answer read before that push", proto.PeerMarks{After: 5, Head: 6, Marks: marks(6, 6), Asked: asked(5)}, 8},
		{"push overtaken by a later one", proto.PeerMarks{After: 3, Head: 4, Marks: marks(4, 4), Pushed: true}, 8},
		{"answer: HQ's head behind what was asked", proto.PeerMarks{After: 2, Head: 2, Asked: asked(8)}, 0},
		{"answer from the new store", proto.PeerMarks{After: 0, Head: 3, Marks: marks(1, 3), Asked: asked(0)}, 3},
		{"HQ that marks neither, head behind", proto.PeerMarks{After: 1, Head: 2, Marks: marks(2, 2)}, 0},
	} {
		step.p.Site = "s"
		env, err := proto.SignPeerMarks(key, step.p)
		if err != nil {
			t.Fatal(err)
		}
		l.onPeerMarks(t.Context(), proto.PeerMarksTopic("s", "d"), env)
		if cur, err := ob.PeerMarksCursor(); err != nil || cur != step.want {
			t.Fatalf("%s: cursor %d (%v), want %d", step.what, cur, err, step.want)
		}
	}
}

// Marks sent again and again without an ack for deafAcks ack timeouts on
// one connection make the loop tell deaf (a subscription whose marks-ack
// binding routes nothing); a new connection, or an ack that moves the
// first pending mark on, starts the count again.
func TestMarkLoopTellsDeafOnUnackedMarks(t *testing.T) {
	ob, err := OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	clk := clocktest.New(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	var deaf []string
	l := &markLoop{ob: ob, pub: countingPub{}, log: slog.New(slog.DiscardHandler), site: "s", device: "d", clk: clk,
		ackTimeout: 2 * time.Second, kick: make(chan struct{}, 1), ask: &askBackoff{clk: clk, first: time.Second},
		deaf: func(why string) { deaf = append(deaf, why) }}
	round := func(first uint64) {
		l.unacked(first)
		clk.Advance(time.Second)
	}
	for _, step := range []struct {
		what   string
		first  uint64
		rounds int
		want   int // deaf told so far
	}{
		{"8 s of unacked rounds", 1, 8, 0},
		{"the round at 8 s", 1, 1, 1},
		{"8 s more", 1, 8, 1},
		{"the round at 8 s again", 1, 1, 2},
		{"acked: mark 2 first, 8 s", 2, 8, 2},
	} {
		for range step.rounds {
			round(step.first)
		}
		if len(deaf) != step.want {
			t.Fatalf("%s: deaf told %d times (%q), want %d", step.what, len(deaf), deaf, step.want)
		}
	}
	l.connected(t.Context())
	for range 8 {
		round(2)
	}
	if len(deaf) != 2 {
		t.Fatalf("a new connection did not start the count again: deaf told %d times", len(deaf))
	}
}
