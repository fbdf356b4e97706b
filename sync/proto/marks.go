package proto

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/internal/signed"
)

// Ticket marks: the gates of one venue (one site) share the marks of
// single-entry tickets through HQ, so that a ticket used at gate 1 is
// refused at gate 2. Nothing here depends on the broker keeping a message
// or a session:
//
//	tobira/v1/{site}/{device}/marks       edge -> HQ, QoS 1: MarkBatch, each mark numbered by the
//	                                      gate's outbox (Mark.Seq); sent again until acknowledged
//	tobira/v1/{site}/{device}/marks-ack   HQ -> edge, QoS 1: MarksAck, once HQ has stored the
//	                                      batch durably (or refused marks of it for good)
//	tobira/v1/{site}/{device}/marks-get   edge -> HQ, QoS 1: MarksGet{after: cursor}
//	tobira/v1/{site}/{device}/peer-marks  HQ -> edge, QoS 1: signed PeerMarks: the site's marks
//	                                      with HQ's sequence numbers After+1, After+2, ...
//
// A gate keeps each mark in its outbox until HQ acknowledges it; HQ
// acknowledges only after it committed the mark (or refused it: item 3 of
// issue 12), numbers the site's marks 1, 2, 3, ... and answers marks-get
// from its store. Every gate asks from its cursor whenever it connects,
// and HQ pushes new marks to the gates it knows as they come. A gate
// stores its cursor only after it has applied the marks up to it.
// Receivers merge marks last-writer-wins, so duplicates, reordering and
// replays are harmless.

// Mark limits.
const (
	// MaxMarks bounds the marks of one MarkBatch or PeerMarks.
	MaxMarks = 500
	// KindPeerMarks is the signed.Envelope kind of PeerMarks.
	KindPeerMarks = "peer-marks"
	// MaxMarkIDLen bounds a mark's Event and Door (the policy's ID limit).
	MaxMarkIDLen = 128
	// DefaultMarkSkew is how far in the future of its receiver's clock a
	// mark's At may be before the receiver refuses it (HQ and gates).
	DefaultMarkSkew = 5 * time.Minute
	// maxMarkPayload bounds a marks payload in bytes.
	maxMarkPayload = 1 << 20
	// maxTicketKey bounds a mark's ticket key in bytes.
	maxTicketKey = 256
	// maxSmallPayload bounds a marks-ack or marks-get payload.
	maxSmallPayload = 256
)

// MarkState is the passage a Mark records. The numbers are part of the
// protocol.
type MarkState uint8

// Mark states.
const (
	// MarkIn: the ticket was used to enter.
	MarkIn MarkState = 1
	// MarkOut: the ticket was scanned at an exit after entering.
	MarkOut MarkState = 2
)

// Mark is one ticket mark as it travels. Field names are part of the
// protocol. (The edge's store keeps its own type, policy.UsedMark; sync
// converts.)
type Mark struct {
	// Seq numbers the mark: in a marks message, the gate's outbox
	// sequence number (1, 2, 3, ... per gate); in a peer-marks message,
	// HQ's sequence number of the site's marks.
	Seq uint64 `json:"seq,omitempty"`
	// Device is the gate that recorded the mark (peer-marks only).
	Device string `json:"device,omitempty"`
	// Ticket is the ticket's credential key (credential.Credential.Key),
	// base64 in JSON.
	Ticket []byte `json:"ticket"`
	// Event is the ticket's event ID.
	Event string `json:"event"`
	// State is the passage recorded.
	State MarkState `json:"state"`
	// At is when the gate recorded it (the gate's trusted time).
	At time.Time `json:"at"`
	// Door is the door that recorded it.
	Door string `json:"door"`
}

// Same reports whether m and o record the same passage: ticket, state,
// instant and door (not Seq or Device, which number it on its way).
func (m Mark) Same(o Mark) bool {
	return string(m.Ticket) == string(o.Ticket) && m.State == o.State && m.At.Equal(o.At) && m.Door == o.Door
}

