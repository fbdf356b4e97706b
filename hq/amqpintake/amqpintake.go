// Package amqpintake feeds HQ the devices' messages from RabbitMQ queues
// instead of MQTT subscriptions: an hq.Intake.
//
// RabbitMQ's MQTT plugin publishes what devices send to the amq.topic
// exchange, with the topic as routing key ("/" and "." swapped:
// tobira/v1/s1/d1/events is tobira.v1.s1.d1.events). The intake declares a
// durable quorum queue (replicated on the cluster's nodes) bound to it with
// tobira.v1.*.*.{leaf} for each leaf HQ handles once (hq.Leaves.Shared:
// events, marks, enrollments, requests, results) and consumes it with
// manual acknowledgements. Every HQ replica consumes the same queue:
// RabbitMQ gives each message to one of them (competing consumers), which
// RabbitMQ's MQTT plugin cannot do (no $share subscriptions). A message is
// acknowledged to RabbitMQ only after HQ has handled it; one whose replica
// dies first goes to another. The device's own ack comes from HQ over MQTT
// after the commit, so nothing is lost either way (the device re-sends
// until acked, HQ drops duplicates).
//
// The leaves every replica must see (hq.Leaves.Every: status) go to a
// queue of the replica's own, exclusive to its connection and deleted with
// it; a status lost while the replica reconnects comes again with the
// device's next one.
//
// HQ then takes nothing over MQTT: its MQTT connection only publishes, so
// it can move between nodes at any time without losing a message.
package amqpintake

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// handler is HQ's handler of one message: see hq.Intake.
type handler = func(ctx context.Context, topic string, payload []byte) bool

// Defaults of Config.
const (
	// DefaultQueue is the queue every HQ replica consumes. (It is named
	// for the events it carried first; it carries every shared leaf.)
	DefaultQueue = "tobira-hq.events"
	// DefaultPrefetch is how many unacknowledged messages RabbitMQ hands
	// one replica at once.
	DefaultPrefetch = 256
	// DefaultWorkers is how many messages a replica handles at once (HQ
	// commits concurrent ones together).
	DefaultWorkers = 16
	// DefaultRetryDelay is the pause before trying the next node after a
	// lost or failed connection.
	DefaultRetryDelay = time.Second
)

// Key returns the binding key of leaf of every device: tobira.v1.*.*.{leaf}.
func Key(leaf proto.Leaf) string {
	return RoutingKey(proto.Subscription(leaf))
}

// exchange is where RabbitMQ's MQTT plugin publishes (mqtt.exchange).
const exchange = "amq.topic"

// Config configures an Intake.
type Config struct {
	// URLs are the AMQP URLs of the cluster's nodes, e.g.
	// "amqps://hq1:5671/"; the intake connects to the first that answers
	// and moves on when its node fails. Required.
	URLs []string
	// TLS, when set, is used for amqps:// URLs; with a client certificate
	// the intake logs in with it (SASL EXTERNAL, deploy/rabbitmq).
	TLS *tls.Config
	// Queue is the queue's name; default DefaultQueue.
	Queue string
	// Prefetch, Workers, RetryDelay: see their defaults.
	Prefetch int
	// Workers is how many messages are handled at once.
	Workers int
	// RetryDelay is the pause between connection attempts.
	RetryDelay time.Duration
	// Logger receives the intake's logs; default slog.Default().
	Logger *slog.Logger
}

// Intake consumes the shared queue and its replica's own; it implements
// hq.Intake.
type Intake struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns an Intake. It does not connect; Run does.
func New(cfg Config) (*Intake, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("amqp intake: no broker URL")
	}
	for _, u := range cfg.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "amqp" && p.Scheme != "amqps") || p.Host == "" {
			return nil, fmt.Errorf("amqp intake: URL %q, want amqp://host:port/ or amqps://host:port/", u)
		}
	}
	if cfg.Prefetch < 0 || cfg.Workers < 0 || cfg.RetryDelay < 0 {
		return nil, fmt.Errorf("amqp intake: negative prefetch %d, workers %d or retry delay %v", cfg.Prefetch, cfg.Workers, cfg.RetryDelay)
	}
	cfg.Queue = cmp.Or(cfg.Queue, DefaultQueue)
	cfg.Prefetch = cmp.Or(cfg.Prefetch, DefaultPrefetch)
	cfg.Workers = cmp.Or(cfg.Workers, DefaultWorkers)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, DefaultRetryDelay)
	return &Intake{cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default())}, nil
}

// Run consumes the queues of leaves until ctx ends, going through the
// nodes in turn whenever a connection fails, and returns nil then. handle
// is HQ's: see hq.Intake.
func (in *Intake) Run(ctx context.Context, leaves hq.Leaves, handle handler) error {
	if len(leaves.Shared) == 0 {
		return errors.New("amqp intake: HQ names no shared leaf")
	}
	for i := 0; ; i++ {
		u := in.cfg.URLs[i%len(in.cfg.URLs)]
		err := in.consume(ctx, u, leaves, handle)
		if ctx.Err() != nil {
			return nil
		}
		in.log.Warn("events intake lost its broker; trying the next node", "url", redact(u), "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(in.cfg.RetryDelay):
		}
	}
}

