package proto

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzNormalizedEventAcceptedByHQ guards the outbox against jamming: every
// event Outbox.Append would store (normalized, then checked) must be
// accepted by HQ's decoder unchanged, whatever bytes the caller put in.
func FuzzNormalizedEventAcceptedByHQ(f *testing.F) {
	f.Add("main-gate", "enrolled", "01a1", "mynumber", "relay did not answer", int64(1775000000))
	f.Add("\xffa\xff", "r\x00", "", "", "\xff\xfe\xfd", int64(0))
	f.Add("", "", "", "", string(make([]byte, 2000)), int64(-62135596800))
	f.Fuzz(func(t *testing.T, door, reason, cred, token, detail string, unix int64) {
		ev := Event{Seq: 1, Time: time.Unix(unix, 0), Type: TypeDoor, Door: door, Reason: reason,
			Credential: cred, Token: token, Detail: detail}.Normalized()
		if ev.Validate() != nil {
			return // Append refuses it: nothing stored, nothing to jam
		}
		if len(ev.Detail) > MaxDetailLen {
			t.Fatalf("normalized detail is %d bytes", len(ev.Detail))
		}
		p, err := json.Marshal(Batch{Site: "s", Device: "d", Events: []Event{ev}})
		if err != nil {
			t.Fatalf("Append would store an event it cannot encode: %v", err)
		}
		b, err := DecodeBatch(p)
		if err != nil {
			t.Fatalf("HQ rejects a stored event: %v", err)
		}
		got := b.Events[0]
		if !got.Time.Equal(ev.Time) {
			t.Fatalf("time %v came back as %v", ev.Time, got.Time)
		}
		got.Time = ev.Time
		if got != ev {
			t.Fatalf("event changed on the way:\n%+v\n%+v", ev, got)
		}
	})
}