// validate checks one mark's fields; i names it in the error.
func (m Mark) validate(i int) error {
	switch {
	case len(m.Ticket) == 0 || len(m.Ticket) > maxTicketKey:
		return fmt.Errorf("%w: mark %d: ticket key of %d bytes", ErrMalformed, i, len(m.Ticket))
	case m.State != MarkIn && m.State != MarkOut:
		return fmt.Errorf("%w: mark %d: state %d", ErrMalformed, i, m.State)
	case m.At.IsZero() || m.At.Year() < 1 || m.At.Year() > 9999:
		return fmt.Errorf("%w: mark %d: time %v", ErrMalformed, i, m.At)
	case len(m.Event) > MaxMarkIDLen || len(m.Door) > MaxMarkIDLen:
		return fmt.Errorf("%w: mark %d: event or door longer than %d bytes", ErrMalformed, i, MaxMarkIDLen)
	case m.Device != "" && CheckName(m.Device) != nil:
		return fmt.Errorf("%w: mark %d: device %q", ErrMalformed, i, m.Device)
	}
	return nil
}

// MarkBatch is the payload of a marks message: marks one gate recorded.
type MarkBatch struct {
	// Site is the venue.
	Site string `json:"site"`
	// Device is the device that recorded the marks.
	Device string `json:"device"`
	// Marks are 1..MaxMarks ticket marks, each with the gate's outbox
	// sequence number (Seq >= 1), in increasing Seq order.
	Marks []Mark `json:"marks"`
}

// Validate reports whether b's fields are well formed. The error wraps
// ErrMalformed.
func (b MarkBatch) Validate() error {
	if err := CheckName(b.Site); err != nil {
		return fmt.Errorf("%w: marks: site: %w", ErrMalformed, err)
	}
	if err := CheckName(b.Device); err != nil {
		return fmt.Errorf("%w: marks: device: %w", ErrMalformed, err)
	}
	if len(b.Marks) == 0 || len(b.Marks) > MaxMarks {
		return fmt.Errorf("%w: %d marks, want 1..%d", ErrMalformed, len(b.Marks), MaxMarks)
	}
	var last uint64
	for i, m := range b.Marks {
		if err := m.validate(i); err != nil {
			return err
		}
		if m.Seq <= last {
			return fmt.Errorf("%w: mark %d: seq %d after %d, want increasing from 1", ErrMalformed, i, m.Seq, last)
		}
		last = m.Seq
	}
	return nil
}

// Range returns the first and last outbox sequence numbers of b.
func (b MarkBatch) Range() (first, last uint64) {
	return b.Marks[0].Seq, b.Marks[len(b.Marks)-1].Seq
}

// DecodeMarks parses a marks payload received on topic. The error wraps
// ErrMalformed.
func DecodeMarks(topic string, payload []byte) (MarkBatch, error) {
	site, device, err := parseDeviceTopic(topic, LeafMarks)
	if err != nil {
		return MarkBatch{}, err
	}
	b, err := decodeJSON[MarkBatch]("marks", payload, maxMarkPayload)
	if err != nil {
		return MarkBatch{}, err
	}
	if b.Site != site || b.Device != device {
		return MarkBatch{}, fmt.Errorf("%w: marks are from %s/%s but topic names %s/%s", ErrMalformed, b.Site, b.Device, site, device)
	}
	return b, nil
}

// MarksAck is the payload of a marks-ack message: HQ has dealt with the
// gate's marks First..Last for good (stored them durably, or refused
// them), so the gate may delete them from its outbox.
type MarksAck struct {
	// First is the first outbox sequence number acknowledged.
	First uint64 `json:"first"`
	// Last is the last one; First <= Last.
	Last uint64 `json:"last"`
}

// Validate reports whether a is well formed. The error wraps ErrMalformed.
func (a MarksAck) Validate() error {
	if a.First == 0 || a.Last < a.First {
		return fmt.Errorf("%w: marks-ack %d..%d, want 1 <= first <= last", ErrMalformed, a.First, a.Last)
	}
	return nil
}

// DecodeMarksAck parses a marks-ack payload. The error wraps ErrMalformed.
func DecodeMarksAck(payload []byte) (MarksAck, error) {
	return decodeJSON[MarksAck]("marks-ack", payload, maxSmallPayload)
}

// MarksGet is the payload of a marks-get message: the gate asks for the
// site's marks after its cursor.
type MarksGet struct {
	// After is the gate's cursor: the last HQ sequence number it applied
	// (0: none).
	After uint64 `json:"after"`
}

