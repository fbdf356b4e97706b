package proto

import (
	"encoding/json"
	"fmt"
	"time"
)

// maxJSONPayload bounds the small JSON payloads HQ accepts: status,
// result and need.
const maxJSONPayload = 64 << 10

// Status is the payload of a device's retained status message
// (tobira/v1/{site}/{device}/status). On the edge, sync.StatusSource
// fills Version, Snapshot, Doors and ClockTrusted; sync.Edge the rest.
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
	// Results are the device's latest results (at most MaxStatusResults,
	// oldest first), each also published once on its result topic: a
	// result published while no HQ was subscribed reaches HQ with the
	// next status.
	Results []Result `json:"results,omitempty"`
}

// MaxStatusResults bounds Status.Results.
const MaxStatusResults = 16

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
	// Mode is the door's mode in force, e.g. "normal", "locked_down".
	Mode string `json:"mode,omitempty"`
	// ModeSource says where Mode came from: ModeSourceHQ,
	// ModeSourceInput or ModeSourceDefault.
	ModeSource string `json:"mode_source,omitempty"`
}

// Where a door's mode came from (DoorStatus.ModeSource).
const (
	// ModeSourceHQ: set by an HQ command (set_mode, lockdown, release),
	// kept across restarts until HQ sets another.
	ModeSourceHQ = "hq"
	// ModeSourceInput: the door's local lockdown input is active.
	ModeSourceInput = "input"
	// ModeSourceDefault: nothing set the mode; the door starts in normal.
	ModeSourceDefault = "default"
)

// OfflineStatus returns the payload of a device's last will, which it also
// publishes when it stops cleanly: Online false, nothing else known.
func OfflineStatus(site, device string) []byte {
	b, _ := json.Marshal(Status{Site: site, Device: device}) // cannot fail
	return b
}

// DecodeStatus parses a status payload from topic and checks that its
// site and device, when present, match the topic. The error wraps
// ErrMalformed.
func DecodeStatus(topic string, payload []byte) (site, device string, st Status, err error) {
	site, device, err = parseDeviceTopic(topic, LeafStatus)
	if err != nil {
		return "", "", Status{}, err
	}
	if len(payload) > maxJSONPayload {
		return "", "", Status{}, fmt.Errorf("%w: status payload is %d bytes, max %d", ErrMalformed, len(payload), maxJSONPayload)
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return "", "", Status{}, fmt.Errorf("%w: status payload: %w", ErrMalformed, err)
	}
	if st.Site != "" && st.Site != site || st.Device != "" && st.Device != device {
		return "", "", Status{}, fmt.Errorf("%w: status of %s/%s on topic %q", ErrMalformed, st.Site, st.Device, topic)
	}
	if len(st.Results) > MaxStatusResults {
		return "", "", Status{}, fmt.Errorf("%w: status on topic %q holds %d results, max %d", ErrMalformed, topic, len(st.Results), MaxStatusResults)
	}
	for _, r := range st.Results {
		if err := r.check(site, device); err != nil {
			return "", "", Status{}, fmt.Errorf("%w in the status on topic %q", err, topic)
		}
	}
	st.Site, st.Device = site, device
	return site, device, st, nil
}
