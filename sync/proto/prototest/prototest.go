// Package prototest holds helpers for tests of code that speaks the wire
// contract (sync/proto): the edge, HQ and the end-to-end tests.
package prototest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// Base is the time of Event(0).
var Base = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// Event returns a plausible decision event number i (Seq 0), one second
// after event i-1.
func Event(i int) proto.Event {
	return proto.Event{
		Time:       Base.Add(time.Duration(i) * time.Second),
		Type:       proto.TypeDecision,
		Door:       "main-gate",
		Granted:    i%3 != 0,
		Reason:     "enrolled",
		Credential: fmt.Sprintf("01%s%06x", strings.Repeat("a1", 20), i),
		Token:      "mynumber",
		DecisionUS: int64(900 + i),
	}
}

// BatchPayload encodes events first..last (inclusive) of a device, event i
// with sequence number i.
func BatchPayload(t testing.TB, site, device string, first, last int) []byte {
	t.Helper()
	b := proto.Batch{Site: site, Device: device}
	for i := first; i <= last; i++ {
		ev := Event(i)
		ev.Seq = uint64(i)
		b.Events = append(b.Events, ev)
	}
	p, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Appender is an event log that assigns sequence numbers, such as the
// edge's outbox.
type Appender interface {
	Append(ev proto.Event) (proto.Event, error)
}

// AppendN appends Event(first)..Event(first+n-1) to a and returns what was
// stored.
func AppendN(t testing.TB, a Appender, first, n int) []proto.Event {
	t.Helper()
	var out []proto.Event
	for i := first; i < first+n; i++ {
		ev, err := a.Append(Event(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// Seqs returns the sequence numbers of evs.
func Seqs(evs []proto.Event) []uint64 {
	var s []uint64
	for _, ev := range evs {
		s = append(s, ev.Seq)
	}
	return s
}

// EventStore holds events by device, such as HQ's store.
type EventStore interface {
	Events(site, device string) ([]proto.Event, error)
}

// StoredSeqs returns the sequence numbers s holds for a device, formatted
// as fmt.Sprint of a []uint64.
func StoredSeqs(t testing.TB, s EventStore, site, device string) string {
	t.Helper()
	evs, err := s.Events(site, device)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(Seqs(evs))
}

// DiffEvents describes the first difference between got and want (events
// compared with proto.Event.Equal), or returns "" when they are the same.
func DiffEvents(got, want []proto.Event) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d events, want %d", len(got), len(want))
	}
	for i := range got {
		if !got[i].Equal(want[i]) {
			return fmt.Sprintf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	return ""
}
