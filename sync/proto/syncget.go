package proto

import (
	"encoding/hex"
	"fmt"
	"slices"
)

// Fetch on connect: a device asks HQ for what it must know whenever it
// connects, instead of relying on the broker's memory (a retained message
// is kept per node on a cluster and lost by a broker restarted without
// persistence; a clean session loses what was sent while away):
//
//	tobira/v1/{site}/{device}/sync-get  edge -> HQ, QoS 1: SyncGet, what the device has
//	tobira/v1/{site}/{device}/sync      HQ -> edge, QoS 1: SyncAnswer, what is in force for it
//
// The device sends a SyncGet after every (re)connection and again, less
// and less often, until an answer with its ID comes. HQ answers from its
// store: the signed snapshot manifest meant for the device when it is
// newer than what the device has, the release offer in force for it, and
// the commands in force (door modes HQ set) that the device has not
// applied, re-signed with a fresh validity and their original IDs, so that
// the device's replay check makes a re-delivery harmless. Every piece of
// an answer is signed by HQ on its own; the answer itself is not.

// Sections of a SyncGet: what the device asks about.
const (
	// WantSnapshot asks for the snapshot manifest in force.
	WantSnapshot = "snapshot"
	// WantCommands asks for the commands in force.
	WantCommands = "commands"
	// WantRelease asks for the release offer in force.
	WantRelease = "release"
)

// Sync limits.
const (
	// MaxSyncApplied bounds SyncGet.Applied (one command per door, plus
	// one for every door).
	MaxSyncApplied = 256
	// MaxSyncGroups bounds SyncGet.Groups.
	MaxSyncGroups = 32
	// MaxSyncCommands bounds SyncAnswer.Commands.
	MaxSyncCommands = 256
	// MaxSyncGetPayload bounds a sync-get payload in bytes.
	MaxSyncGetPayload = 16 << 10
	// maxSyncAnswerPayload bounds a sync answer payload in bytes.
	maxSyncAnswerPayload = 2 << 20
)

// SyncGet is the payload of a sync-get message: the device asks for what
// is in force for it and says what it has. Field names are part of the
// protocol.
type SyncGet struct {
	// ID names the request (32 lower-case hex digits); HQ's answer
	// carries it.
	ID string `json:"id"`
	// Want lists the sections asked about: WantSnapshot, WantCommands,
	// WantRelease, each at most once.
	Want []string `json:"want"`
	// Snapshot is the version of the snapshot in force on the device (0:
	// none).
	Snapshot uint64 `json:"snapshot,omitempty"`
	// ContentHash is the hex content hash of that snapshot (informative).
	ContentHash string `json:"content_hash,omitempty"`
	// Applied are the IDs of the commands whose door modes are in force
	// on the device.
	Applied []string `json:"applied,omitempty"`
	// Release is the ID of the last release offer the device handled
	// ("" none).
	Release string `json:"release,omitempty"`
	// Groups are the device's release groups.
	Groups []string `json:"groups,omitempty"`
	// SnapshotGroups are the device's snapshot groups besides SiteGroup
	// (group transfers: Manifest.Group).
	SnapshotGroups []string `json:"snapshot_groups,omitempty"`
}

// Wants reports whether g asks about section.
func (g SyncGet) Wants(section string) bool { return slices.Contains(g.Want, section) }

