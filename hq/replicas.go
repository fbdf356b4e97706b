package hq

import (
	"fmt"
	"slices"

	"github.com/tobira-ac/tobira/sync/proto"
)

// Leaves says which device -> HQ leaves a Service takes (those its routes
// handle) and how the replicas of one HQ share them. Transports derive
// what they subscribe to or bind from it, so a leaf added to the routes
// is taken by every transport.
type Leaves struct {
	// Shared leaves go to one replica each: requests that must be handled
	// once (events, marks, enrollments, chunk and mark requests, ticket
	// checks, results).
	Shared []proto.Leaf
	// Every leaves go to every replica: status feeds each replica's own
	// view of the devices (which are online, which doors each reported),
	// against which it relays and judges ticket marks.
	Every []proto.Leaf
}

// everyReplica are the leaves each replica must see itself.
var everyReplica = []proto.Leaf{proto.LeafStatus}

// Leaves returns the leaves h takes, each list sorted.
func (h *Service) Leaves() Leaves {
	var l Leaves
	for leaf := range h.routes() {
		if slices.Contains(everyReplica, leaf) {
			l.Every = append(l.Every, leaf)
		} else {
			l.Shared = append(l.Shared, leaf)
		}
	}
	slices.Sort(l.Shared)
	slices.Sort(l.Every)
	return l
}

// sharePrefix starts an MQTT shared subscription: $share/{group}/{filter}.
const sharePrefix = "$share/"

// checkGroup checks a shared-subscription group name: a topic level, so
// the rule of site and device names.
func checkGroup(group string) error {
	if group == "" {
		return nil
	}
	if err := proto.CheckName(group); err != nil {
		return fmt.Errorf("%w: shared group: %w", ErrConfig, err)
	}
	return nil
}

// subscriptions returns the MQTT filters (QoS 1) for l: each Shared leaf
// of every device as $share/{group}/tobira/v1/+/+/{leaf} when group is
// set, so that the broker gives each message to one replica of the
// group, else plainly; each Every leaf plainly.
func subscriptions(l Leaves, group string) map[string]byte {
	filters := make(map[string]byte, len(l.Shared)+len(l.Every))
	for _, leaf := range l.Shared {
		f := proto.Subscription(leaf)
		if group != "" {
			f = sharePrefix + group + "/" + f
		}
		filters[f] = 1
	}
	for _, leaf := range l.Every {
		filters[proto.Subscription(leaf)] = 1
	}
	return filters
}
