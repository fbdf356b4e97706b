package hq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/sync/proto"
)

// HQ buckets besides the events (bbolt):
//
//	status/<site>/<device>   = JSON statusRecord: the device's last status
//	results/<id>             = JSON Result, by command or transfer ID
var (
	bucketStatus  = []byte("status")
	bucketResults = []byte("results")
)

// statusRecord is a device's last status as HQ stores it.
type statusRecord struct {
	Status   proto.Status `json:"status"`
	Received time.Time    `json:"received"`
}

// handleStatus stores a device's status or last will. (A device that
// comes online fetches its site's ticket marks itself: marks-get.)
func (h *Service) handleStatus(_ context.Context, _ publishFunc, topic string, payload []byte) {
	h.storeStatus(topic, payload)
}

// storeStatus stores a device's status or last will. It returns the
// device and whether it just came online.
func (h *Service) storeStatus(topic string, payload []byte) (site, device string, cameOnline bool) {
	if len(payload) == 0 {
		return "", "", false // a cleared retained message
	}
	site, device, st, err := proto.DecodeStatus(topic, payload)
	if err != nil {
		h.log.Warn("rejected status message", "topic", topic, "bytes", len(payload), "err", err)
		return "", "", false
	}
	cameOnline = h.relay.seen(site, device, st.Online)
	h.relay.setDoors(site, device, st.Doors)
	err = h.db.Update(func(tx *bolt.Tx) error {
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
		rec, err := json.Marshal(statusRecord{Status: st, Received: h.clk.Now().UTC()})
		if err != nil {
			return err
		}
		return b.Put(key, rec)
	})
	if err != nil {
		h.log.Error("cannot store status", "topic", topic, "err", err)
		return site, device, cameOnline
	}
	if !st.Online {
		h.log.Info("device offline", "site", site, "device", device)
	} else {
		h.log.Debug("device status", "site", site, "device", device, "online", st.Online, "outbox_depth", st.OutboxDepth)
	}
	return site, device, cameOnline
}

// loadDevices tells the mark relay about every device HQ has stored (as
// offline until it speaks).
func (h *Service) loadDevices() error {
	err := h.db.View(func(tx *bolt.Tx) error {
		note := func(k []byte) error {
			if site, device, ok := strings.Cut(string(k), "/"); ok {
				h.relay.seen(site, device, false)
			}
			return nil
		}
		if err := tx.Bucket(bucketDevices).ForEachBucket(note); err != nil {
			return err
		}
		return tx.Bucket(bucketStatus).ForEach(func(k, _ []byte) error { return note(k) })
	})
	if err != nil {
		return fmt.Errorf("load devices from %s: %w", h.path, err)
	}
	return nil
}

// handleResult stores a device's command or snapshot result.
func (h *Service) handleResult(_ context.Context, _ publishFunc, topic string, payload []byte) {
	r, err := proto.DecodeResult(topic, payload)
	if err != nil {
		h.log.Warn("rejected result message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	h.log.Info("device result", "site", r.Site, "device", r.Device, "kind", r.Kind, "id", r.ID, "status", r.Status, "error", r.Error)
	if r.ID == "" {
		return
	}
	b, err := json.Marshal(r)
	if err == nil {
		err = h.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketResults).Put([]byte(r.ID), b) })
	}
	if err != nil {
		h.log.Error("cannot store result", "topic", topic, "id", r.ID, "err", err)
	}
}

// Result returns the stored result of a command or snapshot transfer ID,
// and false when none arrived.
func (h *Service) Result(id string) (proto.Result, bool, error) {
	var r proto.Result
	var ok bool
	err := h.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketResults).Get([]byte(id))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &r)
	})
	if err != nil {
		return proto.Result{}, false, fmt.Errorf("read result %s from %s: %w", id, h.path, err)
	}
	return r, ok, nil
}

// handleNeed re-sends the chunks a device asks for, from the spool.
func (h *Service) handleNeed(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	site, device, n, err := proto.DecodeNeed(topic, payload)
	if err != nil {
		h.log.Warn("rejected need message", "topic", topic, "err", err)
		return
	}
	if h.spool == "" {
		h.log.Warn("device asks for snapshot chunks but HQ has no spool directory", "topic", topic, "transfer", n.Transfer)
		return
	}
	m, err := readSpoolManifest(h.spool, n.Transfer)
	if err != nil {
		h.log.Warn("cannot answer need", "topic", topic, "transfer", n.Transfer, "err", err)
		return
	}
	if m.Site != site || m.Device != device {
		h.log.Warn("device asks for another device's snapshot", "topic", topic, "transfer", n.Transfer)
		return
	}
	f, err := os.Open(spoolData(h.spool, m.Transfer))
	if err != nil {
		h.log.Warn("cannot answer need", "topic", topic, "transfer", n.Transfer, "err", err)
		return
	}
	defer f.Close()
	sent := 0
	for _, r := range n.Missing {
		for i := r[0]; i <= r[1] && i < m.Chunks; i++ {
			if err := publishChunk(ctx, pub, f, m, i); err != nil {
				h.log.Warn("cannot re-send chunk", "topic", topic, "transfer", m.Transfer, "index", i, "err", err)
				return
			}
			sent++
		}
	}
	h.log.Info("re-sent snapshot chunks", "site", site, "device", device, "transfer", m.Transfer, "chunks", sent)
}

