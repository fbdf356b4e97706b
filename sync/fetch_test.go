package sync

import (
	"log/slog"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/proto"
)

// A sync-get asked again deafAfter times on one connection makes the
// fetch tell deaf instead of asking once more; an answer or a new
// connection starts the count again.
func TestSyncFetchTellsDeaf(t *testing.T) {
	pub := countingPub{}
	var deaf []string
	f := &syncFetch{pub: pub, log: slog.New(slog.DiscardHandler), site: "s", device: "d", clk: clock.System{},
		kick: make(chan struct{}, 1), ask: &askBackoff{clk: clock.System{}, first: time.Second},
		have: func() (proto.SyncGet, error) { return proto.SyncGet{}, nil },
		deaf: func(why string) { deaf = append(deaf, why) }}
	topic := proto.SyncGetTopic("s", "d")
	for _, step := range []struct {
		what      string
		do        func()
		asks      int // sync-gets published so far
		deafTimes int
	}{
		{"connected", func() { f.connected(t.Context()) }, 1, 0},
		{"asked again twice", func() { f.askAgain(t.Context()); f.askAgain(t.Context()) }, 3, 0},
		{"a third time: deaf, not asked", func() { f.askAgain(t.Context()) }, 3, 1},
		{"reconnected, asked again twice", func() { f.connected(t.Context()); f.askAgain(t.Context()); f.askAgain(t.Context()) }, 6, 1},
		{"answered, asked again twice", func() {
			f.mu.Lock()
			id := f.id
			f.mu.Unlock()
			f.onAnswer(t.Context(), "t", []byte(`{"id":"`+id+`"}`))
			f.askAgain(t.Context())
			f.askAgain(t.Context())
		}, 8, 1},
	} {
		step.do()
		if pub[topic] != step.asks || len(deaf) != step.deafTimes {
			t.Fatalf("%s: %d sync-gets, deaf told %d times (%q); want %d, %d", step.what, pub[topic], len(deaf), deaf, step.asks, step.deafTimes)
		}
	}
}
