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

func FuzzDecodeSync(f *testing.F) {
	f.Add([]byte(`{"id":"0123456789abcdef0123456789abcdef","want":["snapshot","commands"],"snapshot":3,"applied":["00112233445566778899aabbccddeeff"]}`))
	f.Add([]byte(`{"id":"0123456789abcdef0123456789abcdef","want":["release"],"release":"00112233445566778899aabbccddeeff","groups":["g1"]}`))
	f.Add([]byte(`{"id":"0123456789abcdef0123456789abcdef","snapshot":"e30=","commands":["e30="]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if site, device, g, err := proto.DecodeSyncGet(proto.SyncGetTopic("venue", "gate-1"), b); err == nil {
			if site != "venue" || device != "gate-1" || len(g.Want) == 0 || len(g.Applied) > proto.MaxSyncApplied {
				t.Fatalf("accepted a bad sync-get: %+v", g)
			}
			if _, _, _, err := proto.DecodeSyncGet(proto.SyncGetTopic("venue", "gate-1"), mustJSON(t, g)); err != nil {
				t.Fatalf("sync-get %+v does not survive a round trip: %v", g, err)
			}
		}
		if a, err := proto.DecodeSyncAnswer(b); err == nil {
			if len(a.ID) != 32 || len(a.Commands) > proto.MaxSyncCommands {
				t.Fatalf("accepted a bad sync answer: %+v", a)
			}
			for _, c := range a.Commands {
				if len(c) == 0 {
					t.Fatalf("accepted an empty command: %+v", a)
				}
			}
		}
	})
}

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
