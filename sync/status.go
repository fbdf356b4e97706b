package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// DefaultStatusInterval is how often the edge publishes its status when
// nothing else prompts it.
const DefaultStatusInterval = time.Minute

// maxStatusPayload bounds a status payload HQ accepts.
const maxStatusPayload = 64 << 10

// Status is the payload of a device's retained status message
// (tobira/v1/{site}/{device}/status). The StatusSource fills Version,
// Snapshot, Doors and ClockTrusted; the Edge fills the rest.
type Status struct {
	// Online is true in every status the device publishes and false in its
	// last will, which the broker publishes when the device vanishes, and
	// in the message the device sends when it stops cleanly.
	Online bool `json:"online"`
	// Site is the device's site.
	Site string `json:"site,omitempty"`
	// Device is the device's name.
	Device string `json:"device,omitempty"`
	// Time is when the device made this status, by its clock, in UTC.
	Time time.Time `json:"time,omitzero"`
	// Version is the device's software version.
	Version string `json:"version,omitempty"`
	// Snapshot is the policy snapshot in force.
	Snapshot SnapshotStatus `json:"snapshot,omitzero"`
	// Doors are the states of the device's doors.
	Doors []DoorStatus `json:"doors,omitempty"`
	// OutboxDepth is how many events wait for HQ's acknowledgement.
	OutboxDepth int `json:"outbox_depth"`
	// AckedSeq is the highest sequence number HQ has acknowledged.
	AckedSeq uint64 `json:"acked_seq"`
	// ClockTrusted reports whether the device trusts its clock (a Pi has no
	// RTC: false until time is synchronised).
	ClockTrusted bool `json:"clock_trusted"`
	// LastSnapshotError is the last refused snapshot's reason, empty when
	// the last one applied.
	LastSnapshotError string `json:"last_snapshot_error,omitempty"`
}

// SnapshotStatus names a policy snapshot.
type SnapshotStatus struct {
	// Version is the snapshot's version (0: none).
	Version uint64 `json:"version"`
	// Hash is the hex SHA-256 content hash of the snapshot.
	Hash string `json:"hash,omitempty"`
}

// DoorStatus is one door's state in a Status.
type DoorStatus struct {
	// Name is the door's configured name.
	Name string `json:"name"`
	// State is the door's state, e.g. "locked", "unlocked", "held-open".
	State string `json:"state,omitempty"`
	// Mode is the door's mode, e.g. "normal", "lockdown", "free".
	Mode string `json:"mode,omitempty"`
}

// StatusSource supplies the device facts of a Status that the sync package
// does not own: software version, snapshot, doors, clock trust. Status is
// called from the Edge's status loop; it must not block for long.
type StatusSource interface {
	Status(ctx context.Context) (Status, error)
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func(ctx context.Context) (Status, error)

// Status implements StatusSource.
func (f StatusFunc) Status(ctx context.Context) (Status, error) { return f(ctx) }

// StatusTopic returns the topic of a device's retained status.
func StatusTopic(site, device string) string {
	return deviceTopic(site, device, "status")
}

// StatusSubscription is the filter HQ subscribes to for every device's
// status.
const StatusSubscription = TopicPrefix + "/+/+/status"

// offlineStatus is the last-will payload of a device.
func offlineStatus(site, device string) []byte {
	b, _ := json.Marshal(Status{Site: site, Device: device}) // cannot fail
	return b
}

// DecodeStatus parses a status payload from topic and checks that its
// site and device, when present, match the topic. The error wraps
// ErrMalformed.
func DecodeStatus(topic string, payload []byte) (site, device string, st Status, err error) {
	site, device, err = parseDeviceTopic(topic, "status")
	if err != nil {
		return "", "", Status{}, err
	}
	if len(payload) > maxStatusPayload {
		return "", "", Status{}, fmt.Errorf("%w: status payload is %d bytes, max %d", ErrMalformed, len(payload), maxStatusPayload)
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return "", "", Status{}, fmt.Errorf("%w: status payload: %w", ErrMalformed, err)
	}
	if st.Site != "" && st.Site != site || st.Device != "" && st.Device != device {
		return "", "", Status{}, fmt.Errorf("%w: status of %s/%s on topic %q", ErrMalformed, st.Site, st.Device, topic)
	}
	st.Site, st.Device = site, device
	return site, device, st, nil
}

// parseDeviceTopic returns the site and device of
// tobira/v1/{site}/{device}/{leaf}. The error wraps ErrMalformed.
func parseDeviceTopic(topic, leaf string) (site, device string, err error) {
	parts := strings.Split(topic, "/")
	if len(parts) != 5 || parts[0]+"/"+parts[1] != TopicPrefix || parts[4] != leaf {
		return "", "", fmt.Errorf("%w: topic %q is not %s/{site}/{device}/%s", ErrMalformed, topic, TopicPrefix, leaf)
	}
	if err := CheckName(parts[2]); err != nil {
		return "", "", fmt.Errorf("%w: topic %q: site: %w", ErrMalformed, topic, err)
	}
	if err := CheckName(parts[3]); err != nil {
		return "", "", fmt.Errorf("%w: topic %q: device: %w", ErrMalformed, topic, err)
	}
	return parts[2], parts[3], nil
}

// retainedPublisher publishes one retained QoS 1 message.
type retainedPublisher interface {
	publishRetained(ctx context.Context, topic string, payload []byte) error
}

// statusLoop publishes the device's status when connected, when nudged
// and every interval.
type statusLoop struct {
	src      StatusSource
	eng      *engine
	clk      clock.Clock
	log      *slog.Logger
	interval time.Duration
	topic    string
	kick     chan struct{}
	snapErr  func() string // last snapshot refusal, may be nil
}

// nudge asks for a status message soon; it never blocks.
func (s *statusLoop) nudge() { wake(s.kick) }

// make assembles the current status.
func (s *statusLoop) make(ctx context.Context) Status {
	var st Status
	if s.src != nil {
		var err error
		if st, err = s.src.Status(ctx); err != nil {
			s.log.Warn("status source failed; publishing link facts only", "err", err)
			st = Status{}
		}
	}
	st.Online = true
	st.Site, st.Device = s.eng.site, s.eng.device
	st.Time = s.clk.Now().UTC()
	st.OutboxDepth, _ = s.eng.ob.Depth()
	st.AckedSeq = s.eng.acked.Load()
	if s.snapErr != nil {
		st.LastSnapshotError = s.snapErr()
	}
	return st
}

// run publishes until ctx ends.
func (s *statusLoop) run(ctx context.Context, pub retainedPublisher) {
	for {
		if !waitRound(ctx, s.clk, s.kick, s.interval) {
			return
		}
		if !s.eng.up.Load() {
			continue
		}
		b, err := json.Marshal(s.make(ctx))
		if err != nil {
			s.log.Error("cannot encode status", "err", err)
			continue
		}
		if err := pub.publishRetained(ctx, s.topic, b); err != nil && ctx.Err() == nil {
			s.log.Warn("cannot publish status", "topic", s.topic, "err", err)
		}
	}
}
