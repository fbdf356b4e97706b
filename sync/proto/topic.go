package proto

import (
	"fmt"
	"slices"
	"strings"
)

// TopicPrefix is the first two levels of every tobira topic.
const TopicPrefix = "tobira/v1"

// MaxNameLen bounds a site, device or group name.
const MaxNameLen = 64

// CheckName reports whether s may be used as a site, device or group name:
// 1 to MaxNameLen characters from A-Z a-z 0-9 '.' '_' '-'. Names are topic
// levels, so MQTT's '/', '+' and '#' are excluded. It is the one rule for
// these names: the edge's configuration, HQ's registry and every decoder of
// this package apply it.
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

// Leaf is the last level of a per-device topic
// tobira/v1/{site}/{device}/{leaf}: what the topic carries.
type Leaf string

// The per-device topics of the contract, by direction.
const (
	// LeafEvents carries Batch, edge -> HQ.
	LeafEvents Leaf = "events"
	// LeafAck carries Ack for events, HQ -> edge.
	LeafAck Leaf = "ack"
	// LeafStatus carries the retained Status (and the last will), edge -> HQ.
	LeafStatus Leaf = "status"
	// LeafCommand carries a signed Command, HQ -> edge.
	LeafCommand Leaf = "cmd"
	// LeafResult carries Result, edge -> HQ.
	LeafResult Leaf = "result"
	// LeafSnapshot carries the retained signed Manifest, HQ -> edge.
	LeafSnapshot Leaf = "snapshot"
	// LeafChunk carries snapshot chunks (EncodeChunk), HQ -> edge.
	LeafChunk Leaf = "chunk"
	// LeafNeed carries Need, edge -> HQ.
	LeafNeed Leaf = "need"
	// LeafEnroll carries Enrollment, edge -> HQ.
	LeafEnroll Leaf = "enroll"
	// LeafEnrollAck carries Ack for one enrollment, HQ -> edge.
	LeafEnrollAck Leaf = "enroll-ack"
	// LeafMarks carries MarkBatch, edge -> HQ.
	LeafMarks Leaf = "marks"
	// LeafMarksAck carries MarksAck, HQ -> edge.
	LeafMarksAck Leaf = "marks-ack"
	// LeafMarksGet carries MarksGet, edge -> HQ.
	LeafMarksGet Leaf = "marks-get"
	// LeafPeerMarks carries signed PeerMarks, HQ -> edge.
	LeafPeerMarks Leaf = "peer-marks"
	// LeafTicketCheck carries TicketCheck, edge -> HQ.
	LeafTicketCheck Leaf = "ticket-check"
	// LeafTicketVerdict carries a signed TicketVerdict, HQ -> edge.
	LeafTicketVerdict Leaf = "ticket-verdict"
	// LeafRelease carries the retained signed ReleaseOffer, HQ -> edge.
	LeafRelease Leaf = "release"
	// LeafReleaseGet carries ReleaseGet, edge -> HQ.
	LeafReleaseGet Leaf = "release-get"
	// LeafReleaseChunk carries release chunks (EncodeReleaseChunk), HQ -> edge.
	LeafReleaseChunk Leaf = "release-chunk"
	// LeafReleaseReport carries the retained ReleaseReport, edge -> HQ.
	LeafReleaseReport Leaf = "release-report"
	// LeafSyncGet carries SyncGet, edge -> HQ.
	LeafSyncGet Leaf = "sync-get"
	// LeafSync carries SyncAnswer, HQ -> edge.
	LeafSync Leaf = "sync"
)

// leaves lists every Leaf, for ParseTopic.
var leaves = []Leaf{LeafEvents, LeafAck, LeafStatus, LeafCommand, LeafResult, LeafSnapshot, LeafChunk, LeafNeed,
	LeafEnroll, LeafEnrollAck, LeafMarks, LeafMarksAck, LeafMarksGet, LeafPeerMarks, LeafTicketCheck, LeafTicketVerdict, LeafRelease, LeafReleaseGet, LeafReleaseChunk, LeafReleaseReport,
	LeafSyncGet, LeafSync}

// Leaves returns every Leaf of the contract, in the order of their
// declaration. Tests that must cover every topic (the broker ACL's) range
// over it, so a new Leaf is covered or fails them.
func Leaves() []Leaf { return slices.Clone(leaves) }

