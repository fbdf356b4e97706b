package sync

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
)

// Ticket used-marks: the gates of one venue (one site) share the "used"
// marks of tickets through HQ, so that a ticket used at gate 1 is refused
// at gate 2:
//
//	tobira/v1/{site}/{device}/marks       edge -> HQ, QoS 1: MarkBatch (JSON)
//	tobira/v1/{site}/{device}/peer-marks  HQ -> edge, QoS 1: signed envelope of kind "marks"
//	                                      holding a MarkBatch whose Device is the origin
//
// The edge reads the marks its policy store recorded (MarkStore.UsedMarks)
// after a persisted cursor, publishes them, and advances the cursor once
// the broker has taken them. HQ relays each batch, signed with its key, to
// every other device of the site it knows (from status and events), and
// sends a device the site's whole mark set when the device comes online.
// The edge verifies the signature against its pinned keys and merges the
// marks (MarkStore.MergeUsedMarks: last writer wins, idempotent), so
// duplicates, reordering and replays are harmless.

// Mark limits and defaults.
const (
	// MaxMarks bounds the marks of one MarkBatch.
	MaxMarks = 500
	// DefaultMarkInterval is how often the edge looks for new marks when
	// nothing prompts it.
	DefaultMarkInterval = time.Second
	// KindMarks is the signed.Envelope kind of relayed marks.
	KindMarks = "marks"
	// maxMarkPayload bounds a marks payload in bytes.
	maxMarkPayload = 1 << 20
	// maxTicketKey bounds a mark's ticket key in bytes.
	maxTicketKey = 256
	// marksLeaf and peerMarksLeaf are the last topic levels.
	marksLeaf     = "marks"
	peerMarksLeaf = "peer-marks"
)

// MarksSubscription is the filter HQ subscribes to for devices' marks.
const MarksSubscription = TopicPrefix + "/+/+/" + marksLeaf

// MarksTopic returns the topic a device publishes its ticket marks to.
func MarksTopic(site, device string) string {
	return deviceTopic(site, device, marksLeaf)
}

// PeerMarksTopic returns the topic HQ relays other gates' marks to a
// device on.
func PeerMarksTopic(site, device string) string {
	return deviceTopic(site, device, peerMarksLeaf)
}

// MarkBatch is the payload of a marks message, and the signed payload of a
// peer-marks message (where Device is the gate that recorded the marks, or
// "" for HQ's catch-up set).
type MarkBatch struct {
	// Site is the venue.
	Site string `json:"site"`
	// Device is the device that recorded the marks.
	Device string `json:"device"`
	// Marks are 1..MaxMarks ticket marks.
	Marks []policy.UsedMark `json:"marks"`
}

// check validates the batch's fields.
func (b MarkBatch) check() error {
	if err := CheckName(b.Site); err != nil {
		return fmt.Errorf("%w: marks: site: %w", ErrMalformed, err)
	}
	if b.Device != "" {
		if err := CheckName(b.Device); err != nil {
			return fmt.Errorf("%w: marks: device: %w", ErrMalformed, err)
		}
	}
	if len(b.Marks) == 0 || len(b.Marks) > MaxMarks {
		return fmt.Errorf("%w: %d marks, want 1..%d", ErrMalformed, len(b.Marks), MaxMarks)
	}
	for i, m := range b.Marks {
		switch {
		case len(m.Ticket) == 0 || len(m.Ticket) > maxTicketKey:
			return fmt.Errorf("%w: mark %d: ticket key of %d bytes", ErrMalformed, i, len(m.Ticket))
		case m.State != policy.MarkIn && m.State != policy.MarkOut:
			return fmt.Errorf("%w: mark %d: state %d", ErrMalformed, i, m.State)
		case m.At.IsZero():
			return fmt.Errorf("%w: mark %d: no time", ErrMalformed, i)
		case len(m.Event) > policy.MaxIDLen || len(m.Door) > policy.MaxIDLen:
			return fmt.Errorf("%w: mark %d: event or door longer than %d bytes", ErrMalformed, i, policy.MaxIDLen)
		}
	}
	return nil
}

