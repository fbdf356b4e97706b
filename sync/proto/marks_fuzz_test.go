package proto_test

import (
	"encoding/json"
	"testing"

	"github.com/tobira-ac/tobira/sync/proto"
)

func FuzzDecodeMarksAndEnrollment(f *testing.F) {
	f.Add([]byte(`{"site":"venue","device":"gate-1","marks":[{"ticket":"AgE=","event":"e","state":1,"at":"2026-11-21T00:00:00Z","door":"gate-1"}]}`))
	f.Add([]byte(`{"site":"venue","device":"gate-1","seq":1,"record":{"a":1}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if mb, err := proto.DecodeMarks(proto.MarksTopic("venue", "gate-1"), b); err == nil {
			if len(mb.Marks) == 0 || len(mb.Marks) > proto.MaxMarks || mb.Site != "venue" {
				t.Fatalf("accepted a bad batch: %+v", mb)
			}
			for _, m := range mb.Marks {
				if m.At.IsZero() || len(m.Ticket) == 0 || (m.State != proto.MarkIn && m.State != proto.MarkOut) {
					t.Fatalf("accepted a bad mark: %+v", m)
				}
			}
		}
		if en, err := proto.DecodeEnrollment(proto.EnrollTopic("venue", "gate-1"), b); err == nil {
			if en.Seq == 0 || en.Device != "gate-1" || !json.Valid(en.Record) {
				t.Fatalf("accepted a bad enrollment: %+v", en)
			}
		}
	})
}
