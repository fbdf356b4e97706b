package hq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Store file layout (bbolt):
//
//	meta/format                  = "tobira-hq-v1"
//	meta/count                   = 8-byte big-endian: events stored, all devices
//	devices/<site>/<device>/acked = 8-byte big-endian: highest contiguous seq
//	devices/<site>/<device>/events/<seq> = JSON Event, keyed by 8-byte big-endian seq
//	status/<site>/<device>       = JSON statusRecord: the device's last status
//	results/<id>                 = JSON Result, by command or transfer ID
//	evindex/...                  = the event indexes of QueryPage (boltindex.go)
//
// (<site>/<device> is one bucket name; names cannot contain '/'.)
var (
	bucketDevices = []byte("devices")
	bucketEvents  = []byte("events")
	bucketStatus  = []byte("status")
	bucketResults = []byte("results")
	keyCount      = []byte("count")
	keyAcked      = []byte("acked")
	hqFormat      = []byte("tobira-hq-v1")
)

// statusRecord is a device's last status as the bbolt store keeps it.
type statusRecord struct {
	Status   proto.Status `json:"status"`
	Received time.Time    `json:"received"`
}

// BoltStore is the Store in one bbolt file, HQ's embedded default: one
// process at a time.
type BoltStore struct {
	db   *bolt.DB
	path string
	log  *slog.Logger
}

// OpenBoltStore opens (or creates) the bbolt store at path; log receives
// its warnings (nil: slog.Default()).
func OpenBoltStore(path string, log *slog.Logger) (*BoltStore, error) {
	if log == nil {
		log = slog.Default()
	}
	// The map freelist finds free pages in a large store faster (it
	// lives in memory only; the file format is the same).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltfile.OpenTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open HQ store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return boltfile.Init(tx, hqFormat, bucketDevices, bucketStatus, bucketResults)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open HQ store %s: %w", path, err)
	}
	s := &BoltStore{db: db, path: path, log: log}
	if err := s.buildIndex(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open HQ store %s: %w", path, err)
	}
	return s, nil
}

// StoreEvents implements EventStore in one bbolt transaction (fsync'd on
// commit).
func (s *BoltStore) StoreEvents(_ context.Context, batches []EventBatch) ([]BatchResult, error) {
	var res []BatchResult
	err := s.db.Update(func(tx *bolt.Tx) error {
		res = make([]BatchResult, len(batches)) // bbolt may not retry, but stay correct if it did
		added := 0
		for i, b := range batches {
			if err := s.storeTx(tx, b, &res[i]); err != nil {
				return fmt.Errorf("%s/%s: %w", b.Site, b.Device, err)
			}
			added += len(res[i].Added)
		}
		meta := tx.Bucket(boltfile.MetaBucket)
		return meta.Put(keyCount, boltfile.SeqKey(boltfile.SeqOf(meta.Get(keyCount))+uint64(added)))
	})
	if err != nil {
		return nil, fmt.Errorf("store %d batches in %s: %w", len(batches), s.path, err)
	}
	return res, nil
}

// storeTx stores the events of b in tx and sets r.
func (s *BoltStore) storeTx(tx *bolt.Tx, b EventBatch, r *BatchResult) error {
	dev, err := tx.Bucket(bucketDevices).CreateBucketIfNotExists([]byte(b.Site + "/" + b.Device))
	if err != nil {
		return fmt.Errorf("create device bucket: %w", err)
	}
	held, err := dev.CreateBucketIfNotExists(bucketEvents)
	if err != nil {
		return fmt.Errorf("create events bucket: %w", err)
	}
	// Sequence numbers mostly come in order: fill pages fully rather than
	// splitting them in half.
	held.FillPercent = 0.9
	for i, ev := range b.Events {
		v := b.JSON[i]
		k := boltfile.SeqKey(ev.Seq)
		if old := held.Get(k); old != nil {
			r.Dups++
			if !bytes.Equal(old, v) {
				s.log.Warn("duplicate seq with different content; keeping the first", "site", b.Site, "device", b.Device, "seq", ev.Seq)
			}
			continue
		}
		if err := held.Put(k, v); err != nil {
			return fmt.Errorf("store event seq %d: %w", ev.Seq, err)
		}
		if err := putIndex(tx, b.Site, b.Device, ev); err != nil {
			return err
		}
		r.Added = append(r.Added, ev)
	}
	ack := boltfile.SeqOf(dev.Get(keyAcked))
	for ack < ^uint64(0) && held.Get(boltfile.SeqKey(ack+1)) != nil {
		ack++
	}
	if err := dev.Put(keyAcked, boltfile.SeqKey(ack)); err != nil {
		return fmt.Errorf("store ack point: %w", err)
	}
	r.Ack = ack
	return nil
}