// Topic returns tobira/v1/{site}/{device}/{leaf}: every per-device topic of
// the contract is built here.
func Topic(site, device string, leaf Leaf) string {
	return TopicPrefix + "/" + site + "/" + device + "/" + string(leaf)
}

// Subscription returns the filter tobira/v1/+/+/{leaf}: leaf of every
// device of every site.
func Subscription(leaf Leaf) string {
	return TopicPrefix + "/+/+/" + string(leaf)
}

// SiteSubscription returns the filter tobira/v1/{site}/+/{leaf}: leaf of
// every device of site.
func SiteSubscription(site string, leaf Leaf) string {
	return TopicPrefix + "/" + site + "/+/" + string(leaf)
}

// ParseTopic returns the site, device and leaf of a per-device topic. The
// names must pass CheckName and the leaf must be one of the contract's. The
// error wraps ErrMalformed.
func ParseTopic(topic string) (site, device string, leaf Leaf, err error) {
	parts := strings.Split(topic, "/")
	if len(parts) != 5 || parts[0]+"/"+parts[1] != TopicPrefix {
		return "", "", "", fmt.Errorf("%w: topic %q is not %s/{site}/{device}/{leaf}", ErrMalformed, topic, TopicPrefix)
	}
	if err := CheckName(parts[2]); err != nil {
		return "", "", "", fmt.Errorf("%w: topic %q: site: %w", ErrMalformed, topic, err)
	}
	if err := CheckName(parts[3]); err != nil {
		return "", "", "", fmt.Errorf("%w: topic %q: device: %w", ErrMalformed, topic, err)
	}
	for _, l := range leaves {
		if parts[4] == string(l) {
			return parts[2], parts[3], l, nil
		}
	}
	return "", "", "", fmt.Errorf("%w: topic %q: unknown leaf %q", ErrMalformed, topic, parts[4])
}

// parseDeviceTopic is ParseTopic for a topic that must end in want.
func parseDeviceTopic(topic string, want Leaf) (site, device string, err error) {
	site, device, leaf, err := ParseTopic(topic)
	if err == nil && leaf != want {
		err = fmt.Errorf("%w: topic %q is not %s/{site}/{device}/%s", ErrMalformed, topic, TopicPrefix, want)
	}
	if err != nil {
		return "", "", err
	}
	return site, device, nil
}

// ParseEventsTopic returns the site and device of an events topic. The error
// wraps ErrMalformed.
func ParseEventsTopic(topic string) (site, device string, err error) {
	return parseDeviceTopic(topic, LeafEvents)
}

// Subscriptions HQ makes: one leaf of every device (Subscription).
const (
	// EventsSubscription is every device's events topic.
	EventsSubscription = TopicPrefix + "/+/+/" + string(LeafEvents)
	// StatusSubscription is every device's status topic.
	StatusSubscription = TopicPrefix + "/+/+/" + string(LeafStatus)
	// ResultSubscription is every device's result topic.
	ResultSubscription = TopicPrefix + "/+/+/" + string(LeafResult)
	// NeedSubscription is every device's need topic (chunk requests).
	NeedSubscription = TopicPrefix + "/+/+/" + string(LeafNeed)
	// EnrollSubscription is every device's enroll topic.
	EnrollSubscription = TopicPrefix + "/+/+/" + string(LeafEnroll)
	// MarksSubscription is every device's marks topic.
	MarksSubscription = TopicPrefix + "/+/+/" + string(LeafMarks)
	// MarksGetSubscription is every device's marks-get topic.
	MarksGetSubscription = TopicPrefix + "/+/+/" + string(LeafMarksGet)
	// ReleaseGetSubscription is every device's release-get topic.
	ReleaseGetSubscription = TopicPrefix + "/+/+/" + string(LeafReleaseGet)
	// ReleaseReportSubscription is every device's release-report topic.
	ReleaseReportSubscription = TopicPrefix + "/+/+/" + string(LeafReleaseReport)
	// SyncGetSubscription is every device's sync-get topic.
	SyncGetSubscription = TopicPrefix + "/+/+/" + string(LeafSyncGet)
)

// EventsTopic returns the topic a device publishes its events to.
func EventsTopic(site, device string) string { return Topic(site, device, LeafEvents) }

// AckTopic returns the topic HQ publishes a device's acknowledgements to.
func AckTopic(site, device string) string { return Topic(site, device, LeafAck) }

// StatusTopic returns the topic of a device's retained status.
func StatusTopic(site, device string) string { return Topic(site, device, LeafStatus) }

