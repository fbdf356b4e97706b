package hq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// EventQuery selects stored events. Zero fields match everything.
type EventQuery struct {
	// Site and Device restrict to one site, or one device.
	Site string
	// Device restricts to one device name (with or without Site).
	Device string
	// Sites, when not nil, restricts to these sites (an account's
	// grant); empty but not nil selects nothing.
	Sites []string
	// From and To bound the event time: From <= time < To.
	From time.Time
	// To is the exclusive upper bound of the event time.
	To time.Time
	// Door restricts to one door.
	Door string
	// Credential restricts to one person's credential (hex key).
	Credential string
	// Credentials, when not nil, restricts to events of any of these
	// credentials (hex keys; a person's); empty but not nil selects
	// nothing.
	Credentials []string
	// Type restricts to TypeDecision, TypeDoor, TypeSystem or TypeTicket.
	Type string
	// Reason restricts to one decision reason or door/system code.
	Reason string
	// Granted, when set, restricts decisions to granted (true) or denied
	// (false) ones.
	Granted *bool
	// Limit stops after that many matches; 0 means no limit.
	Limit int
}

// StoredEvent is an event as HQ holds it, with its device.
type StoredEvent struct {
	// Site is the sending device's site.
	Site string `json:"site"`
	// Device is the sending device.
	Device string `json:"device"`
	proto.Event
}

// match reports whether ev of site/device is selected by q.
func (q EventQuery) match(ev proto.Event) bool {
	switch {
	case !q.From.IsZero() && ev.Time.Before(q.From):
	case !q.To.IsZero() && !ev.Time.Before(q.To):
	case q.Door != "" && ev.Door != q.Door:
	case q.Credential != "" && !strings.EqualFold(ev.Credential, q.Credential):
	case q.Credentials != nil && !slices.ContainsFunc(q.Credentials, func(c string) bool { return strings.EqualFold(ev.Credential, c) }):
	case q.Type != "" && ev.Type != q.Type:
	case q.Reason != "" && ev.Reason != q.Reason:
	case q.Granted != nil && (ev.Type != proto.TypeDecision || ev.Granted != *q.Granted):
	default:
		return true
	}
	return false
}

// siteOK reports whether events of site are selected by q's Site and
// Sites.
func (q EventQuery) siteOK(site string) bool {
	return (q.Site == "" || site == q.Site) && (q.Sites == nil || slices.Contains(q.Sites, site))
}

// Cursor is a position in the newest-first order of events that
// QueryPage returns: by event time, then site, device and sequence number
// (all descending). The page after a cursor starts with the event next
// after it in that order. The zero Cursor is the first page.
type Cursor struct {
	// Time is the event time of the last event of the previous page.
	Time time.Time
	// Site, Device and Seq name that event.
	Site string
	// Device is the event's device.
	Device string
	// Seq is the event's sequence number.
	Seq uint64
}

// CursorOf returns the cursor just after ev.
func CursorOf(ev StoredEvent) Cursor {
	return Cursor{Time: ev.Time, Site: ev.Site, Device: ev.Device, Seq: ev.Seq}
}

// IsZero reports whether c is the start (the first page).
func (c Cursor) IsZero() bool { return c == Cursor{} }

// String encodes c for a URL: "unixnano/site/device/seq" ("" for the
// start). Names cannot contain '/'.
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d/%s/%s/%d", c.Time.UnixNano(), c.Site, c.Device, c.Seq)
}

// ErrBadCursor means a cursor string was not made by Cursor.String.
var ErrBadCursor = errors.New("bad event cursor")

// ParseCursor reads a cursor made by Cursor.String; "" is the start.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) != 4 || parts[1] == "" || parts[2] == "" {
		return Cursor{}, fmt.Errorf("%w %q: want unixnano/site/device/seq", ErrBadCursor, s)
	}
	ns, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w %q: time: %w", ErrBadCursor, s, err)
	}
	seq, err := strconv.ParseUint(parts[3], 10, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w %q: seq: %w", ErrBadCursor, s, err)
	}
	return Cursor{Time: time.Unix(0, ns).UTC(), Site: parts[1], Device: parts[2], Seq: seq}, nil
}

// EventPage is one page of QueryPage.
type EventPage struct {
	// Events are the page's events, newest first.
	Events []StoredEvent
	// Next is the cursor of the next page, valid when More is set.
	Next Cursor
	// More reports that older events may follow.
	More bool
}

// MaxPageSize bounds the limit of QueryPage.
const MaxPageSize = 1000

// pageLimit returns limit bounded to 1..MaxPageSize.
func pageLimit(limit int) int { return min(max(limit, 1), MaxPageSize) }

// QueryPage returns up to limit (at most MaxPageSize) events selected by
// q, newest first, after the cursor after (the zero Cursor: from the
// newest). Both stores answer from an index ordered by event time, so a
// page costs the same on the first and on the millionth page. q.Limit is
// ignored. Events stored between two pages appear in a later page only
// when they are older than its cursor.
func (h *Service) QueryPage(ctx context.Context, q EventQuery, after Cursor, limit int) (EventPage, error) {
	return h.st.QueryPage(ctx, q, after, limit)
}

// Query calls fn for each stored event selected by q, in order of site,
// device and sequence number. On bbolt it scans the selected devices'
// events; PostgreSQL uses its indexes. For pages, newest first, use
// QueryPage. An error from fn ends the query and is returned.
func (h *Service) Query(q EventQuery, fn func(StoredEvent) error) error {
	return h.st.Query(context.Background(), q, fn)
}