// Events implements EventStore.
func (s *BoltStore) Events(_ context.Context, site, device string) ([]proto.Event, error) {
	var evs []proto.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		dev := tx.Bucket(bucketDevices).Bucket([]byte(site + "/" + device))
		if dev == nil {
			return nil
		}
		return dev.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var ev proto.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode event key %x: %w", k, err)
			}
			evs = append(evs, ev)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read events of %s/%s from %s: %w", site, device, s.path, err)
	}
	return evs, nil
}

// Acked implements EventStore.
func (s *BoltStore) Acked(_ context.Context, site, device string) (uint64, error) {
	var seq uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if dev := tx.Bucket(bucketDevices).Bucket([]byte(site + "/" + device)); dev != nil {
			seq = boltfile.SeqOf(dev.Get(keyAcked))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read ack point of %s/%s from %s: %w", site, device, s.path, err)
	}
	return seq, nil
}

// Count implements EventStore.
func (s *BoltStore) Count(context.Context) (int, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		n = boltfile.SeqOf(tx.Bucket(boltfile.MetaBucket).Get(keyCount))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count events in %s: %w", s.path, err)
	}
	return int(n), nil
}

// errStop ends a Query early.
var errStop = errors.New("stop")

// Query implements EventStore. It scans the selected devices' events (the
// event indexes serve QueryPage, which is newest first).
func (s *BoltStore) Query(_ context.Context, q EventQuery, fn func(StoredEvent) error) error {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		devs := tx.Bucket(bucketDevices)
		return devs.ForEachBucket(func(name []byte) error {
			site, device, _ := strings.Cut(string(name), "/")
			if !q.siteOK(site) || q.Device != "" && device != q.Device {
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
		return fmt.Errorf("query events in %s: %w", s.path, err)
	}
	return nil
}

// PutStatus implements DeviceStore.
func (s *BoltStore) PutStatus(_ context.Context, site, device string, st proto.Status, received time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStatus)
		key := []byte(site + "/" + device)
		if old := b.Get(key); old != nil && !st.Online {
			// The will says only "offline": keep the last known facts.
			var prev statusRecord
			if json.Unmarshal(old, &prev) == nil {
				prev.Status.Online = false
				st = prev.Status
			}
		}
		rec, err := json.Marshal(statusRecord{Status: st, Received: received.UTC()})
		if err != nil {
			return err
		}
		return b.Put(key, rec)
	})
	if err != nil {
		return fmt.Errorf("store status of %s/%s in %s: %w", site, device, s.path, err)
	}
	return nil
}

// Devices implements DeviceStore.
func (s *BoltStore) Devices(context.Context) ([]DeviceRecord, error) {
	byName := map[string]*DeviceRecord{}
	get := func(name string) *DeviceRecord {
		if d, ok := byName[name]; ok {
			return d
		}
		d := &DeviceRecord{}
		d.Site, d.Device, _ = strings.Cut(name, "/")
		byName[name] = d
		return d
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketDevices).ForEachBucket(func(k []byte) error {
			get(string(k)).Acked = boltfile.SeqOf(tx.Bucket(bucketDevices).Bucket(k).Get(keyAcked))
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketStatus).ForEach(func(k, v []byte) error {
			var rec statusRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode status of %s: %w", k, err)
			}
			d := get(string(k))
			d.Status, d.Seen = rec.Status, rec.Received
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read devices from %s: %w", s.path, err)
	}
	out := make([]DeviceRecord, 0, len(byName))
	for _, d := range byName {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Site != out[j].Site {
			return out[i].Site < out[j].Site
		}
		return out[i].Device < out[j].Device
	})
	return out, nil
}

// PutResult implements DeviceStore.
func (s *BoltStore) PutResult(_ context.Context, r proto.Result, _ time.Time) error {
	b, err := json.Marshal(r)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketResults).Put([]byte(r.ID), b) })
	}
	if err != nil {
		return fmt.Errorf("store result %s in %s: %w", r.ID, s.path, err)
	}
	return nil
}

// Result implements DeviceStore.
func (s *BoltStore) Result(_ context.Context, id string) (proto.Result, bool, error) {
	var r proto.Result
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketResults).Get([]byte(id))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &r)
	})
	if err != nil {
		return proto.Result{}, false, fmt.Errorf("read result %s from %s: %w", id, s.path, err)
	}
	return r, ok, nil
}

// EachResult calls fn for every stored result, by ID; an error from fn
// ends it and is returned.
func (s *BoltStore) EachResult(_ context.Context, fn func(proto.Result) error) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketResults).ForEach(func(k, v []byte) error {
			var r proto.Result
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode result %s: %w", k, err)
			}
			return fn(r)
		})
	})
	if err != nil {
		return fmt.Errorf("read results from %s: %w", s.path, err)
	}
	return nil
}

// Close implements Store.
func (s *BoltStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close HQ store %s: %w", s.path, err)
	}
	return nil
}
