package console

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/tobira-ac/tobira/hq"
)

// newer orders events as hq.Service.QueryPage does: newest first.
func newer(a, b hq.StoredEvent) int {
	return cmp.Or(b.Time.Compare(a.Time), strings.Compare(b.Site, a.Site), strings.Compare(b.Device, a.Device), cmp.Compare(b.Seq, a.Seq))
}

// QueryPage pages the fake's events as hq.Service does (the filters of
// Query, and Sites).
func (f *fakeHQ) QueryPage(_ context.Context, q hq.EventQuery, after hq.Cursor, limit int) (hq.EventPage, error) {
	var evs []hq.StoredEvent
	err := f.Query(q, func(ev hq.StoredEvent) error {
		if q.Sites == nil || slices.Contains(q.Sites, ev.Site) {
			evs = append(evs, ev)
		}
		return nil
	})
	slices.SortFunc(evs, newer)
	if !after.IsZero() {
		at := hq.StoredEvent{Site: after.Site, Device: after.Device}
		at.Time, at.Seq = after.Time, after.Seq
		evs = slices.DeleteFunc(evs, func(ev hq.StoredEvent) bool { return newer(ev, at) <= 0 })
	}
	var p hq.EventPage
	if len(evs) > limit {
		evs, p.More = evs[:limit], true
		p.Next = hq.CursorOf(evs[limit-1])
	}
	p.Events = evs
	return p, err
}
