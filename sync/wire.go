package sync

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Protocol constants (docs/PROTOCOL.md).
const (
	// TopicPrefix is the first two levels of every tobira topic.
	TopicPrefix = "tobira/v1"
	// EventsSubscription is the filter HQ subscribes to: every device's
	// events topic.
	EventsSubscription = TopicPrefix + "/+/+/events"
	// MaxNameLen bounds a site or device name.
	MaxNameLen = 64
	// MaxBatch is the most events one events message may carry.
	MaxBatch = 1000
	// DefaultBatch is how many events the edge puts in one message unless
	// EdgeConfig.Batch says otherwise.
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

// CheckName reports whether s may be used as a site or device name: 1 to
// MaxNameLen characters from A-Z a-z 0-9 '.' '_' '-'. Names are topic levels,
// so MQTT's '/', '+' and '#' are excluded.
func CheckName(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("name %q is %d bytes, want 1..%d", s, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("name %q has byte 0x%02x at %d; allowed are A-Z a-z 0-9 . _ -", s, c, i)
		}
	}
	return nil
}

// deviceTopic is the topic tobira/v1/{site}/{device}/{leaf}: every
// per-device topic of the contract is built here.
func deviceTopic(site, device, leaf string) string {
	return TopicPrefix + "/" + site + "/" + device + "/" + leaf
}

// EventsTopic returns the topic a device publishes its events to.
func EventsTopic(site, device string) string {
	return deviceTopic(site, device, "events")
}

// AckTopic returns the topic HQ publishes a device's acknowledgements to.
func AckTopic(site, device string) string {
	return deviceTopic(site, device, "ack")
}

// ParseEventsTopic returns the site and device of an events topic. The error
// wraps ErrMalformed.
func ParseEventsTopic(topic string) (site, device string, err error) {
	parts := strings.Split(topic, "/")
	if len(parts) != 5 || parts[0]+"/"+parts[1] != TopicPrefix || parts[4] != "events" {
		return "", "", fmt.Errorf("%w: topic %q is not %s/{site}/{device}/events", ErrMalformed, topic, TopicPrefix)
	}
	if err := CheckName(parts[2]); err != nil {
		return "", "", fmt.Errorf("%w: topic %q: site: %w", ErrMalformed, topic, err)
	}
	if err := CheckName(parts[3]); err != nil {
		return "", "", fmt.Errorf("%w: topic %q: device: %w", ErrMalformed, topic, err)
	}
	return parts[2], parts[3], nil
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
		if err := ev.check(); err != nil {
			return Batch{}, fmt.Errorf("%w: events payload: event seq %d: %w", ErrMalformed, ev.Seq, err)
		}
	}
	return b, nil
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
