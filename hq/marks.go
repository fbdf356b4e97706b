package hq

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// Ticket marks at HQ (the topics: sync/proto/marks.go). HQ judges every
// mark a gate sends (judge), stores the accepted ones durably with a
// per-site sequence number (MarkStore), acknowledges the batch only after
// the commit, pushes the new marks to the other gates of the site it knows
// and answers every gate's marks-get from the store. Nothing is kept only
// in memory but the list of devices to push to, which a restart rebuilds
// (and a gate asks from its cursor when it connects anyway).
//
// Replicas sharing the intake each see only some status messages. The
// devices of a site and their doors therefore come from the shared
// DeviceStore too (their last statuses), read through a cache of
// peerCacheTTL, joined with what this process saw itself: a mark stored by
// one replica is pushed to every gate of the site, also to those whose
// status another replica took. A gate whose status arrived within the
// cache's age is missed by the push; it fetches the mark from its cursor
// (marks-get on every connection and mark interval).

// TicketRules is what HQ needs to know of a site's tickets to judge a mark
// (hq/registry holds it; cmd/tobira-hq adapts it). Without TicketRules HQ
// checks only the time and the ticket's transitions.
type TicketRules interface {
	// TicketEvent returns the ticketed event of site named event, false
	// when the site has none of that name.
	TicketEvent(ctx context.Context, site, event string) (TicketEvent, bool, error)
	// DoorGroups returns the door groups of door at site, false when the
	// site has no such door.
	DoorGroups(ctx context.Context, site, door string) ([]string, bool, error)
}

// TicketEvent is what HQ needs of a ticketed event to judge its marks.
type TicketEvent struct {
	// Start and End bound the event's window.
	Start, End time.Time
	// DoorGroup holds the event's gates.
	DoorGroup string
	// Reentry allows a ticket in again after an exit scan.
	Reentry bool
}

// Refusal reasons of HQ for a mark.
const (
	refusedFuture      = "dated beyond HQ's time plus the allowed skew"
	refusedWindow      = "dated outside the event's window"
	refusedEvent       = "no such ticketed event at the site"
	refusedDoorGroup   = "door is not in the event's door group"
	refusedDeviceDoor  = "door is not one of the sending device's doors"
	refusedExit        = "exit without an entry before it"
	refusedSingleEntry = "entry after an exit for a single-entry ticket"
)

// relay knows the devices of each site and whether each is online, to
// push new marks to.
type relay struct {
	key ed25519.PrivateKey

	mu      sync.Mutex
	devices map[string]map[string]bool     // site -> device -> online
	doors   map[string]map[string][]string // site -> device -> doors it reported
	stored  storedDevices                  // the DeviceStore's devices, as last read

	readMu sync.Mutex // one DeviceStore read at a time
}

// peerCacheTTL is how long the devices read from the DeviceStore serve the
// relay before it reads them again.
const peerCacheTTL = time.Second

// storedDevices are the DeviceStore's devices as read at read: site ->
// device -> the doors of its last status (nil: none reported).
type storedDevices struct {
	read  time.Time
	sites map[string]map[string][]string
}

// fresh reports whether c was read less than peerCacheTTL before now.
func (c storedDevices) fresh(now time.Time) bool {
	return c.sites != nil && !now.Before(c.read) && now.Sub(c.read) < peerCacheTTL
}

// storedDevices returns the DeviceStore's devices, read through the
// relay's cache. When the store cannot be read it returns the last ones
// read (logged).
func (h *Service) storedDevices(ctx context.Context) map[string]map[string][]string {
	r := h.relay
	r.mu.Lock()
	c := r.stored
	r.mu.Unlock()
	if c.fresh(h.clk.Now()) {
		return c.sites
	}
	r.readMu.Lock()
	defer r.readMu.Unlock()
	r.mu.Lock()
	c = r.stored
	r.mu.Unlock()
	now := h.clk.Now()
	if c.fresh(now) {
		return c.sites // another caller read them meanwhile
	}
	devs, err := h.st.Devices(ctx)
	if err != nil {
		h.log.Warn("cannot read the devices to relay ticket marks to; using those read before", "err", err)
		return c.sites
	}
	c = storedDevices{read: now, sites: map[string]map[string][]string{}}
	for _, d := range devs {
		if d.Device == SystemDevice {
			continue
		}
		if c.sites[d.Site] == nil {
			c.sites[d.Site] = map[string][]string{}
		}
		c.sites[d.Site][d.Device] = doorNames(d.Status.Doors)
	}
	r.mu.Lock()
	r.stored = c
	r.mu.Unlock()
	return c.sites
}

