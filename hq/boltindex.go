package hq

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/sync/proto"
)

// The bbolt store's event indexes, kept by ingest in the same transaction
// as the events (and built on open for a file made before them):
//
//	meta/evindex                 = "1" once every event is indexed
//	evindex/<index>/<value-key>  = empty
//
// where <value-key> is the indexed value, length-prefixed (uvarint), then
// the event's time key: 8-byte big-endian event time (UnixNano with the
// sign bit flipped), site, 0x00, device, 0x00, 8-byte big-endian seq. So
// the keys of one value sort by (time, site, device, seq) as QueryPage's
// cursors do, and a page is a backward range scan of one index.
var (
	bucketEvIndex = []byte("evindex")
	keyEvIndex    = []byte("evindex")
	evIndexV1     = []byte("1")
)

// The indexes: every event by time, and by site and by credential. Each
// index costs every ingested event one more B-tree insert (with all seven
// of an earlier version - device, door, reason and denied decisions too -
// the edge -> HQ drain ran at 0.38 of its speed without indexes); device,
// door, reason and decision filters scan the site's (or every) event
// backwards and filter, which a page of recent events answers quickly.
var (
	idxAll  = []byte("all")
	idxSite = []byte("site")
	idxCred = []byte("credential")
)

// indexEntry is one key of one index.
type indexEntry struct {
	index, value []byte
}

// indexEntries returns the index keys of ev from site/device (without the
// time key).
func indexEntries(site, device string, ev proto.Event) []indexEntry {
	es := []indexEntry{{idxAll, nil}, {idxSite, []byte(site)}}
	if ev.Credential != "" {
		es = append(es, indexEntry{idxCred, []byte(strings.ToLower(ev.Credential))})
	}
	return es
}

// valuePrefix is the length-prefixed value that starts an index key.
func valuePrefix(value []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(value))), value...)
}

// timeBytes is t as 8 bytes that sort as the times do.
func timeBytes(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^(1<<63))
}

// timeKey is the time key of the event at c.
func timeKey(c Cursor) []byte {
	k := append(timeBytes(c.Time), c.Site...)
	k = append(append(k, 0), c.Device...)
	return append(append(k, 0), boltfile.SeqKey(c.Seq)...)
}

// parseTimeKey reads a time key back.
func parseTimeKey(k []byte) (Cursor, error) {
	if len(k) < 8+2+8 {
		return Cursor{}, fmt.Errorf("index key %x is too short", k)
	}
	names := k[8 : len(k)-8]
	site, device, ok := bytes.Cut(names, []byte{0})
	if !ok || len(names) == 0 || names[len(names)-1] != 0 {
		return Cursor{}, fmt.Errorf("index key %x has no site and device", k)
	}
	ns := int64(binary.BigEndian.Uint64(k[:8]) ^ (1 << 63))
	return Cursor{Time: time.Unix(0, ns).UTC(), Site: string(site), Device: string(device[:len(device)-1]),
		Seq: boltfile.SeqOf(k[len(k)-8:])}, nil
}

// putIndex adds the index keys of ev from site/device in tx.
func putIndex(tx *bolt.Tx, site, device string, ev proto.Event) error {
	root := tx.Bucket(bucketEvIndex)
	tk := timeKey(Cursor{Time: ev.Time, Site: site, Device: device, Seq: ev.Seq})
	for _, e := range indexEntries(site, device, ev) {
		b, err := root.CreateBucketIfNotExists(e.index)
		if err != nil {
			return fmt.Errorf("create index %s: %w", e.index, err)
		}
		b.FillPercent = 0.9 // keys mostly arrive in time order
		if err := b.Put(append(valuePrefix(e.value), tk...), nil); err != nil {
			return fmt.Errorf("index %s seq %d: %w", e.index, ev.Seq, err)
		}
	}
	return nil
}

// buildIndex indexes every event of a store file made before the indexes,
// one device per transaction (a crash part way redoes it: the keys are
// the same), then marks the file indexed.
func (s *BoltStore) buildIndex() error {
	var done bool
	var devs [][]byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketEvIndex); err != nil {
			return err
		}
		done = bytes.Equal(tx.Bucket(boltfile.MetaBucket).Get(keyEvIndex), evIndexV1)
		return tx.Bucket(bucketDevices).ForEachBucket(func(k []byte) error {
			devs = append(devs, bytes.Clone(k))
			return nil
		})
	})
	if err != nil || done {
		return err
	}
	if len(devs) > 0 {
		s.log.Info("indexing the events of a store made before the event indexes", "path", s.path, "devices", len(devs))
	}
	for _, name := range devs {
		if err := s.db.Update(func(tx *bolt.Tx) error { return indexDevice(tx, name) }); err != nil {
			return fmt.Errorf("index events of %s: %w", name, err)
		}
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(boltfile.MetaBucket).Put(keyEvIndex, evIndexV1) })
}

// indexDevice adds the index keys of every event of the device bucket
// name.
func indexDevice(tx *bolt.Tx, name []byte) error {
	site, device, _ := strings.Cut(string(name), "/")
	evs := tx.Bucket(bucketDevices).Bucket(name).Bucket(bucketEvents)
	if evs == nil {
		return nil
	}
	return evs.ForEach(func(k, v []byte) error {
		var ev proto.Event
		if err := json.Unmarshal(v, &ev); err != nil {
			return fmt.Errorf("decode event seq %d: %w", boltfile.SeqOf(k), err)
		}
		return putIndex(tx, site, device, ev)
	})
}

