package proto_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// peerMark is a well-formed peer mark numbered seq.
func peerMark(seq uint64) proto.Mark {
	return proto.Mark{Seq: seq, Device: "gate-2", Ticket: []byte{2, 1}, Event: "concert", State: proto.MarkIn,
		At: time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC), Door: "gate-2"}
}

// ptr returns a pointer to v.
func ptr(v uint64) *uint64 { return &v }

func TestPeerMarksValidate(t *testing.T) {
	tests := []struct {
		name string
		p    proto.PeerMarks
		ok   bool
	}{
		{"answer", proto.PeerMarks{Site: "venue", After: 41, Head: 42, Marks: []proto.Mark{peerMark(42)}, Asked: ptr(41)}, true},
		{"push", proto.PeerMarks{Site: "venue", After: 41, Head: 45, Marks: []proto.Mark{peerMark(42)}, Pushed: true}, true},
		{"nothing after after", proto.PeerMarks{Site: "venue", After: 7, Head: 7}, true},
		{"from an HQ that marks neither", proto.PeerMarks{Site: "venue", After: 41, Head: 42, Marks: []proto.Mark{peerMark(42)}}, true},
		{"both pushed and an answer", proto.PeerMarks{Site: "venue", After: 41, Head: 42, Marks: []proto.Mark{peerMark(42)}, Asked: ptr(41), Pushed: true}, false},
		{"head before the marks", proto.PeerMarks{Site: "venue", After: 41, Head: 41, Marks: []proto.Mark{peerMark(42)}}, false},
		{"marks not numbered after+1", proto.PeerMarks{Site: "venue", After: 41, Head: 50, Marks: []proto.Mark{peerMark(43)}}, false},
		{"bad site", proto.PeerMarks{Site: "ven/ue", Head: 1}, false},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, proto.ErrMalformed) {
			t.Errorf("%s: Validate() = %v, want ok=%v (or ErrMalformed)", tt.name, err, tt.ok)
		}
	}
}

// Renumbered tells a gate to fetch the marks from the start only when HQ
// says its numbering is behind what the gate asked for; a push, or an
// answer overtaken by a push, behind the cursor is stale, not news.
func TestPeerMarksRenumbered(t *testing.T) {
	tests := []struct {
		name string
		p    proto.PeerMarks
		cur  uint64
		want bool
	}{
		{"answer at the cursor", proto.PeerMarks{After: 20, Head: 20, Asked: ptr(20)}, 20, false},
		{"answer overtaken by a push", proto.PeerMarks{After: 15, Head: 15, Asked: ptr(15)}, 20, false},
		{"answer: HQ's head behind what was asked", proto.PeerMarks{After: 3, Head: 3, Asked: ptr(20)}, 20, true},
		{"push behind the cursor", proto.PeerMarks{After: 14, Head: 15, Pushed: true}, 20, false},
		{"push ahead", proto.PeerMarks{After: 20, Head: 21, Pushed: true}, 20, false},
		{"from an HQ that marks neither, behind", proto.PeerMarks{After: 14, Head: 15}, 20, true},
		{"from an HQ that marks neither, at the cursor", proto.PeerMarks{After: 20, Head: 20}, 20, false},
	}
	for _, tt := range tests {
		if got := tt.p.Renumbered(tt.cur); got != tt.want {
			t.Errorf("%s: Renumbered(%d) = %v, want %v", tt.name, tt.cur, got, tt.want)
		}
	}
}