// doorNames returns the names of doors (nil for none).
func doorNames(doors []proto.DoorStatus) []string {
	if len(doors) == 0 {
		return nil
	}
	names := make([]string, len(doors))
	for i, d := range doors {
		names[i] = d.Name
	}
	return names
}

// newRelay returns a relay signing with key (nil: no relaying).
func newRelay(key ed25519.PrivateKey) *relay {
	return &relay{key: key, devices: map[string]map[string]bool{}, doors: map[string]map[string][]string{}}
}

// setDoors records the doors a device reported in its status.
func (r *relay) setDoors(site, device string, doors []proto.DoorStatus) {
	names := doorNames(doors)
	if names == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.doors[site] == nil {
		r.doors[site] = map[string][]string{}
	}
	r.doors[site][device] = names
}

// deviceDoors returns the doors device reported, false before it did:
// in a status this process took, else in the DeviceStore (another
// replica took it).
func (h *Service) deviceDoors(ctx context.Context, site, device string) ([]string, bool) {
	h.relay.mu.Lock()
	d, ok := h.relay.doors[site][device]
	h.relay.mu.Unlock()
	if ok {
		return d, true
	}
	d = h.storedDevices(ctx)[site][device]
	return d, d != nil
}

// publishJSONTo encodes v as JSON and publishes it to topic.
func publishJSONTo(ctx context.Context, pub publishFunc, topic string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message for %s: %w", topic, err)
	}
	return pub(ctx, topic, b)
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

// peers returns the site's devices other than device: those this process
// saw and those in the DeviceStore.
func (h *Service) peers(ctx context.Context, site, device string) []string {
	stored := h.storedDevices(ctx)[site]
	h.relay.mu.Lock()
	defer h.relay.mu.Unlock()
	var out []string
	for d := range h.relay.devices[site] {
		if _, dup := stored[d]; d != device && !dup {
			out = append(out, d)
		}
	}
	for d := range stored {
		if d != device {
			out = append(out, d)
		}
	}
	return out
}

// judge returns the MarkJudge for marks device of site sent, received at
// now; doors are the device's doors (nil: not checked). Events and door
// groups are looked up before, in rules, by the caller (lookups).
func (h *Service) judge(now time.Time, doors []string, lk lookups) MarkJudge {
	return func(hist []proto.Mark, m proto.Mark) MarkVerdict {
		if m.At.After(now.Add(h.skew)) {
			return MarkVerdict{Refused: refusedFuture}
		}
		ev, known := lk.events[m.Event]
		if h.rules != nil {
			switch {
			case !known:
				return MarkVerdict{Refused: refusedEvent}
			case !slices.Contains(lk.groups[m.Door], ev.DoorGroup):
				return MarkVerdict{Refused: refusedDoorGroup}
			case !slices.Contains(doors, m.Door):
				return MarkVerdict{Refused: refusedDeviceDoor}
			case m.At.Before(ev.Start.Add(-h.skew)) || m.At.After(ev.End.Add(h.skew)):
				return MarkVerdict{Refused: refusedWindow}
			}
		}
		return transition(hist, m, known && !ev.Reentry)
	}
}

