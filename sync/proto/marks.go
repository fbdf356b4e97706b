package proto

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/internal/signed"
)

// Ticket used-marks: the gates of one venue (one site) share the "used"
// marks of tickets through HQ, so that a ticket used at gate 1 is refused
// at gate 2:
//
//	tobira/v1/{site}/{device}/marks       edge -> HQ, QoS 1: MarkBatch (JSON)
//	tobira/v1/{site}/{device}/peer-marks  HQ -> edge, QoS 1: signed envelope of kind "marks"
//	                                      holding a MarkBatch whose Device is the origin
//
// HQ relays each batch, signed with its key, to every other device of the
// site, and sends a device the site's whole mark set when the device comes
// online. Receivers merge marks last-writer-wins, so duplicates, reordering
// and replays are harmless.

// Mark limits.
const (
	// MaxMarks bounds the marks of one MarkBatch.
	MaxMarks = 500
	// KindMarks is the signed.Envelope kind of relayed marks.
	KindMarks = "marks"
	// MaxMarkIDLen bounds a mark's Event and Door (the policy's ID limit).
	MaxMarkIDLen = 128
	// maxMarkPayload bounds a marks payload in bytes.
	maxMarkPayload = 1 << 20
	// maxTicketKey bounds a mark's ticket key in bytes.
	maxTicketKey = 256
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

// Mark is one ticket "used" mark as it travels. Field names are part of the
// protocol. (The edge's store keeps its own type, policy.UsedMark; sync
// converts.)
type Mark struct {
	// Ticket is the ticket's credential key (credential.Credential.Key),
	// base64 in JSON.
	Ticket []byte `json:"ticket"`
	// Event is the ticket's event ID.
	Event string `json:"event"`
	// State is the passage recorded.
	State MarkState `json:"state"`
	// At is when the gate recorded it (the gate's trusted time).
	At time.Time `json:"at"`
	// Door is the gate that recorded it.
	Door string `json:"door"`
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
	Marks []Mark `json:"marks"`
}

// Validate reports whether b's fields are well formed. The error wraps
// ErrMalformed.
func (b MarkBatch) Validate() error {
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
		case m.State != MarkIn && m.State != MarkOut:
			return fmt.Errorf("%w: mark %d: state %d", ErrMalformed, i, m.State)
		case m.At.IsZero():
			return fmt.Errorf("%w: mark %d: no time", ErrMalformed, i)
		case len(m.Event) > MaxMarkIDLen || len(m.Door) > MaxMarkIDLen:
			return fmt.Errorf("%w: mark %d: event or door longer than %d bytes", ErrMalformed, i, MaxMarkIDLen)
		}
	}
	return nil
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

// SignMarks returns the signed peer-marks envelope of b (HQ side).
func SignMarks(priv ed25519.PrivateKey, b MarkBatch) ([]byte, error) {
	return signJSON(priv, KindMarks, b)
}

// OpenMarks verifies a peer-marks envelope with v and decodes it (device
// side). Errors wrap ErrMalformed or one of signed's errors.
func OpenMarks(v *signed.Verifier, envelope []byte) (MarkBatch, error) {
	return openJSON[MarkBatch](v, KindMarks, envelope, maxMarkPayload)
}