// Validate implements the package's payload check; every MarksGet is
// well formed.
func (MarksGet) Validate() error { return nil }

// DecodeMarksGet parses a marks-get payload received on topic and returns
// its site and device. The error wraps ErrMalformed.
func DecodeMarksGet(topic string, payload []byte) (site, device string, g MarksGet, err error) {
	if site, device, err = parseDeviceTopic(topic, LeafMarksGet); err != nil {
		return "", "", MarksGet{}, err
	}
	g, err = decodeJSON[MarksGet]("marks-get", payload, maxSmallPayload)
	return site, device, g, err
}

// PeerMarks is the signed payload of a peer-marks message: the site's
// marks After+1 .. After+len(Marks) in HQ's numbering, with the gate that
// recorded each. An empty PeerMarks says "nothing after After".
type PeerMarks struct {
	// Site is the venue.
	Site string `json:"site"`
	// After is the HQ sequence number the marks follow.
	After uint64 `json:"after"`
	// Head is HQ's latest sequence number of the site when it sent this:
	// a gate whose cursor is behind it asks again.
	Head uint64 `json:"head"`
	// Marks are 0..MaxMarks marks with Seq After+1, After+2, ...
	Marks []Mark `json:"marks"`
	// Asked, in HQ's answer to a marks-get, is the After the gate asked
	// for (HQ answers After = Head when the gate asked beyond its head).
	// Nil in pushes, and from HQs before it.
	Asked *uint64 `json:"asked,omitempty"`
	// Pushed is set on HQ's push of marks it just stored.
	Pushed bool `json:"pushed,omitempty"`
}

// Renumbered reports whether p tells a gate whose peer-marks cursor is
// cur that HQ numbers the site's marks anew (a new store), so that the
// gate must fetch them from the start: p answers a marks-get that asked
// beyond HQ's head. A push, or an answer HQ read before a push it
// overtook, can arrive after newer marks: its head behind cur is no news.
// From an HQ that marks neither answers nor pushes, any head behind cur
// says so.
func (p PeerMarks) Renumbered(cur uint64) bool {
	switch {
	case p.Asked != nil:
		return p.Head < *p.Asked
	case p.Pushed:
		return false
	default:
		return p.Head < cur
	}
}

// Validate reports whether p's fields are well formed. The error wraps
// ErrMalformed.
func (p PeerMarks) Validate() error {
	if err := CheckName(p.Site); err != nil {
		return fmt.Errorf("%w: peer-marks: site: %w", ErrMalformed, err)
	}
	if len(p.Marks) > MaxMarks {
		return fmt.Errorf("%w: %d peer marks, want at most %d", ErrMalformed, len(p.Marks), MaxMarks)
	}
	if p.Pushed && p.Asked != nil {
		return fmt.Errorf("%w: peer-marks both pushed and an answer (asked %d)", ErrMalformed, *p.Asked)
	}
	if p.Head < p.After+uint64(len(p.Marks)) {
		return fmt.Errorf("%w: peer-marks head %d before after %d + %d marks", ErrMalformed, p.Head, p.After, len(p.Marks))
	}
	for i, m := range p.Marks {
		if err := m.validate(i); err != nil {
			return err
		}
		if m.Seq != p.After+uint64(i)+1 {
			return fmt.Errorf("%w: peer mark %d has seq %d, want %d", ErrMalformed, i, m.Seq, p.After+uint64(i)+1)
		}
	}
	return nil
}

// Last returns the HQ sequence number of p's last mark (After when empty).
func (p PeerMarks) Last() uint64 { return p.After + uint64(len(p.Marks)) }

// SignPeerMarks returns the signed peer-marks envelope of p (HQ side).
func SignPeerMarks(priv ed25519.PrivateKey, p PeerMarks) ([]byte, error) {
	return signJSON(priv, KindPeerMarks, p)
}

// OpenPeerMarks verifies a peer-marks envelope with v and decodes it
// (device side). Errors wrap ErrMalformed or one of signed's errors.
func OpenPeerMarks(v *signed.Verifier, envelope []byte) (PeerMarks, error) {
	return openJSON[PeerMarks](v, KindPeerMarks, envelope, maxMarkPayload)
}