// transition judges m against the ticket's history by At: an exit needs an
// entry before it; an entry right after another entry (or right before
// one) is accepted as a conflict, and so is an entry after an exit of a
// single-entry ticket.
func transition(hist []proto.Mark, m proto.Mark, single bool) MarkVerdict {
	i, _ := slices.BinarySearchFunc(hist, m, func(a, b proto.Mark) int { return a.At.Compare(b.At) })
	var prev, next *proto.Mark
	if i > 0 {
		prev = &hist[i-1]
	}
	if i < len(hist) {
		next = &hist[i]
	}
	if m.State == proto.MarkOut {
		if prev == nil || prev.State != proto.MarkIn {
			return MarkVerdict{Refused: refusedExit}
		}
		return MarkVerdict{}
	}
	switch {
	case prev != nil && prev.State == proto.MarkIn:
		return MarkVerdict{Conflict: prev}
	case prev != nil && single:
		return MarkVerdict{Conflict: firstEntry(hist)}
	case next != nil && next.State == proto.MarkIn:
		return MarkVerdict{Conflict: next}
	}
	return MarkVerdict{}
}

// firstEntry returns the first entry of hist.
func firstEntry(hist []proto.Mark) *proto.Mark {
	for i := range hist {
		if hist[i].State == proto.MarkIn {
			return &hist[i]
		}
	}
	return &hist[0]
}

// lookups are the events and door groups a batch of marks names.
type lookups struct {
	events map[string]TicketEvent
	groups map[string][]string
}

// lookup reads from h.rules the events and doors marks name.
func (h *Service) lookup(ctx context.Context, site string, marks []proto.Mark) (lookups, error) {
	lk := lookups{events: map[string]TicketEvent{}, groups: map[string][]string{}}
	if h.rules == nil {
		return lk, nil
	}
	for _, m := range marks {
		if _, done := lk.events[m.Event]; !done {
			ev, ok, err := h.rules.TicketEvent(ctx, site, m.Event)
			if err != nil {
				return lk, fmt.Errorf("look up event %q of site %s: %w", m.Event, site, err)
			}
			if ok {
				lk.events[m.Event] = ev
			}
		}
		if _, done := lk.groups[m.Door]; !done {
			g, _, err := h.rules.DoorGroups(ctx, site, m.Door)
			if err != nil {
				return lk, fmt.Errorf("look up door %q of site %s: %w", m.Door, site, err)
			}
			lk.groups[m.Door] = g
		}
	}
	return lk, nil
}

