package sync

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
)

// An enrollment sent every ack timeout without an ack for deafAcks ack
// timeouts on one connection makes the loop tell deaf; an ack (another
// first pending record) or a new connection starts the count again.
func TestEnrollLoopTellsDeaf(t *testing.T) {
	ob, err := OpenOutbox(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	for range 2 {
		if _, err := ob.AppendEnrollment([]byte(`{"card":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	clk := clocktest.New(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	var deaf []string
	l := &enrollLoop{ob: ob, pub: countingPub{}, up: func() bool { return true }, clk: clk, log: slog.New(slog.DiscardHandler),
		site: "s", device: "d", ackTimeout: 2 * time.Second, kick: make(chan struct{}, 1),
		deaf: func(why string) { deaf = append(deaf, why) }}
	// round is one pass of run: send what is pending, one ack timeout.
	round := func() {
		pending, err := ob.PendingEnrollments()
		if err != nil {
			t.Fatal(err)
		}
		if l.send(t.Context(), pending) {
			l.unacked(pending[0].Seq)
		}
		clk.Advance(l.ackTimeout)
	}
	for _, step := range []struct {
		what   string
		do     func()
		rounds int
		want   int // deaf told so far
	}{
		{"4 rounds, 6 s", func() {}, 4, 0},
		{"the round at 8 s", func() {}, 1, 1},
		{"enrollment 1 acked, 4 rounds of 2", func() { l.onAck("t", []byte(`{"seq":1}`)) }, 4, 1},
		{"reconnected, 4 rounds", func() { l.connected(t.Context()) }, 4, 1},
		{"the round at 8 s", func() {}, 1, 2},
	} {
		step.do()
		for range step.rounds {
			round()
		}
		if len(deaf) != step.want {
			t.Fatalf("%s: deaf told %d times (%q), want %d", step.what, len(deaf), deaf, step.want)
		}
	}
}
