package hq

import (
	"context"
	"crypto/ed25519"
	"sync"

	"github.com/tobira-ac/tobira/sync/proto"
)

// relay is HQ's ticket-mark relay: the devices of each site, and each
// site's latest mark per ticket (in memory: HQ forgets them on restart,
// devices keep theirs).
type relay struct {
	key ed25519.PrivateKey

	mu      sync.Mutex
	devices map[string]map[string]bool       // site -> device -> online
	marks   map[string]map[string]proto.Mark // site -> ticket key -> latest mark
}

// newRelay returns a relay signing with key (nil: no relaying).
func newRelay(key ed25519.PrivateKey) *relay {
	return &relay{key: key, devices: map[string]map[string]bool{}, marks: map[string]map[string]proto.Mark{}}
}

// seen records that a device exists and whether it is online; it reports
// whether the device just came online (first word, or offline before).
func (r *relay) seen(site, device string, online bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.devices[site]
	if d == nil {
		d = map[string]bool{}
		r.devices[site] = d
	}
	was, known := d[device]
	d[device] = online
	return online && (!known || !was)
}

// online counts the devices whose last word says online.
func (r *relay) online() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, devs := range r.devices {
		for _, on := range devs {
			if on {
				n++
			}
		}
	}
	return n
}

// absorb records marks and returns the site's other devices.
func (r *relay) absorb(b proto.MarkBatch) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.marks[b.Site]
	if m == nil {
		m = map[string]proto.Mark{}
		r.marks[b.Site] = m
	}
	for _, mk := range b.Marks {
		old, ok := m[string(mk.Ticket)]
		if !ok || mk.At.After(old.At) || (mk.At.Equal(old.At) && mk.State == proto.MarkIn) {
			m[string(mk.Ticket)] = mk
		}
	}
	var out []string
	for d := range r.devices[b.Site] {
		if d != b.Device {
			out = append(out, d)
		}
	}
	return out
}

// siteMarks returns the site's marks in batches of at most MaxMarks.
func (r *relay) siteMarks(site string) [][]proto.Mark {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]proto.Mark
	var cur []proto.Mark
	for _, m := range r.marks[site] {
		cur = append(cur, m)
		if len(cur) == proto.MaxMarks {
			out, cur = append(out, cur), nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// sign returns the signed peer-marks envelope of b.
func (r *relay) sign(b proto.MarkBatch) ([]byte, error) {
	return proto.SignMarks(r.key, b)
}

// handleMarks relays a device's marks to the other devices of its site.
func (h *Service) handleMarks(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	b, err := proto.DecodeMarks(topic, payload)
	if err != nil {
		h.log.Warn("rejected marks message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	h.relay.seen(b.Site, b.Device, true)
	peers := h.relay.absorb(b)
	if h.relay.key == nil {
		h.log.Warn("ticket marks not relayed: HQ has no signing key (Config.Key)", "topic", topic)
		return
	}
	env, err := h.relay.sign(b)
	if err != nil {
		h.log.Error("cannot sign ticket marks", "topic", topic, "err", err)
		return
	}
	for _, d := range peers {
		if err := pub(ctx, proto.PeerMarksTopic(b.Site, d), env); err != nil {
			h.log.Warn("cannot relay ticket marks", "site", b.Site, "device", d, "err", err)
		}
	}
	h.log.Debug("relayed ticket marks", "site", b.Site, "origin", b.Device, "marks", len(b.Marks), "peers", len(peers))
}

// catchUpMarks sends a device that came online the site's mark set.
func (h *Service) catchUpMarks(ctx context.Context, pub publishFunc, site, device string) {
	if h.relay.key == nil {
		return
	}
	for _, ms := range h.relay.siteMarks(site) {
		env, err := h.relay.sign(proto.MarkBatch{Site: site, Marks: ms})
		if err == nil {
			err = pub(ctx, proto.PeerMarksTopic(site, device), env)
		}
		if err != nil {
			h.log.Warn("cannot send ticket marks to a device that came online", "site", site, "device", device, "err", err)
			return
		}
	}
}