// Validate reports whether g is well formed. The error wraps ErrMalformed.
func (g SyncGet) Validate() error {
	if !isHexID(g.ID) {
		return fmt.Errorf("%w: sync-get id %q is not 32 lower-case hex digits", ErrMalformed, g.ID)
	}
	if len(g.Want) == 0 || len(g.Want) > 3 {
		return fmt.Errorf("%w: sync-get %s wants %d sections, want 1..3", ErrMalformed, g.ID, len(g.Want))
	}
	for i, w := range g.Want {
		if (w != WantSnapshot && w != WantCommands && w != WantRelease) || slices.Contains(g.Want[:i], w) {
			return fmt.Errorf("%w: sync-get %s: section %q unknown or repeated", ErrMalformed, g.ID, w)
		}
	}
	if g.ContentHash != "" {
		if b, err := hex.DecodeString(g.ContentHash); err != nil || len(b) != 32 {
			return fmt.Errorf("%w: sync-get %s: content hash %q is not 64 hex digits", ErrMalformed, g.ID, g.ContentHash)
		}
	}
	if len(g.Applied) > MaxSyncApplied || len(g.Groups) > MaxSyncGroups || len(g.SnapshotGroups) > MaxSyncGroups {
		return fmt.Errorf("%w: sync-get %s: %d applied commands, %d groups, %d snapshot groups; max %d, %d, %d", ErrMalformed, g.ID,
			len(g.Applied), len(g.Groups), len(g.SnapshotGroups), MaxSyncApplied, MaxSyncGroups, MaxSyncGroups)
	}
	for _, id := range g.Applied {
		if !isHexID(id) {
			return fmt.Errorf("%w: sync-get %s: applied command id %q is not 32 lower-case hex digits", ErrMalformed, g.ID, id)
		}
	}
	if g.Release != "" && !isHexID(g.Release) {
		return fmt.Errorf("%w: sync-get %s: release offer id %q is not 32 lower-case hex digits", ErrMalformed, g.ID, g.Release)
	}
	for _, gr := range slices.Concat(g.Groups, g.SnapshotGroups) {
		if err := CheckName(gr); err != nil {
			return fmt.Errorf("%w: sync-get %s: group: %w", ErrMalformed, g.ID, err)
		}
	}
	return nil
}

// isHexID reports whether s is 32 lower-case hex digits (a command,
// transfer, offer or request ID).
func isHexID(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 16 && hex.EncodeToString(b) == s
}

// DecodeSyncGet parses a sync-get payload received on topic and returns
// its site and device. The error wraps ErrMalformed.
func DecodeSyncGet(topic string, payload []byte) (site, device string, g SyncGet, err error) {
	if site, device, err = parseDeviceTopic(topic, LeafSyncGet); err != nil {
		return "", "", SyncGet{}, err
	}
	g, err = decodeJSON[SyncGet]("sync-get", payload, MaxSyncGetPayload)
	return site, device, g, err
}

// SyncAnswer is the payload of a sync message: HQ's answer to the
// SyncGet with the same ID. Each envelope is signed by HQ and checked by
// the device like one received on its own topic. Field names are part of
// the protocol.
type SyncAnswer struct {
	// ID is the SyncGet's.
	ID string `json:"id"`
	// Snapshot is the signed manifest (SignManifest) of the snapshot
	// meant for the device, when newer than the device's; empty: none.
	Snapshot []byte `json:"snapshot,omitempty"`
	// Release is the signed release offer (SignReleaseOffer) in force for
	// the device; empty: none.
	Release []byte `json:"release,omitempty"`
	// Commands are signed commands (SignCommand) in force that the device
	// has not applied, in the order HQ issued them.
	Commands [][]byte `json:"commands,omitempty"`
}

// Validate reports whether a is well formed. The error wraps
// ErrMalformed.
func (a SyncAnswer) Validate() error {
	if !isHexID(a.ID) {
		return fmt.Errorf("%w: sync answer id %q is not 32 lower-case hex digits", ErrMalformed, a.ID)
	}
	if len(a.Commands) > MaxSyncCommands {
		return fmt.Errorf("%w: sync answer %s has %d commands, max %d", ErrMalformed, a.ID, len(a.Commands), MaxSyncCommands)
	}
	for i, c := range a.Commands {
		if len(c) == 0 {
			return fmt.Errorf("%w: sync answer %s: command %d is empty", ErrMalformed, a.ID, i)
		}
	}
	return nil
}

// DecodeSyncAnswer parses a sync answer payload. The error wraps
// ErrMalformed.
func DecodeSyncAnswer(payload []byte) (SyncAnswer, error) {
	return decodeJSON[SyncAnswer]("sync answer", payload, maxSyncAnswerPayload)
}
