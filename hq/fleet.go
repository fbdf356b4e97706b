package hq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

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
	results := st.Results
	st.Results = nil // stored as results, not in the fleet's status
	h.catchUpResults(context.Background(), topic, results)
	if err := h.st.PutStatus(context.Background(), site, device, st, h.clk.Now().UTC()); err != nil {
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
// offline until it speaks), but HQ's own SystemDevice.
func (h *Service) loadDevices() error {
	devs, err := h.st.Devices(context.Background())
	if err != nil {
		return fmt.Errorf("load devices: %w", err)
	}
	for _, d := range devs {
		if d.Device != SystemDevice {
			h.relay.seen(d.Site, d.Device, false)
		}
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
	if err := h.st.PutResult(context.Background(), r, h.clk.Now().UTC()); err != nil {
		h.log.Error("cannot store result", "topic", topic, "id", r.ID, "err", err)
		return
	}
	h.seen.mark(r.ID)
}

// Result returns the stored result of a command or snapshot transfer ID,
// and false when none arrived.
func (h *Service) Result(id string) (proto.Result, bool, error) {
	return h.st.Result(context.Background(), id)
}

// handleNeed re-sends the chunks a device asks for, from the spool.
func (h *Service) handleNeed(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	site, device, n, err := proto.DecodeNeed(topic, payload)
	if err != nil {
		h.log.Warn("rejected need message", "topic", topic, "err", err)
		return
	}
	if h.spool == nil {
		h.log.Warn("device asks for snapshot chunks but HQ has no spool", "topic", topic, "transfer", n.Transfer)
		return
	}
	m, err := h.spool.Transfer(ctx, n.Transfer)
	if err != nil {
		h.log.Warn("cannot answer need", "topic", topic, "transfer", n.Transfer, "err", err)
		return
	}
	if m.Site != site || (m.Device != device && m.Group == "") {
		h.log.Warn("device asks for another device's snapshot", "topic", topic, "transfer", n.Transfer)
		return
	}
	send, held := h.limits.needChunks(site, device, m.Transfer, mergeRanges(n.Missing, m.Chunks))
	if held > 0 {
		h.refuse(ctx, site, device, refusedNeedRepeat, fmt.Sprintf("%d chunks of %s asked again within %v", held, m.Transfer, h.limits.lim.NeedInterval))
	}
	for _, i := range send {
		data, err := h.spool.Chunk(ctx, m, i)
		if err == nil {
			err = sendChunk(ctx, pub, proto.ChunkTopic(site, device), m, i, data)
		}
		if err != nil {
			h.log.Warn("cannot re-send chunk", "topic", topic, "transfer", m.Transfer, "index", i, "err", err)
			return
		}
	}
	h.log.Info("re-sent snapshot chunks", "site", site, "device", device, "transfer", m.Transfer, "chunks", len(send), "held_back", held)
}

// publishChunk reads chunk i of m from f and publishes it at QoS 1 on m's
// chunk topic: its device's or its group's.
func publishChunk(ctx context.Context, pub publishFunc, f io.ReaderAt, m proto.Manifest, i int) error {
	data := make([]byte, m.ChunkLen(i))
	if _, err := f.ReadAt(data, int64(i)*int64(m.ChunkSize)); err != nil {
		return fmt.Errorf("read chunk %d of %s: %w", i, m.Transfer, err)
	}
	topic := proto.ChunkTopic(m.Site, m.Device)
	if m.Group != "" {
		topic = proto.ChunkGroupTopic(m.Site, m.Group)
	}
	return sendChunk(ctx, pub, topic, m, i, data)
}

// sendChunk publishes data as chunk i of m at QoS 1 on topic.
func sendChunk(ctx context.Context, pub publishFunc, topic string, m proto.Manifest, i int, data []byte) error {
	payload, err := proto.EncodeChunk(m.Transfer, i, data)
	if err != nil {
		return err
	}
	if err := pub(ctx, topic, payload); err != nil {
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
	// Published is when HQ published ExpectedVersion (the manifest's
	// Issued; zero when none).
	Published time.Time `json:"published,omitzero"`
	// Drift reports that the device's snapshot version differs from
	// ExpectedVersion, or its content hash from ExpectedHash.
	Drift bool `json:"drift"`
	// Refused counts the device's messages HQ refused, by reason
	// (docs/HQ.md, "Per-device limits"): from the device_refused events
	// stored, plus those not reported yet by a running Service.
	Refused map[string]uint64 `json:"refused,omitempty"`
	// LastRefusal is the last refusal (nil: none).
	LastRefusal *Refusal `json:"last_refusal,omitempty"`
}

// Fleet returns every device HQ has heard of (by events or status),
// sorted by site and device.
func (h *Service) Fleet() ([]DeviceInfo, error) {
	devs, err := h.st.Devices(context.Background())
	if err != nil {
		return nil, fmt.Errorf("read fleet: %w", err)
	}
	refused, err := h.refusals()
	if err != nil {
		return nil, fmt.Errorf("read fleet: %w", err)
	}
	out := make([]DeviceInfo, 0, len(devs))
	for _, rec := range devs {
		if rec.Device == SystemDevice {
			continue
		}
		d := DeviceInfo{Site: rec.Site, Device: rec.Device, Online: rec.Status.Online, Seen: rec.Seen, Status: rec.Status, Acked: rec.Acked}
		if r, ok := refused[deviceKey{rec.Site, rec.Device}]; ok {
			d.Refused, d.LastRefusal = r.Counts, &r.Last
			delete(refused, deviceKey{rec.Site, rec.Device})
		}
		if h.spool != nil {
			if m, err := h.expected(context.Background(), d.Site, d.Device); err == nil {
				d.ExpectedVersion, d.ExpectedHash, d.Published = m.Version, m.ContentHash, m.Issued
				d.Drift = d.Status.Snapshot.Version != m.Version ||
					(m.ContentHash != "" && d.Status.Snapshot.Version == m.Version && d.Status.Snapshot.Hash != m.ContentHash)
			} else if !errors.Is(err, ErrNotSpooled) {
				h.log.Warn("cannot read latest published snapshot", "site", d.Site, "device", d.Device, "err", err)
			}
		}
		out = append(out, d)
	}
	for k, r := range refused { // devices HQ knows only by what it refused
		out = append(out, DeviceInfo{Site: k.site, Device: k.device, Refused: r.Counts, LastRefusal: &r.Last})
	}
	slices.SortFunc(out, func(a, b DeviceInfo) int { return cmp.Or(cmp.Compare(a.Site, b.Site), cmp.Compare(a.Device, b.Device)) })
	return out, nil
}

// refusals returns what HQ refused per device: the device_refused events
// stored, plus the refusals this Service has not reported yet.
func (h *Service) refusals() (map[deviceKey]DeviceRefusals, error) {
	out := map[deviceKey]DeviceRefusals{}
	q := EventQuery{Device: SystemDevice, Type: proto.TypeSystem, Reason: ReasonDeviceRefused}
	err := h.st.Query(context.Background(), q, func(ev StoredEvent) error {
		device, reason, n, ok := parseRefusalEvent(ev.Event)
		if !ok {
			return nil
		}
		k := deviceKey{ev.Site, device}
		r, seen := out[k]
		if !seen {
			r.Counts = map[string]uint64{}
		}
		r.Counts[reason] += n
		if !ev.Time.Before(r.Last.At) {
			_, text, _ := strings.Cut(ev.Detail, ": ")
			r.Last = Refusal{Reason: reason, At: ev.Time, Detail: text}
		}
		out[k] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read refusals: %w", err)
	}
	for k, live := range h.limits.unreported() {
		r, seen := out[k]
		if !seen {
			r.Counts = map[string]uint64{}
		}
		for reason, n := range live.Counts {
			r.Counts[reason] += n
		}
		if live.Last.At.After(r.Last.At) || !seen {
			r.Last = live.Last
		}
		out[k] = r
	}
	return out, nil
}
