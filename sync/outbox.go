package sync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Outbox file layout (bbolt):
//
//	meta/format    = "tobira-outbox-v1"
//	meta/last_seq  = 8-byte big-endian: the last sequence number assigned
//	events/<seq>   = JSON Event, keyed by 8-byte big-endian seq
var (
	bucketEvents = []byte("events")
	keyLastSeq   = []byte("last_seq")
	outboxFormat = []byte("tobira-outbox-v1")
)

// Outbox is the edge's durable queue of events not yet acknowledged by HQ: a
// bbolt file with fsync on. Every Append is committed to disk before it
// returns, and an event leaves the file only through Ack. Sequence numbers
// are assigned here, start at 1 and never repeat, also after the outbox has
// emptied and across restarts.
//
// An Outbox is safe for concurrent use.
type Outbox struct {
	db    *bolt.DB
	path  string
	depth atomic.Int64 // events stored, kept in step with every commit
}

// OpenOutbox opens the outbox file at path, creating it if it does not
// exist. A file that is not a valid outbox is reported, never truncated or
// rewritten. A file locked by another process is reported after a short wait.
func OpenOutbox(path string) (*Outbox, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltfile.OpenTimeout, NoSync: false})
	if err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return boltfile.Init(tx, outboxFormat, bucketEvents, bucketNonces, bucketTransfer, bucketEnrollments, bucketModes, bucketMarks)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	o := &Outbox{db: db, path: path}
	err = db.View(func(tx *bolt.Tx) error {
		o.depth.Store(int64(tx.Bucket(bucketEvents).Stats().KeyN))
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open outbox %s: count events: %w", path, err)
	}
	return o, nil
}

// Path returns the outbox's file name.
func (o *Outbox) Path() string { return o.path }

// Append assigns ev the next sequence number, stores it durably (the
// transaction is fsynced before Append returns) and returns the stored
// event. Time is stored in UTC, invalid UTF-8 in strings is replaced with
// U+FFFD, and a Detail longer than MaxDetailLen is cut. An event that still
// breaks the field rules is refused with ErrInvalidEvent: HQ would reject
// it, and it would block the outbox.
func (o *Outbox) Append(ev proto.Event) (proto.Event, error) {
	evs, err := o.AppendAll([]proto.Event{ev})
	if err != nil {
		return proto.Event{}, err
	}
	return evs[0], nil
}

// AppendAll is Append for several events in one transaction (one fsync):
// either all of them are stored, with consecutive sequence numbers in the
// order given, or none. It returns the stored events. One invalid event
// refuses the whole call with ErrInvalidEvent.
func (o *Outbox) AppendAll(evs []proto.Event) ([]proto.Event, error) {
	out := make([]proto.Event, len(evs))
	for i, ev := range evs {
		ev = ev.Normalized()
		ev.Seq = 0
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("append to outbox %s: event %d of %d: %w", o.path, i, len(evs), err)
		}
		out[i] = ev
	}
	if len(out) == 0 {
		return out, nil
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(boltfile.MetaBucket)
		b := tx.Bucket(bucketEvents)
		b.FillPercent = 1 // keys only ever grow: pack pages full
		last := boltfile.SeqOf(meta.Get(keyLastSeq))
		for i := range out {
			if last == math.MaxUint64 {
				return fmt.Errorf("sequence numbers exhausted")
			}
			last++
			out[i].Seq = last
			v, err := json.Marshal(out[i])
			if err != nil {
				return fmt.Errorf("encode event seq %d: %w", last, err)
			}
			if err := b.Put(boltfile.SeqKey(last), v); err != nil {
				return fmt.Errorf("store event seq %d: %w", last, err)
			}
		}
		return meta.Put(keyLastSeq, boltfile.SeqKey(last))
	})
	if err != nil {
		return nil, fmt.Errorf("append to outbox %s: %w", o.path, err)
	}
	o.depth.Add(int64(len(out)))
	return out, nil
}

