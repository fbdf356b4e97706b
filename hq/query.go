package hq

import (
	"context"
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
	// From and To bound the event time: From <= time < To.
	From time.Time
	// To is the exclusive upper bound of the event time.
	To time.Time
	// Door restricts to one door.
	Door string
	// Credential restricts to one person's credential (hex key).
	Credential string
	// Type restricts to TypeDecision, TypeDoor or TypeSystem.
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
	case q.Type != "" && ev.Type != q.Type:
	case q.Reason != "" && ev.Reason != q.Reason:
	case q.Granted != nil && (ev.Type != proto.TypeDecision || ev.Granted != *q.Granted):
	default:
		return true
	}
	return false
}

// Query calls fn for each stored event selected by q, in order of site,
// device and sequence number. On bbolt it scans the selected devices'
// events (no secondary indexes); PostgreSQL uses its indexes. An error
// from fn ends the query and is returned.
func (h *Service) Query(q EventQuery, fn func(StoredEvent) error) error {
	return h.st.Query(context.Background(), q, fn)
}
