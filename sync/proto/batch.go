package proto

import (
	"encoding/json"
	"fmt"
	"math"
)

// Limits of events messages (docs/PROTOCOL.md).
const (
	// MaxBatch is the most events one events message may carry.
	MaxBatch = 1000
	// DefaultBatch is how many events the edge puts in one message unless
	// configured otherwise (sync.EdgeConfig.Batch).
	DefaultBatch = 100
	// MaxPayload is the largest events or ack payload accepted, in bytes.
	MaxPayload = 1 << 20
	// maxAckPayload bounds an ack payload: {"seq":18446744073709551615}
	// with generous room for whitespace.
	maxAckPayload = 256
)

// Batch is the payload of an events message: consecutive events of one
// device, oldest first.
type Batch struct {
	// Device is the sending device; it must match the topic.
	Device string `json:"device"`
	// Site is the device's site; it must match the topic.
	Site string `json:"site"`
	// Events are 1..MaxBatch events with consecutive sequence numbers.
	Events []Event `json:"events"`
}

// Ack is the payload of an ack message: HQ holds every event of the device
// with a sequence number <= Seq.
type Ack struct {
	// Seq is the highest sequence number up to which HQ holds every event.
	Seq uint64 `json:"seq"`
}

// DecodeBatch parses and checks an events payload: valid JSON of at most
// MaxPayload bytes, valid site and device names, 1..MaxBatch events with
// consecutive sequence numbers starting at 1 or above, each event within the
// field rules. Unknown JSON fields are ignored, so that newer devices can add
// fields. The error wraps ErrMalformed.
func DecodeBatch(payload []byte) (Batch, error) {
	if len(payload) > MaxPayload {
		return Batch{}, fmt.Errorf("%w: events payload is %d bytes, max %d", ErrMalformed, len(payload), MaxPayload)
	}
	var b Batch
	if err := json.Unmarshal(payload, &b); err != nil {
		return Batch{}, fmt.Errorf("%w: events payload: %w", ErrMalformed, err)
	}
	if err := CheckName(b.Site); err != nil {
		return Batch{}, fmt.Errorf("%w: events payload: site: %w", ErrMalformed, err)
	}
	if err := CheckName(b.Device); err != nil {
		return Batch{}, fmt.Errorf("%w: events payload: device: %w", ErrMalformed, err)
	}
	if len(b.Events) == 0 || len(b.Events) > MaxBatch {
		return Batch{}, fmt.Errorf("%w: events payload has %d events, want 1..%d", ErrMalformed, len(b.Events), MaxBatch)
	}
	for i, ev := range b.Events {
		switch {
		case i == 0 && ev.Seq == 0:
			return Batch{}, fmt.Errorf("%w: events payload: event 0 has seq 0; sequence numbers start at 1", ErrMalformed)
		case i > 0 && (b.Events[i-1].Seq == math.MaxUint64 || ev.Seq != b.Events[i-1].Seq+1):
			return Batch{}, fmt.Errorf("%w: events payload: event %d has seq %d after seq %d; want consecutive", ErrMalformed, i, ev.Seq, b.Events[i-1].Seq)
		}
		if err := ev.Validate(); err != nil {
			return Batch{}, fmt.Errorf("%w: events payload: event seq %d: %w", ErrMalformed, ev.Seq, err)
		}
	}
	return b, nil
}

// EncodeBatch builds the events payload of site/device from events already
// encoded as JSON (as the edge's outbox stores them), with the same bytes
// json.Marshal(Batch) would give: the longest prefix of events that fits in
// MaxPayload. first is the sequence number of events[0], for the error. It
// returns the payload and how many events it holds.
func EncodeBatch(site, device string, first uint64, events [][]byte) (payload []byte, n int, err error) {
	head, err := json.Marshal(Batch{Device: device, Site: site})
	if err != nil {
		return nil, 0, fmt.Errorf("encode batch header: %w", err)
	}
	// head ends in `"events":null}`; cut "null}" and add the array.
	head = head[:len(head)-len("null}")]
	size := len(head) + len("[]}")
	for n < len(events) && size+len(events[n])+1 <= MaxPayload {
		size += len(events[n]) + 1
		n++
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("event seq %d alone exceeds %d bytes", first, MaxPayload)
	}
	b := make([]byte, 0, size)
	b = append(b, head...)
	b = append(b, '[')
	for i, r := range events[:n] {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	b = append(b, ']', '}')
	return b, n, nil
}

// EncodeAck returns the ack payload for seq.
func EncodeAck(seq uint64) []byte {
	b, _ := json.Marshal(Ack{Seq: seq}) // cannot fail: one uint64 field
	return b
}

// DecodeAck parses an ack payload and returns its sequence number, which is
// at least 1. The error wraps ErrMalformed.
func DecodeAck(payload []byte) (uint64, error) {
	if len(payload) > maxAckPayload {
		return 0, fmt.Errorf("%w: ack payload is %d bytes, max %d", ErrMalformed, len(payload), maxAckPayload)
	}
	var a struct {
		Seq *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(payload, &a); err != nil {
		return 0, fmt.Errorf("%w: ack payload: %w", ErrMalformed, err)
	}
	if a.Seq == nil {
		return 0, fmt.Errorf("%w: ack payload has no seq", ErrMalformed)
	}
	if *a.Seq == 0 {
		return 0, fmt.Errorf("%w: ack payload has seq 0; sequence numbers start at 1", ErrMalformed)
	}
	return *a.Seq, nil
}
