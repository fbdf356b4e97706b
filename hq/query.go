package hq

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
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

// errStop ends a Query early.
var errStop = errors.New("stop")

// Query calls fn for each stored event selected by q, in order of site,
// device and sequence number. It scans the selected devices' events: the
// bbolt store has no secondary indexes (see docs/PROTOCOL.md, caveats). An
// error from fn ends the query and is returned.
func (h *Service) Query(q EventQuery, fn func(StoredEvent) error) error {
	n := 0
	err := h.db.View(func(tx *bolt.Tx) error {
		devs := tx.Bucket(bucketDevices)
		return devs.ForEachBucket(func(name []byte) error {
			site, device, _ := strings.Cut(string(name), "/")
			if q.Site != "" && site != q.Site || q.Device != "" && device != q.Device {
				return nil
			}
			evs := devs.Bucket(name).Bucket(bucketEvents)
			if evs == nil {
				return nil
			}
			return evs.ForEach(func(k, v []byte) error {
				var ev proto.Event
				if err := json.Unmarshal(v, &ev); err != nil {
					return fmt.Errorf("decode event %s seq %d: %w", name, boltfile.SeqOf(k), err)
				}
				if !q.match(ev) {
					return nil
				}
				if err := fn(StoredEvent{Site: site, Device: device, Event: ev}); err != nil {
					return err
				}
				n++
				if q.Limit > 0 && n >= q.Limit {
					return errStop
				}
				return nil
			})
		})
	})
	if errors.Is(err, errStop) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("query events in %s: %w", h.path, err)
	}
	return nil
}
