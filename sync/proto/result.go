package proto

import (
	"encoding/json"
	"fmt"
	"time"
)

// Result statuses.
const (
	// ResultDone means the command was carried out, or the snapshot
	// applied.
	ResultDone = "done"
	// ResultRefused means the message was not accepted: forged, expired,
	// replayed, addressed elsewhere, malformed, out of order. Nothing was
	// changed.
	ResultRefused = "refused"
	// ResultFailed means the message was accepted but carrying it out
	// failed (the handler or the snapshot store returned an error).
	ResultFailed = "failed"
)

// Result is what a device reports on its result topic for every command,
// snapshot and release offer it receives. Field names are part of the protocol.
type Result struct {
	// ID is the command's ID, the snapshot's transfer ID or the release
	// offer's ID; empty when the message was too broken to tell.
	ID string `json:"id"`
	// Kind is KindCommand, KindSnapshot or KindRelease.
	Kind string `json:"kind"`
	// Site is the reporting device's site.
	Site string `json:"site"`
	// Device is the reporting device.
	Device string `json:"device"`
	// Status is ResultDone, ResultRefused or ResultFailed.
	Status string `json:"status"`
	// Error says why, for refused and failed.
	Error string `json:"error,omitempty"`
	// Version is the snapshot version in force after a snapshot result.
	Version uint64 `json:"version,omitempty"`
	// Time is when the device decided, by its clock.
	Time time.Time `json:"time"`
}

// DecodeResult parses a result payload from topic. The error wraps
// ErrMalformed.
func DecodeResult(topic string, payload []byte) (Result, error) {
	site, device, err := parseDeviceTopic(topic, LeafResult)
	if err != nil {
		return Result{}, err
	}
	if len(payload) > maxJSONPayload {
		return Result{}, fmt.Errorf("%w: result payload is %d bytes", ErrMalformed, len(payload))
	}
	var r Result
	if err := json.Unmarshal(payload, &r); err != nil {
		return Result{}, fmt.Errorf("%w: result payload: %w", ErrMalformed, err)
	}
	if err := r.check(site, device); err != nil {
		return Result{}, fmt.Errorf("%w: on topic %q", err, topic)
	}
	return r, nil
}

// check reports whether r is a result of site/device with a known status;
// the error wraps ErrMalformed.
func (r Result) check(site, device string) error {
	if r.Site != site || r.Device != device {
		return fmt.Errorf("%w: result of %s/%s", ErrMalformed, r.Site, r.Device)
	}
	switch r.Status {
	case ResultDone, ResultRefused, ResultFailed:
	default:
		return fmt.Errorf("%w: result status %q", ErrMalformed, r.Status)
	}
	return nil
}
