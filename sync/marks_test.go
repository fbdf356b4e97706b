package sync

import (
	"testing"
	"time"

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