// publishChunk reads chunk i of m from f and publishes it at QoS 1.
func publishChunk(ctx context.Context, pub publishFunc, f io.ReaderAt, m proto.Manifest, i int) error {
	data := make([]byte, m.ChunkLen(i))
	if _, err := f.ReadAt(data, int64(i)*int64(m.ChunkSize)); err != nil {
		return fmt.Errorf("read chunk %d of %s: %w", i, m.Transfer, err)
	}
	payload, err := proto.EncodeChunk(m.Transfer, i, data)
	if err != nil {
		return err
	}
	if err := pub(ctx, proto.ChunkTopic(m.Site, m.Device), payload); err != nil {
		return fmt.Errorf("publish chunk %d of %s: %w", i, m.Transfer, err)
	}
	return nil
}

// DeviceInfo is one device in the fleet view.
type DeviceInfo struct {
	// Site and Device name the device.
	Site string `json:"site"`
	// Device is the device's name.
	Device string `json:"device"`
	// Online is the device's last word: its status, or its will.
	Online bool `json:"online"`
	// Seen is when HQ received the last status.
	Seen time.Time `json:"seen,omitzero"`
	// Status is the last status received (zero when none).
	Status proto.Status `json:"status"`
	// Acked is the highest sequence number up to which HQ holds every
	// event of the device.
	Acked uint64 `json:"acked"`
	// ExpectedVersion is the snapshot version HQ last published to the
	// device (0: none, from the spool).
	ExpectedVersion uint64 `json:"expected_version,omitempty"`
	// ExpectedHash is the content hash HQ expects the device to report for
	// ExpectedVersion ("" when the publication did not say).
	ExpectedHash string `json:"expected_hash,omitempty"`
	// Drift reports that the device's snapshot version differs from
	// ExpectedVersion, or its content hash from ExpectedHash.
	Drift bool `json:"drift"`
}

// Fleet returns every device HQ has heard of (by events or status),
// sorted by site and device.
func (h *Service) Fleet() ([]DeviceInfo, error) {
	byName := map[string]*DeviceInfo{}
	get := func(name string) *DeviceInfo {
		if d, ok := byName[name]; ok {
			return d
		}
		d := &DeviceInfo{}
		for i := 0; i < len(name); i++ {
			if name[i] == '/' {
				d.Site, d.Device = name[:i], name[i+1:]
				break
			}
		}
		byName[name] = d
		return d
	}
	err := h.db.View(func(tx *bolt.Tx) error {
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
			d.Status, d.Seen, d.Online = rec.Status, rec.Received, rec.Status.Online
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read fleet from %s: %w", h.path, err)
	}
	out := make([]DeviceInfo, 0, len(byName))
	for _, d := range byName {
		if h.spool != "" {
			if m, err := readLatest(h.spool, d.Site, d.Device); err == nil {
				d.ExpectedVersion, d.ExpectedHash = m.Version, m.ContentHash
				d.Drift = d.Status.Snapshot.Version != m.Version ||
					(m.ContentHash != "" && d.Status.Snapshot.Version == m.Version && d.Status.Snapshot.Hash != m.ContentHash)
			} else if !errors.Is(err, os.ErrNotExist) {
				h.log.Warn("cannot read latest published snapshot", "site", d.Site, "device", d.Device, "err", err)
			}
		}
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

// Spool layout (Config.Spool), written by Sender.PublishSnapshot:
//
//	<transfer>.manifest.json     the Manifest
//	<transfer>.bin               the payload
//	latest/<site>/<device>.json  the Manifest last published to the device

// spoolData returns the payload file of transfer.
func spoolData(spool, transfer string) string { return filepath.Join(spool, transfer+".bin") }

// readSpoolManifest reads the manifest of transfer from the spool.
func readSpoolManifest(spool, transfer string) (proto.Manifest, error) {
	return readManifestFile(filepath.Join(spool, filepath.Base(transfer)+".manifest.json"))
}

// readLatest reads the manifest last published to site/device.
func readLatest(spool, site, device string) (proto.Manifest, error) {
	return readManifestFile(filepath.Join(spool, "latest", site, device+".json"))
}

// readManifestFile reads and checks a manifest JSON file.
func readManifestFile(path string) (proto.Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return proto.Manifest{}, fmt.Errorf("read manifest: %w", err)
	}
	var m proto.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return proto.Manifest{}, fmt.Errorf("decode manifest %s: %w", path, err)
	}
	if err := m.Validate(); err != nil {
		return proto.Manifest{}, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}