// handleMarks judges and stores a device's marks, acknowledges them once
// committed and pushes the accepted ones to the site's other gates.
func (h *Service) handleMarks(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	b, err := proto.DecodeMarks(topic, payload)
	if err != nil {
		h.log.Warn("rejected marks message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	h.relay.seen(b.Site, b.Device, true)
	if reason, detail := h.limits.request(b.Site, b.Device, proto.LeafMarks, len(payload)); reason != "" {
		h.refuse(ctx, b.Site, b.Device, reason, detail)
		return // not acknowledged: the gate sends the marks again
	}
	var doors []string
	if h.rules != nil {
		var known bool
		if doors, known = h.deviceDoors(ctx, b.Site, b.Device); !known {
			h.log.Warn("ticket marks held back: the device's doors are not known yet (no status); it will send again", "site", b.Site, "device", b.Device)
			return
		}
	}
	lk, err := h.lookup(ctx, b.Site, b.Marks)
	if err != nil {
		h.log.Error("cannot judge ticket marks; the device will send again", "topic", topic, "err", err)
		return
	}
	res, err := h.marks.Record(ctx, b.Site, b.Device, b.Marks, h.judge(h.clk.Now(), doors, lk))
	if err != nil {
		h.log.Error("cannot store ticket marks; the device will send again", "topic", topic, "err", err)
		return
	}
	h.reportMarks(ctx, b.Site, res.Reports)
	first, last := b.Range()
	ackTopic := proto.MarksAckTopic(b.Site, b.Device)
	if err := publishJSONTo(ctx, pub, ackTopic, proto.MarksAck{First: first, Last: last}); err != nil {
		h.log.Warn("cannot acknowledge ticket marks; the device will send again", "topic", ackTopic, "err", err)
	}
	h.log.Debug("stored ticket marks", "site", b.Site, "device", b.Device, "first", first, "last", last, "stored", len(res.Stored),
		"duplicates", res.Duplicates, "reports", len(res.Reports), "head", res.Head)
	if len(res.Stored) > 0 {
		h.push(ctx, pub, b.Site, b.Device, res.Stored, res.Head)
	}
}

// push sends newly stored marks (consecutive sequence numbers) to the
// site's devices other than origin.
func (h *Service) push(ctx context.Context, pub publishFunc, site, origin string, stored []proto.Mark, head uint64) {
	if h.relay.key == nil {
		h.log.Warn("ticket marks not pushed: HQ has no signing key (Config.Key)", "site", site)
		return
	}
	env, err := proto.SignPeerMarks(h.relay.key, proto.PeerMarks{Site: site, After: stored[0].Seq - 1, Head: head, Marks: stored, Pushed: true})
	if err != nil {
		h.log.Error("cannot sign ticket marks", "site", site, "err", err)
		return
	}
	for _, d := range h.peers(ctx, site, origin) {
		if err := pub(ctx, proto.PeerMarksTopic(site, d), env); err != nil {
			h.log.Warn("cannot push ticket marks; the gate fetches them when it connects", "site", site, "device", d, "err", err)
		}
	}
}

// handleMarksGet answers a gate's marks-get from the store.
func (h *Service) handleMarksGet(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	site, device, g, err := proto.DecodeMarksGet(topic, payload)
	if err != nil {
		h.log.Warn("rejected marks-get message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	h.relay.seen(site, device, true)
	if reason, detail := h.limits.request(site, device, proto.LeafMarksGet, len(payload)); reason != "" {
		h.refuse(ctx, site, device, reason, detail)
		return // the gate asks again (on its next connection or mark interval)
	}
	if h.relay.key == nil {
		h.log.Warn("cannot serve ticket marks: HQ has no signing key (Config.Key)", "topic", topic)
		return
	}
	ms, head, err := h.marks.After(ctx, site, g.After, proto.MaxMarks)
	if err != nil {
		h.log.Error("cannot read ticket marks", "topic", topic, "after", g.After, "err", err)
		return
	}
	after := g.After
	if after > head {
		after = head // the gate is ahead of this store: it starts over
	}
	env, err := proto.SignPeerMarks(h.relay.key, proto.PeerMarks{Site: site, After: after, Head: head, Marks: ms, Asked: &g.After})
	if err == nil {
		err = pub(ctx, proto.PeerMarksTopic(site, device), env)
	}
	if err != nil {
		h.log.Warn("cannot send ticket marks; the gate asks again", "site", site, "device", device, "err", err)
		return
	}
	h.log.Debug("answered marks-get", "site", site, "device", device, "after", g.After, "marks", len(ms), "head", head)
}

// reportMarks reports the refusals and conflicts of marks of site HQ just
// recorded like the per-device limits' refusals (refuse): counted, logged
// and stored as device_refused events with refused=mark_refused or
// refused=ticket_conflict, at most one per device and reason per
// Limits.ReportInterval. The reports themselves stay in the mark store
// (MarkReports).
func (h *Service) reportMarks(ctx context.Context, site string, reps []MarkReport) {
	for _, r := range reps {
		m := r.Mark
		what := fmt.Sprintf("%s of ticket %x at door %s at %s", markVerb(m.State), m.Ticket, m.Door, m.At.UTC().Format(time.RFC3339Nano))
		if r.Kind == ReportConflict && r.Other != nil {
			o := r.Other
			h.refuse(ctx, site, r.Device, refusedTicketConflict, fmt.Sprintf("%s; also entered at door %s at %s (device %s)",
				what, o.Door, o.At.UTC().Format(time.RFC3339Nano), o.Device))
			continue
		}
		h.refuse(ctx, site, r.Device, refusedMark, what+": "+r.Reason)
	}
}

// markVerb names a mark's passage for operators.
func markVerb(st proto.MarkState) string {
	if st == proto.MarkOut {
		return "exit"
	}
	return "entry"
}

// MarkReports returns the refusals and conflicts of ticket marks HQ
// recorded for site, oldest first.
func (h *Service) MarkReports(ctx context.Context, site string) ([]MarkReport, error) {
	return h.marks.Reports(ctx, site)
}

// Marks returns up to limit of site's stored marks after seq, and the
// site's head.
func (h *Service) Marks(ctx context.Context, site string, after uint64, limit int) ([]proto.Mark, uint64, error) {
	return h.marks.After(ctx, site, after, limit)
}
