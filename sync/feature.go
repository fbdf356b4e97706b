package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/sync/proto"
)

// feature is one part of the device's side of the contract: events and
// acks (engine), status (statusLoop), enrollments (enrollLoop), commands
// (commandIntake), snapshots (snapshotIntake), ticket marks (markLoop).
// NewEdge builds the features its configuration asks for; Edge.Run
// subscribes to the routes of all of them, tells each about every
// (re)connection and runs each one's loop.
type feature interface {
	// routes returns the topics the feature receives, with their handlers.
	routes() []route
	// connected is called after every (re)connection and subscription.
	connected(ctx context.Context)
	// run runs the feature's loop, if it has one, until ctx ends.
	run(ctx context.Context)
	// notify tells the feature that something was recorded on the device
	// (Edge.Notify): an event, an enrollment, a ticket mark. It never
	// blocks.
	notify()
}

// route is a topic the Edge subscribes to on every connection, and its
// handler. Handlers run in their own goroutines.
type route struct {
	topic  string
	handle func(ctx context.Context, topic string, payload []byte)
}

// publisher sends one QoS 1 message and returns when the broker took it or
// it failed. The features need nothing else from MQTT.
type publisher interface {
	publish(ctx context.Context, topic string, payload []byte) error
}

// retainedPublisher publishes one retained QoS 1 message.
type retainedPublisher interface {
	publishRetained(ctx context.Context, topic string, payload []byte) error
}

// clientPublisher publishes through the Edge's paho client at QoS 1 and
// waits for the broker's PUBACK. Run sets the client before it connects,
// and only then do the features publish.
type clientPublisher struct {
	c   mqtt.Client
	clk clock.Clock
}

// publish implements publisher.
func (p *clientPublisher) publish(ctx context.Context, topic string, payload []byte) error {
	return mqttconn.WaitToken(ctx, p.clk, p.c.Publish(topic, 1, false, payload), mqttconn.DefaultTokenTimeout)
}

// publishRetained implements retainedPublisher.
func (p *clientPublisher) publishRetained(ctx context.Context, topic string, payload []byte) error {
	return mqttconn.WaitToken(ctx, p.clk, p.c.Publish(topic, 1, true, payload), mqttconn.DefaultTokenTimeout)
}

// publishJSON encodes v as JSON and publishes it to topic.
func publishJSON(ctx context.Context, pub publisher, topic string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message for %s: %w", topic, err)
	}
	return pub.publish(ctx, topic, b)
}

// resultSender reports Results on the device's result topic (commands and
// snapshots share it), and keeps the latest for the status.
type resultSender struct {
	pub   publisher
	topic string
	log   *slog.Logger

	mu     sync.Mutex
	recent []proto.Result // the latest, oldest first, at most proto.MaxStatusResults
}

// send publishes r once, logging a failure, and keeps it for the status
// (Status.Results): a result no HQ was subscribed for, or that failed to
// go out, reaches HQ with the next status.
func (r *resultSender) send(ctx context.Context, res proto.Result) {
	if res.ID != "" {
		r.mu.Lock()
		r.recent = append(r.recent, res)
		if n := len(r.recent) - proto.MaxStatusResults; n > 0 {
			r.recent = slices.Delete(r.recent, 0, n)
		}
		r.mu.Unlock()
	}
	if err := publishJSON(ctx, r.pub, r.topic, res); err != nil {
		r.log.Warn("cannot publish result; it goes with the next status", "id", res.ID, "status", res.Status, "err", err)
	}
}

// latest returns the latest results, oldest first.
func (r *resultSender) latest() []proto.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recent)
}
