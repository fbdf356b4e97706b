// Package prototest holds helpers for tests of code that speaks the wire
// contract (sync/proto): the edge, HQ and the end-to-end tests.
package prototest

import (
	"fmt"

	"github.com/tobira-ac/tobira/sync/proto"
)

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