// CommandTopic returns the topic HQ sends a device's commands to.
func CommandTopic(site, device string) string { return Topic(site, device, LeafCommand) }

// ResultTopic returns the topic a device reports results on.
func ResultTopic(site, device string) string { return Topic(site, device, LeafResult) }

// SnapshotTopic returns the topic of a device's (retained) snapshot
// manifest.
func SnapshotTopic(site, device string) string { return Topic(site, device, LeafSnapshot) }

// ChunkTopic returns the topic of a device's snapshot chunks.
func ChunkTopic(site, device string) string { return Topic(site, device, LeafChunk) }

// NeedTopic returns the topic on which a device asks for missing chunks.
func NeedTopic(site, device string) string { return Topic(site, device, LeafNeed) }

// EnrollTopic returns the topic a device publishes enrollments to.
func EnrollTopic(site, device string) string { return Topic(site, device, LeafEnroll) }

// EnrollAckTopic returns the topic HQ acknowledges a device's enrollments
// on.
func EnrollAckTopic(site, device string) string { return Topic(site, device, LeafEnrollAck) }

// MarksTopic returns the topic a device publishes its ticket marks to.
func MarksTopic(site, device string) string { return Topic(site, device, LeafMarks) }

// MarksAckTopic returns the topic HQ acknowledges a device's marks on.
func MarksAckTopic(site, device string) string { return Topic(site, device, LeafMarksAck) }

// MarksGetTopic returns the topic on which a device asks for its site's
// marks after its cursor.
func MarksGetTopic(site, device string) string { return Topic(site, device, LeafMarksGet) }

// TicketCheckTopic returns the topic on which a device asks HQ about a
// ticket's entry.
func TicketCheckTopic(site, device string) string { return Topic(site, device, LeafTicketCheck) }

// TicketVerdictTopic returns the topic of HQ's answers to a device's
// ticket checks.
func TicketVerdictTopic(site, device string) string { return Topic(site, device, LeafTicketVerdict) }

// PeerMarksTopic returns the topic HQ relays other gates' marks to a
// device on.
func PeerMarksTopic(site, device string) string { return Topic(site, device, LeafPeerMarks) }

// ReleaseTopic returns the topic of a device's (retained) release offer.
func ReleaseTopic(site, device string) string { return Topic(site, device, LeafRelease) }

// ReleaseGetTopic returns the topic on which a device asks for a piece of
// a release binary.
func ReleaseGetTopic(site, device string) string { return Topic(site, device, LeafReleaseGet) }

// ReleaseChunkTopic returns the topic on which HQ answers a device's
// requests with pieces of a release binary.
func ReleaseChunkTopic(site, device string) string { return Topic(site, device, LeafReleaseChunk) }

// ReleaseReportTopic returns the topic of a device's (retained) release
// report.
func ReleaseReportTopic(site, device string) string {
	return Topic(site, device, LeafReleaseReport)
}

// SyncGetTopic returns the topic on which a device asks HQ for what is in
// force for it.
func SyncGetTopic(site, device string) string { return Topic(site, device, LeafSyncGet) }

// SyncTopic returns the topic of HQ's answers to a device's sync-get.
func SyncTopic(site, device string) string { return Topic(site, device, LeafSync) }

// groupsLevel is the device level of group topics.
const groupsLevel = "groups"

// SiteGroup is the group every device of a site belongs to: a snapshot
// published to it reaches the whole site. Registries must not give a door
// group this name.
const SiteGroup = "_site"

// SnapshotGroupTopic returns the topic of a group's (retained) snapshot
// manifest: tobira/v1/{site}/groups/{group}/snapshot. Every device of the
// group subscribes to it.
func SnapshotGroupTopic(site, group string) string {
	return TopicPrefix + "/" + site + "/" + groupsLevel + "/" + group + "/" + string(LeafSnapshot)
}

// ChunkGroupTopic returns the topic of a group's snapshot chunks:
// tobira/v1/{site}/groups/{group}/chunk.
func ChunkGroupTopic(site, group string) string {
	return TopicPrefix + "/" + site + "/" + groupsLevel + "/" + group + "/" + string(LeafChunk)
}

// ReleaseGroupTopic returns the topic of a group's (retained) release
// offer: tobira/v1/{site}/groups/{group}/release. Every device of the
// group subscribes to it.
func ReleaseGroupTopic(site, group string) string {
	return TopicPrefix + "/" + site + "/" + groupsLevel + "/" + group + "/" + string(LeafRelease)
}