// DecodeMarks parses a marks payload received on topic. The error wraps
// ErrMalformed.
func DecodeMarks(topic string, payload []byte) (MarkBatch, error) {
	site, device, err := parseDeviceTopic(topic, marksLeaf)
	if err != nil {
		return MarkBatch{}, err
	}
	b, err := decodeMarkBatch(payload)
	if err != nil {
		return MarkBatch{}, err
	}
	if b.Site != site || b.Device != device {
		return MarkBatch{}, fmt.Errorf("%w: marks are from %s/%s but topic names %s/%s", ErrMalformed, b.Site, b.Device, site, device)
	}
	return b, nil
}

// decodeMarkBatch parses and checks a MarkBatch.
func decodeMarkBatch(payload []byte) (MarkBatch, error) {
	if len(payload) > maxMarkPayload {
		return MarkBatch{}, fmt.Errorf("%w: marks payload is %d bytes, max %d", ErrMalformed, len(payload), maxMarkPayload)
	}
	var b MarkBatch
	if err := json.Unmarshal(payload, &b); err != nil {
		return MarkBatch{}, fmt.Errorf("%w: marks payload: %w", ErrMalformed, err)
	}
	return b, b.check()
}

// MarkStore is the edge's ticket-mark store: *policy.Store implements it.
type MarkStore interface {
	// UsedMarks returns up to limit marks recorded after cursor since, and
	// the cursor to pass next time.
	UsedMarks(since uint64, limit int) ([]policy.UsedMark, uint64, error)
	// MergeUsedMarks merges marks from other gates and returns how many
	// changed the local state.
	MergeUsedMarks(ctx context.Context, marks []policy.UsedMark) (int, error)
}

// keyMarksCursor is the outbox meta key of the last mark cursor sent.
var keyMarksCursor = []byte("marks_cursor")

// markLoop publishes the edge's marks and merges its peers'.
type markLoop struct {
	store    MarkStore
	ob       *Outbox
	v        *signed.Verifier
	clk      clock.Clock
	log      *slog.Logger
	site     string
	device   string
	interval time.Duration
	kick     chan struct{} // capacity 1
}

// nudge wakes the loop without blocking.
func (l *markLoop) nudge() { wake(l.kick) }

// cursor reads the persisted cursor.
func (l *markLoop) cursor() (uint64, error) {
	var c uint64
	err := l.ob.db.View(func(tx *bolt.Tx) error {
		c = seqOf(tx.Bucket(bucketMeta).Get(keyMarksCursor))
		return nil
	})
	return c, err
}

// setCursor persists the cursor.
func (l *markLoop) setCursor(c uint64) error {
	return l.ob.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyMarksCursor, seqKey(c)) })
}

// run publishes new marks when nudged and every interval until ctx ends.
func (l *markLoop) run(ctx context.Context, pub publisher, connected func() bool) {
	for {
		if connected() {
			if err := l.send(ctx, pub); err != nil && ctx.Err() == nil {
				l.log.Warn("cannot send ticket marks, will retry", "err", err)
			}
		}
		if !waitRound(ctx, l.clk, l.kick, l.interval) {
			return
		}
	}
}

// send publishes every mark recorded after the cursor.
func (l *markLoop) send(ctx context.Context, pub publisher) error {
	cur, err := l.cursor()
	if err != nil {
		return fmt.Errorf("read mark cursor: %w", err)
	}
	topic := MarksTopic(l.site, l.device)
	for {
		marks, next, err := l.store.UsedMarks(cur, MaxMarks)
		if err != nil {
			return fmt.Errorf("read marks after %d: %w", cur, err)
		}
		if len(marks) > 0 {
			b, err := json.Marshal(MarkBatch{Site: l.site, Device: l.device, Marks: marks})
			if err != nil {
				return fmt.Errorf("encode %d marks: %w", len(marks), err)
			}
			if err := pub.publish(ctx, topic, b); err != nil {
				return fmt.Errorf("publish %d marks to %s: %w", len(marks), topic, err)
			}
			l.log.Debug("sent ticket marks", "marks", len(marks), "cursor", next)
		}
		if next != cur {
			if err := l.setCursor(next); err != nil {
				return fmt.Errorf("store mark cursor %d: %w", next, err)
			}
		}
		if len(marks) < MaxMarks {
			return nil
		}
		cur = next
	}
}