// Pending returns up to max events with a sequence number above after, in
// ascending order. max <= 0 means no limit.
func (o *Outbox) Pending(after uint64, max int) ([]proto.Event, error) {
	var evs []proto.Event
	if after == math.MaxUint64 {
		return nil, nil
	}
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		k, v := c.First()
		if after > 0 {
			k, v = c.Seek(boltfile.SeqKey(after + 1))
		}
		for ; k != nil && (max <= 0 || len(evs) < max); k, v = c.Next() {
			var ev proto.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode event key %x: %w", k, err)
			}
			evs = append(evs, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox %s after seq %d: %w", o.path, after, err)
	}
	return evs, nil
}

// pendingRaw is Pending without decoding: the stored JSON of up to max
// events after seq after, and the sequence number of the first. The
// sequence numbers are consecutive (the outbox has no gaps).
func (o *Outbox) pendingRaw(after uint64, max int) (first uint64, raws [][]byte, err error) {
	if after == math.MaxUint64 {
		return 0, nil, nil
	}
	err = o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		k, v := c.Seek(boltfile.SeqKey(after + 1))
		for ; k != nil && (max <= 0 || len(raws) < max); k, v = c.Next() {
			seq := boltfile.SeqOf(k)
			if len(raws) == 0 {
				first = seq
			} else if seq != first+uint64(len(raws)) {
				return fmt.Errorf("event key %x follows seq %d: gap in the outbox", k, first+uint64(len(raws))-1)
			}
			raws = append(raws, bytes.Clone(v))
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("read outbox %s after seq %d: %w", o.path, after, err)
	}
	return first, raws, nil
}

// Ack deletes every event with a sequence number <= seq and returns how many
// it deleted. A seq beyond the last assigned sequence number deletes nothing
// and returns ErrAckAhead.
func (o *Outbox) Ack(seq uint64) (removed int, err error) {
	err = o.db.Update(func(tx *bolt.Tx) error {
		if last := boltfile.SeqOf(tx.Bucket(boltfile.MetaBucket).Get(keyLastSeq)); seq > last {
			return fmt.Errorf("%w: last assigned seq is %d", ErrAckAhead, last)
		}
		b := tx.Bucket(bucketEvents)
		// Deleting while iterating can make a bbolt cursor skip keys, and
		// restarting from the first key after every delete walks the
		// emptied leaves again each time (quadratic in the keys acked):
		// collect the keys, then delete them.
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && boltfile.SeqOf(k) <= seq; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("delete event key %x: %w", k, err)
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ack outbox %s up to seq %d: %w", o.path, seq, err)
	}
	o.depth.Add(-int64(removed))
	return removed, nil
}

// Depth returns how many events wait for acknowledgement. It is counted
// once when the file opens and kept in step with every commit, so it is
// cheap to call; the error is always nil and stays for compatibility.
func (o *Outbox) Depth() (int, error) {
	return int(o.depth.Load()), nil
}

// Oldest returns the time of the oldest event waiting for acknowledgement;
// ok is false when the outbox is empty.
func (o *Outbox) Oldest() (t time.Time, ok bool, err error) {
	err = o.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketEvents).Cursor().First()
		if k == nil {
			return nil
		}
		var ev struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			return fmt.Errorf("decode event key %x: %w", k, err)
		}
		t, ok = ev.Time, true
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read oldest event of outbox %s: %w", o.path, err)
	}
	return t, ok, nil
}

// LastSeq returns the last sequence number assigned (0 before the first
// Append).
func (o *Outbox) LastSeq() (uint64, error) {
	var seq uint64
	err := o.db.View(func(tx *bolt.Tx) error {
		seq = boltfile.SeqOf(tx.Bucket(boltfile.MetaBucket).Get(keyLastSeq))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read last seq of outbox %s: %w", o.path, err)
	}
	return seq, nil
}

// acked returns the highest sequence number known to be acknowledged: the
// one before the oldest pending event, or the last assigned one when the
// outbox is empty (events leave only through Ack).
func (o *Outbox) acked() (uint64, error) {
	var seq uint64
	err := o.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketEvents).Cursor().First(); k != nil {
			seq = max(boltfile.SeqOf(k), 1) - 1
			return nil
		}
		seq = boltfile.SeqOf(tx.Bucket(boltfile.MetaBucket).Get(keyLastSeq))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read acked seq of outbox %s: %w", o.path, err)
	}
	return seq, nil
}

// Close closes the file.
func (o *Outbox) Close() error {
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("close outbox %s: %w", o.path, err)
	}
	return nil
}
