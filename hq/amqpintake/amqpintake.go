// Package amqpintake feeds HQ the devices' events from a RabbitMQ quorum
// queue instead of an MQTT subscription: an hq.Intake.
//
// RabbitMQ's MQTT plugin publishes what devices send to the amq.topic
// exchange, with the topic as routing key ("/" and "." swapped:
// tobira/v1/s1/d1/events is tobira.v1.s1.d1.events). The intake declares a
// durable quorum queue (replicated on the cluster's nodes) bound to it with
// tobira.v1.*.*.events and consumes it with manual acknowledgements. Every
// HQ replica consumes the same queue: RabbitMQ gives each message to one of
// them (competing consumers), which RabbitMQ's MQTT plugin cannot do (no
// $share subscriptions). A message is acknowledged to RabbitMQ only after
// HQ has handled it; one whose replica dies first goes to another. The
// device's own ack comes from HQ over MQTT after the commit, so nothing is
// lost either way (the device re-sends until acked, HQ drops duplicates).
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
)

// Defaults of Config.
const (
	// DefaultQueue is the queue every HQ replica consumes.
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

// EventsKey is the binding key of every device's events topic.
const EventsKey = "tobira.v1.*.*.events"

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

// Intake consumes the events queue; it implements hq.Intake.
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

// Run consumes the queue until ctx ends, going through the nodes in turn
// whenever a connection fails, and returns nil then. handle is HQ's: see
// hq.Intake.
func (in *Intake) Run(ctx context.Context, handle func(ctx context.Context, topic string, payload []byte) bool) error {
	for i := 0; ; i++ {
		u := in.cfg.URLs[i%len(in.cfg.URLs)]
		err := in.consume(ctx, u, handle)
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

// consume connects to u, makes sure the queue exists and is bound, and
// hands its messages to handle until the connection fails or ctx ends.
func (in *Intake) consume(ctx context.Context, u string, handle func(ctx context.Context, topic string, payload []byte) bool) error {
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
	if _, err := ch.QueueDeclare(in.cfg.Queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return fmt.Errorf("declare queue %s on %s: %w", in.cfg.Queue, redact(u), err)
	}
	if err := ch.QueueBind(in.cfg.Queue, EventsKey, exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %s to %s on %s: %w", in.cfg.Queue, exchange, redact(u), err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, in.cfg.Queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s on %s: %w", in.cfg.Queue, redact(u), err)
	}
	in.log.Info("events intake consuming", "url", redact(u), "queue", in.cfg.Queue)
	var wg sync.WaitGroup
	for range in.cfg.Workers {
		wg.Go(func() { in.work(ctx, deliveries, handle) })
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

// work handles deliveries until the channel closes: each is acknowledged
// once handle took it, or given back to the queue.
func (in *Intake) work(ctx context.Context, deliveries <-chan amqp.Delivery, handle func(ctx context.Context, topic string, payload []byte) bool) {
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
func Topic(key string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, key)
}

// redact returns u without its password, for logs.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}
