package hq

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// HQ keeps what devices send in a Store. Two implementations exist: the
// bbolt file of Config.Path (the embedded default, in this package) and
// PostgreSQL (hq/pgstore), passed as Config.Store. Both keep each event
// once by (site, device, seq) and acknowledge the contiguous prefix only.

// EventBatch is one device's events as one message brought them, to be
// stored by an EventStore.
type EventBatch struct {
	// Site and Device name the sending device.
	Site string
	// Device is the sending device's name.
	Device string
	// Events are the events in sequence order.
	Events []proto.Event
	// JSON holds each event of Events encoded as json.Marshal does (made
	// by NewEventBatch, outside the store's transaction).
	JSON [][]byte
	// Received is when HQ received the message; PostgreSQL partitions
	// events by it.
	Received time.Time
}

// NewEventBatch returns the batch of evs from site/device received at
// received, with each event encoded.
func NewEventBatch(site, device string, received time.Time, evs []proto.Event) (EventBatch, error) {
	b := EventBatch{Site: site, Device: device, Events: evs, JSON: make([][]byte, len(evs)), Received: received}
	for i, ev := range evs {
		v, err := json.Marshal(ev)
		if err != nil {
			return EventBatch{}, fmt.Errorf("encode event seq %d of %s/%s: %w", ev.Seq, site, device, err)
		}
		b.JSON[i] = v
	}
	return b, nil
}

// BatchResult is what storing one EventBatch did.
type BatchResult struct {
	// Ack is the device's acknowledgement point after the batch: the
	// highest sequence number up to which every event is held (0: none).
	Ack uint64
	// Added are the batch's events that were not held before.
	Added []proto.Event
	// Dups counts the batch's events that were already held.
	Dups int
}

// EventStore keeps devices' events, each once by (site, device, seq).
type EventStore interface {
	// StoreEvents stores batches in one transaction and returns one
	// result per batch, in order, once the transaction is committed
	// (durably); on error nothing of it is stored. Batches of the same
	// device are applied in order.
	StoreEvents(ctx context.Context, batches []EventBatch) ([]BatchResult, error)
	// Acked returns the device's acknowledgement point (0: unknown).
	Acked(ctx context.Context, site, device string) (uint64, error)
	// Events returns a device's events in sequence order, including any
	// held beyond a gap.
	Events(ctx context.Context, site, device string) ([]proto.Event, error)
	// Count returns how many events are stored, over all devices.
	Count(ctx context.Context) (int, error)
	// Query calls fn for each event selected by q in order of site,
	// device and sequence number; an error from fn ends it and is
	// returned.
	Query(ctx context.Context, q EventQuery, fn func(StoredEvent) error) error
	// QueryPage returns up to limit events selected by q, newest first,
	// after the cursor after; see Service.QueryPage.
	QueryPage(ctx context.Context, q EventQuery, after Cursor, limit int) (EventPage, error)
}

// DeviceRecord is what a DeviceStore holds of one device.
type DeviceRecord struct {
	// Site and Device name the device.
	Site string
	// Device is the device's name.
	Device string
	// Acked is the device's acknowledgement point (0: no events).
	Acked uint64
	// Status is the last status stored (zero when none).
	Status proto.Status
	// Seen is when the last status was received (zero when none).
	Seen time.Time
}

// DeviceStore keeps each device's last status, and the results devices
// report.
type DeviceStore interface {
	// PutStatus stores the device's status received at received. An
	// offline status (a last will) keeps the last known facts and only
	// marks them offline.
	PutStatus(ctx context.Context, site, device string, st proto.Status, received time.Time) error
	// Devices returns every device with events or a status, sorted by
	// site and device.
	Devices(ctx context.Context) ([]DeviceRecord, error)
	// PutResult stores a result by its ID, replacing an older one.
	PutResult(ctx context.Context, r proto.Result, received time.Time) error
	// Result returns the result of a command or transfer ID, and false
	// when none is stored.
	Result(ctx context.Context, id string) (proto.Result, bool, error)
}

// Store is what a Service keeps its data in.
type Store interface {
	EventStore
	DeviceStore
	// Close releases the store.
	Close() error
}
