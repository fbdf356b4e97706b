package proto

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Enrollment intake: a device in enroll mode produces enrollment records
// (the card's certificate, a challenge and the card's signature over it).
// They travel on their own durable channel, never in the event stream,
// because the certificate's notAfter hints at the holder's birthday:
//
//	tobira/v1/{site}/{device}/enroll      edge -> HQ, QoS 1: Enrollment (JSON)
//	tobira/v1/{site}/{device}/enroll-ack  HQ -> edge, QoS 1: Ack {"seq":N}
//
// Acks are per record, not cumulative: HQ acknowledges the very sequence
// number it stored (once per site, device and seq), and again when a record
// comes twice.

// MaxEnrollmentPayload bounds an enroll payload in bytes.
const MaxEnrollmentPayload = 64 << 10

// Enrollment is the payload of an enroll message.
type Enrollment struct {
	// Site and Device name the sender; they must match the topic.
	Site string `json:"site"`
	// Device is the sending device.
	Device string `json:"device"`
	// Seq is the device's enrollment sequence number (from 1, never
	// repeated; separate from the events' numbers).
	Seq uint64 `json:"seq"`
	// Record is the enrollment record: a JSON object, opaque to this
	// package (the JSON encoding of reader.EnrollmentRecord).
	Record json.RawMessage `json:"record"`
}

// DecodeEnrollment parses an enroll payload received on topic. The error
// wraps ErrMalformed.
func DecodeEnrollment(topic string, payload []byte) (Enrollment, error) {
	site, device, err := parseDeviceTopic(topic, LeafEnroll)
	if err != nil {
		return Enrollment{}, err
	}
	if len(payload) > MaxEnrollmentPayload {
		return Enrollment{}, fmt.Errorf("%w: enroll payload is %d bytes, max %d", ErrMalformed, len(payload), MaxEnrollmentPayload)
	}
	var e Enrollment
	if err := json.Unmarshal(payload, &e); err != nil {
		return Enrollment{}, fmt.Errorf("%w: enroll payload: %w", ErrMalformed, err)
	}
	switch {
	case e.Site != site || e.Device != device:
		return Enrollment{}, fmt.Errorf("%w: enrollment is from %s/%s but topic names %s/%s", ErrMalformed, e.Site, e.Device, site, device)
	case e.Seq == 0:
		return Enrollment{}, fmt.Errorf("%w: enrollment has seq 0", ErrMalformed)
	case len(bytes.TrimSpace(e.Record)) == 0 || bytes.TrimSpace(e.Record)[0] != '{':
		return Enrollment{}, fmt.Errorf("%w: enrollment seq %d has no record object", ErrMalformed, e.Seq)
	}
	return e, nil
}