// consume connects to u, makes sure the queues exist and are bound, and
// hands their messages to handle until the connection fails or ctx ends.
func (in *Intake) consume(ctx context.Context, u string, leaves hq.Leaves, handle handler) error {
	conn, err := in.dial(u)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel on %s: %w", redact(u), err)
	}
	if err := ch.Qos(in.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("set prefetch on %s: %w", redact(u), err)
	}
	shared, err := in.queue(ctx, ch, in.cfg.Queue, leaves.Shared)
	if err != nil {
		return fmt.Errorf("%s: %w", redact(u), err)
	}
	own, err := in.queue(ctx, ch, "", leaves.Every)
	if err != nil {
		return fmt.Errorf("%s: %w", redact(u), err)
	}
	in.log.Info("intake consuming", "url", redact(u), "queue", in.cfg.Queue, "shared", leaves.Shared, "every", leaves.Every)
	var wg sync.WaitGroup
	for range in.cfg.Workers {
		wg.Go(func() { in.work(ctx, shared, handle) })
	}
	if own != nil {
		wg.Go(func() { in.work(ctx, own, handle) })
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	select {
	case <-ctx.Done():
		conn.Close()
		wg.Wait()
		return nil
	case err := <-closed:
		wg.Wait()
		return fmt.Errorf("connection to %s closed: %v", redact(u), err)
	}
}

// queue declares a queue bound to amq.topic with the key of each leaf and
// consumes it: name is the durable quorum queue every replica shares, ""
// a server-named one of this connection alone (exclusive, deleted with
// the connection). No leaves: no queue, a nil channel.
func (in *Intake) queue(ctx context.Context, ch *amqp.Channel, name string, leaves []proto.Leaf) (<-chan amqp.Delivery, error) {
	if len(leaves) == 0 {
		return nil, nil
	}
	durable, exclusive, args := true, false, amqp.Table{"x-queue-type": "quorum"}
	if name == "" {
		durable, exclusive, args = false, true, nil
	}
	q, err := ch.QueueDeclare(name, durable, exclusive, exclusive, false, args)
	if err != nil {
		return nil, fmt.Errorf("declare queue %q: %w", name, err)
	}
	for _, leaf := range leaves {
		if err := ch.QueueBind(q.Name, Key(leaf), exchange, false, nil); err != nil {
			return nil, fmt.Errorf("bind queue %s to %s with %s: %w", q.Name, exchange, Key(leaf), err)
		}
	}
	deliveries, err := ch.ConsumeWithContext(ctx, q.Name, "", false, exclusive, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", q.Name, err)
	}
	return deliveries, nil
}

// work handles deliveries until the channel closes: each is acknowledged
// once handle took it, or given back to the queue.
func (in *Intake) work(ctx context.Context, deliveries <-chan amqp.Delivery, handle handler) {
	for d := range deliveries {
		var err error
		if handle(ctx, Topic(d.RoutingKey), d.Body) {
			err = d.Ack(false)
		} else {
			err = d.Nack(false, true)
		}
		if err != nil {
			// The channel is gone: RabbitMQ delivers the message again.
			in.log.Debug("cannot settle a message; it will be delivered again", "err", err)
		}
	}
}

// dial connects to u, with the client certificate of cfg.TLS when it has
// one (SASL EXTERNAL).
func (in *Intake) dial(u string) (*amqp.Connection, error) {
	c := amqp.Config{TLSClientConfig: in.cfg.TLS, Heartbeat: 10 * time.Second, Locale: "en_US"}
	if in.cfg.TLS != nil && (len(in.cfg.TLS.Certificates) > 0 || in.cfg.TLS.GetClientCertificate != nil) {
		c.SASL = []amqp.Authentication{&amqp.ExternalAuth{}}
	}
	conn, err := amqp.DialConfig(u, c)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(u), err)
	}
	return conn, nil
}

// Topic turns a routing key of amq.topic back into the MQTT topic its
// message was published on: RabbitMQ's MQTT plugin swaps "/" and ".".
func Topic(key string) string { return swapSeparators(key) }

// RoutingKey turns an MQTT topic (or filter) into the routing key (or
// binding key) RabbitMQ's MQTT plugin uses for it: "/" and "." swapped,
// and "+" is "*".
func RoutingKey(topic string) string {
	return strings.ReplaceAll(swapSeparators(topic), "+", "*")
}

// swapSeparators swaps "/" and "." in s.
func swapSeparators(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, s)
}

// redact returns u without its password, for logs.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}
