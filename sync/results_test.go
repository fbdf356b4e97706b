package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/tobira-ac/tobira/sync/proto"
)

// downPublisher fails every publish: no broker.
type downPublisher struct{}

func (downPublisher) publish(context.Context, string, []byte) error {
	return errors.New("broker unreachable")
}

// The result sender keeps the latest results with an ID, oldest first, at
// most proto.MaxStatusResults, also those it could not publish: the status
// carries them to HQ.
func TestResultSenderKeepsLatest(t *testing.T) {
	tests := []struct {
		name  string
		sent  int
		first int // index of the oldest kept
	}{
		{"none", 0, 0},
		{"a few", 3, 0},
		{"exactly the bound", proto.MaxStatusResults, 0},
		{"more than the bound", proto.MaxStatusResults + 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &resultSender{pub: downPublisher{}, topic: proto.ResultTopic("s1", "d1"), log: slog.New(slog.DiscardHandler)}
			r.send(t.Context(), proto.Result{Site: "s1", Device: "d1", Status: proto.ResultRefused}) // no ID: not kept
			for i := range tt.sent {
				r.send(t.Context(), proto.Result{ID: fmt.Sprint(i), Site: "s1", Device: "d1", Status: proto.ResultDone})
			}
			got := r.latest()
			if want := tt.sent - tt.first; len(got) != want {
				t.Fatalf("kept %d results, want %d", len(got), want)
			}
			for i, res := range got {
				if want := fmt.Sprint(tt.first + i); res.ID != want {
					t.Fatalf("result %d is %s, want %s", i, res.ID, want)
				}
			}
		})
	}
}