// onPeerMarks verifies and merges a peer-marks message.
func (l *markLoop) onPeerMarks(ctx context.Context, topic string, envelope []byte) {
	payload, _, err := l.v.Open(KindMarks, envelope)
	if err != nil {
		l.log.Warn("refused peer marks", "topic", topic, "err", err)
		return
	}
	b, err := decodeMarkBatch(payload)
	if err == nil && b.Site != l.site {
		err = fmt.Errorf("%w: marks of site %s, this is %s", ErrWrongDevice, b.Site, l.site)
	}
	if err != nil {
		l.log.Warn("refused peer marks", "topic", topic, "err", err)
		return
	}
	n, err := l.store.MergeUsedMarks(ctx, b.Marks)
	if err != nil {
		l.log.Error("cannot merge peer marks", "origin", b.Device, "marks", len(b.Marks), "err", err)
		return
	}
	l.log.Debug("merged peer marks", "origin", b.Device, "marks", len(b.Marks), "changed", n)
}

// relay is HQ's ticket-mark relay: the devices of each site, and each
// site's latest mark per ticket (in memory: HQ forgets them on restart,
// devices keep theirs).
type relay struct {
	key ed25519.PrivateKey

	mu      gosync.Mutex
	devices map[string]map[string]bool            // site -> device -> online
	marks   map[string]map[string]policy.UsedMark // site -> ticket key -> latest mark
}

// newRelay returns a relay signing with key (nil: no relaying).
func newRelay(key ed25519.PrivateKey) *relay {
	return &relay{key: key, devices: map[string]map[string]bool{}, marks: map[string]map[string]policy.UsedMark{}}
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

// absorb records marks and returns the site's other devices.
func (r *relay) absorb(b MarkBatch) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.marks[b.Site]
	if m == nil {
		m = map[string]policy.UsedMark{}
		r.marks[b.Site] = m
	}
	for _, mk := range b.Marks {
		old, ok := m[string(mk.Ticket)]
		if !ok || mk.At.After(old.At) || (mk.At.Equal(old.At) && mk.State == policy.MarkIn) {
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
func (r *relay) siteMarks(site string) [][]policy.UsedMark {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]policy.UsedMark
	var cur []policy.UsedMark
	for _, m := range r.marks[site] {
		cur = append(cur, m)
		if len(cur) == MaxMarks {
			out, cur = append(out, cur), nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// sign returns the signed peer-marks envelope of b.
func (r *relay) sign(b MarkBatch) ([]byte, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode marks: %w", err)
	}
	return signed.Sign(KindMarks, raw, r.key)
}

// handleMarks relays a device's marks to the other devices of its site.
func (h *HQ) handleMarks(ctx context.Context, pub func(ctx context.Context, topic string, payload []byte) error, topic string, payload []byte) {
	b, err := DecodeMarks(topic, payload)
	if err != nil {
		h.log.Warn("rejected marks message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	h.relay.seen(b.Site, b.Device, true)
	peers := h.relay.absorb(b)
	if h.relay.key == nil {
		h.log.Warn("ticket marks not relayed: HQ has no signing key (HQConfig.Key)", "topic", topic)
		return
	}
	env, err := h.relay.sign(b)
	if err != nil {
		h.log.Error("cannot sign ticket marks", "topic", topic, "err", err)
		return
	}
	for _, d := range peers {
		if err := pub(ctx, PeerMarksTopic(b.Site, d), env); err != nil {
			h.log.Warn("cannot relay ticket marks", "site", b.Site, "device", d, "err", err)
		}
	}
	h.log.Debug("relayed ticket marks", "site", b.Site, "origin", b.Device, "marks", len(b.Marks), "peers", len(peers))
}

// catchUpMarks sends a device that came online the site's mark set.
func (h *HQ) catchUpMarks(ctx context.Context, pub func(ctx context.Context, topic string, payload []byte) error, site, device string) {
	if h.relay.key == nil {
		return
	}
	for _, ms := range h.relay.siteMarks(site) {
		env, err := h.relay.sign(MarkBatch{Site: site, Marks: ms})
		if err == nil {
			err = pub(ctx, PeerMarksTopic(site, device), env)
		}
		if err != nil {
			h.log.Warn("cannot send ticket marks to a device that came online", "site", site, "device", device, "err", err)
			return
		}
	}
}