// pickIndexes returns the indexes and values whose keys hold every event
// q selects, the narrowest there are: one, or one per credential of
// q.Credentials (none when that is empty but not nil).
func pickIndexes(q EventQuery) []indexEntry {
	site := q.Site
	if site == "" && len(q.Sites) == 1 {
		site = q.Sites[0]
	}
	switch {
	case q.Credential != "":
		return []indexEntry{{idxCred, []byte(strings.ToLower(q.Credential))}}
	case q.Credentials != nil:
		var es []indexEntry
		seen := map[string]bool{}
		for _, c := range q.Credentials {
			if c = strings.ToLower(c); !seen[c] {
				seen[c] = true
				es = append(es, indexEntry{idxCred, []byte(c)})
			}
		}
		return es
	case site != "":
		return []indexEntry{{idxSite, []byte(site)}}
	}
	return []indexEntry{{idxAll, nil}}
}

// indexScan is a backward scan of the keys of one value of an index.
type indexScan struct {
	c      *bolt.Cursor
	prefix []byte
	// k is the current key, nil once the scan has passed the value's
	// keys.
	k []byte
}

// scanIndexes starts a backward scan of each of ixs, from the cursor
// after (or q.To), exclusive. An index that does not exist yet (nothing
// is indexed in it) has no scan.
func scanIndexes(tx *bolt.Tx, ixs []indexEntry, q EventQuery, after Cursor) []*indexScan {
	var scans []*indexScan
	for _, ix := range ixs {
		b := tx.Bucket(bucketEvIndex).Bucket(ix.index)
		if b == nil {
			continue
		}
		sc := &indexScan{c: b.Cursor(), prefix: valuePrefix(ix.value)}
		if k, _ := sc.c.Seek(startKey(sc.prefix, q, after)); k == nil {
			sc.set(sc.c.Last())
		} else {
			sc.set(sc.c.Prev())
		}
		scans = append(scans, sc)
	}
	return scans
}

// set makes k the current key, or ends the scan when k is not of its
// value.
func (sc *indexScan) set(k, _ []byte) {
	if !bytes.HasPrefix(k, sc.prefix) {
		k = nil
	}
	sc.k = k
}

// newestScan returns the scan whose current key names the newest event
// (the keys of the values compare by their time keys), or nil when every
// scan has ended.
func newestScan(scans []*indexScan) *indexScan {
	var best *indexScan
	for _, sc := range scans {
		if sc.k != nil && (best == nil || bytes.Compare(sc.k[len(sc.prefix):], best.k[len(best.prefix):]) > 0) {
			best = sc
		}
	}
	return best
}

// QueryPage implements EventStore: a backward scan of the narrowest index
// (of each credential's, merged newest first) from the cursor (or q.To),
// reading the events it names until the page is full or the scan passes
// q.From.
func (s *BoltStore) QueryPage(ctx context.Context, q EventQuery, after Cursor, limit int) (EventPage, error) {
	limit = pageLimit(limit)
	var page EventPage
	err := s.db.View(func(tx *bolt.Tx) error {
		scans := scanIndexes(tx, pickIndexes(q), q, after)
		for sc := newestScan(scans); sc != nil; sc = newestScan(scans) {
			if err := ctx.Err(); err != nil {
				return err
			}
			at, err := parseTimeKey(sc.k[len(sc.prefix):])
			if err != nil {
				return fmt.Errorf("event index: %w", err)
			}
			if !q.From.IsZero() && at.Time.Before(q.From) {
				break
			}
			sc.set(sc.c.Prev())
			ev, ok, err := s.indexedEvent(tx, q, at)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if len(page.Events) == limit {
				page.More = true
				break
			}
			page.Events = append(page.Events, ev)
		}
		return nil
	})
	if err != nil {
		return EventPage{}, fmt.Errorf("query a page of events in %s: %w", s.path, err)
	}
	if page.More {
		page.Next = CursorOf(page.Events[len(page.Events)-1])
	}
	return page, nil
}

// startKey returns the index key a page scans back from (exclusive): the
// cursor's, or q.To's when that is earlier, or past every key of prefix.
func startKey(prefix []byte, q EventQuery, after Cursor) []byte {
	start := append(bytes.Clone(prefix), bytes.Repeat([]byte{0xff}, 9)...)
	if !q.To.IsZero() {
		start = append(bytes.Clone(prefix), timeBytes(q.To)...)
	}
	if !after.IsZero() {
		if k := append(bytes.Clone(prefix), timeKey(after)...); bytes.Compare(k, start) < 0 {
			start = k
		}
	}
	return start
}

// indexedEvent reads the event an index key names, and reports whether q
// selects it.
func (s *BoltStore) indexedEvent(tx *bolt.Tx, q EventQuery, at Cursor) (StoredEvent, bool, error) {
	if !q.siteOK(at.Site) || q.Device != "" && at.Device != q.Device {
		return StoredEvent{}, false, nil
	}
	name := at.Site + "/" + at.Device
	var v []byte
	if dev := tx.Bucket(bucketDevices).Bucket([]byte(name)); dev != nil {
		v = dev.Bucket(bucketEvents).Get(boltfile.SeqKey(at.Seq))
	}
	if v == nil {
		return StoredEvent{}, false, fmt.Errorf("index names %s seq %d, which is not stored", name, at.Seq)
	}
	var ev proto.Event
	if err := json.Unmarshal(v, &ev); err != nil {
		return StoredEvent{}, false, fmt.Errorf("decode event %s seq %d: %w", name, at.Seq, err)
	}
	return StoredEvent{Site: at.Site, Device: at.Device, Event: ev}, q.match(ev), nil
}
