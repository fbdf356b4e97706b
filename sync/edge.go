package sync

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Edge defaults.
const (
	// DefaultWindow is how many batches may wait for HQ's ack at once.
	DefaultWindow = 4
	// DefaultAckTimeout is how long the edge waits for HQ to acknowledge
	// its oldest batch before it sends everything unacknowledged again.
	DefaultAckTimeout = 15 * time.Second
	// DefaultRetryDelay is the pause after a failed publish or outbox read.
	DefaultRetryDelay = time.Second
)

// EdgeConfig configures an Edge. Broker, Site and Device are required.
type EdgeConfig struct {
	// Broker is the paho broker URL, e.g. "tcp://127.0.0.1:1883" or
	// "ssl://hq.example:8883".
	Broker string
	// Site is the site name (see CheckName).
	Site string
	// Device is the device name (see CheckName).
	Device string
	// ClientID is the MQTT client ID; default "tobira-"+Site+"-"+Device
	// (unique per broker, as MQTT requires).
	ClientID string
	// TLS, when set, is used for ssl:// and wss:// brokers (client
	// certificates, pinned roots).
	TLS *tls.Config
	// Username is the optional MQTT user name.
	Username string
	// Password is the optional MQTT password.
	Password string
	// Batch is the most events per message; default DefaultBatch, at most
	// MaxBatch.
	Batch int
	// Window is the most batches awaiting HQ's ack at once; default
	// DefaultWindow.
	Window int
	// AckTimeout is how long to wait for HQ's ack of the oldest batch before
	// re-sending; default DefaultAckTimeout.
	AckTimeout time.Duration
	// RetryDelay is the pause after a failed publish; default
	// DefaultRetryDelay.
	RetryDelay time.Duration
	// ConnectRetry is the pause between attempts of the first connection;
	// default DefaultConnectRetry.
	ConnectRetry time.Duration
	// MaxReconnect caps the back-off between reconnection attempts; default
	// DefaultMaxReconnect.
	MaxReconnect time.Duration
	// Status supplies the device facts of the retained status message
	// (version, snapshot, doors, clock trust); nil publishes link facts
	// only (online, outbox depth, acked sequence number).
	Status StatusSource
	// StatusInterval is how often the status is published when nothing
	// else prompts it; default DefaultStatusInterval.
	StatusInterval time.Duration
	// Keys are the pinned HQ public keys (several during a key rotation).
	// Commands and snapshots must be signed by one of them. Required when
	// Commands or Snapshots is set.
	Keys []ed25519.PublicKey
	// Commands carries out verified commands; nil: the Edge does not
	// subscribe to commands.
	Commands CommandHandler
	// Snapshots receives verified snapshots; nil: the Edge does not
	// subscribe to snapshots.
	Snapshots SnapshotSink
	// StagingDir holds the chunks of a snapshot being received; default:
	// the outbox file's directory.
	StagingDir string
	// NeedInterval is how long the Edge waits without a new chunk before
	// it asks HQ for the missing ones; default DefaultNeedInterval.
	NeedInterval time.Duration
	// Marks is the ticket-mark store (*policy.Store): the Edge publishes
	// the marks it records and merges the other gates' marks that HQ
	// relays, signed by one of Keys. nil: no mark sharing.
	Marks MarkStore
	// MarkInterval is how often the Edge looks for new marks when Notify
	// does not prompt it; default DefaultMarkInterval.
	MarkInterval time.Duration
	// Clock times acks and retries; default clock.System{}.
	Clock clock.Clock
	// Logger receives the link's logs; default slog.Default().
	Logger *slog.Logger
}

// Edge is the device end of the HQ link. It publishes the outbox's events to
// HQ in sequence order at QoS 1 and deletes them from the outbox when HQ
// acknowledges them (not when the broker does). See the package doc for the
// protocol.
type Edge struct {
	eng     *engine
	link    mqttconn.Settings
	status  *statusLoop
	cmds    *commandIntake
	snaps   *snapshotIntake
	marks   *markLoop
	enroll  *enrollLoop
	needIvl time.Duration
	running atomic.Bool
}

// subscription is a topic the Edge subscribes to on every connection
// (acks, commands, snapshots), and its handler. Handlers run in their own
// goroutines.
type subscription struct {
	topic   string
	handler func(ctx context.Context, c mqtt.Client, topic string, payload []byte)
}

// NewEdge checks cfg and returns an Edge that sends ob's events. It does not
// connect; Run does.
func NewEdge(cfg EdgeConfig, ob *Outbox) (*Edge, error) {
	if ob == nil {
		return nil, fmt.Errorf("%w: edge needs an outbox", ErrConfig)
	}
	if err := mqttconn.CheckBrokerURL(cfg.Broker); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := proto.CheckName(cfg.Site); err != nil {
		return nil, fmt.Errorf("%w: site: %w", ErrConfig, err)
	}
	if err := proto.CheckName(cfg.Device); err != nil {
		return nil, fmt.Errorf("%w: device: %w", ErrConfig, err)
	}
	if cfg.Batch < 0 || cfg.Batch > proto.MaxBatch {
		return nil, fmt.Errorf("%w: batch %d, want 1..%d (0 for %d)", ErrConfig, cfg.Batch, proto.MaxBatch, proto.DefaultBatch)
	}
	if cfg.Window < 0 {
		return nil, fmt.Errorf("%w: window %d is negative", ErrConfig, cfg.Window)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ack timeout", cfg.AckTimeout}, {"retry delay", cfg.RetryDelay}, {"connect retry", cfg.ConnectRetry},
		{"max reconnect", cfg.MaxReconnect}, {"status interval", cfg.StatusInterval}, {"need interval", cfg.NeedInterval},
		{"mark interval", cfg.MarkInterval}} {
		if d.v < 0 {
			return nil, fmt.Errorf("%w: %s %v is negative", ErrConfig, d.name, d.v)
		}
	}
	eng, err := newEngine(ob, cfg.Site, cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("new edge %s/%s: %w", cfg.Site, cfg.Device, err)
	}
	eng.clk = cmp.Or(cfg.Clock, clock.Clock(clock.System{}))
	eng.batch = cmp.Or(cfg.Batch, proto.DefaultBatch)
	eng.window = cmp.Or(cfg.Window, DefaultWindow)
	eng.ackTimeout = cmp.Or(cfg.AckTimeout, DefaultAckTimeout)
	eng.retryDelay = cmp.Or(cfg.RetryDelay, DefaultRetryDelay)
	log := cmp.Or(cfg.Logger, slog.Default())
	eng.log = log.With("site", cfg.Site, "device", cfg.Device)
	var v *signed.Verifier
	if cfg.Commands != nil || cfg.Snapshots != nil || cfg.Marks != nil {
		if v, err = signed.NewVerifier(cfg.Keys...); err != nil {
			return nil, fmt.Errorf("%w: commands, snapshots and ticket marks need pinned HQ keys: %w", ErrConfig, err)
		}
	}
	e := &Edge{
		eng:     eng,
		needIvl: cmp.Or(cfg.NeedInterval, DefaultNeedInterval),
		status: &statusLoop{
			src:      cfg.Status,
			eng:      eng,
			clk:      eng.clk,
			log:      eng.log,
			interval: cmp.Or(cfg.StatusInterval, DefaultStatusInterval),
			topic:    proto.StatusTopic(cfg.Site, cfg.Device),
			kick:     make(chan struct{}, 1),
		},
		link: mqttconn.Settings{
			Broker:       cfg.Broker,
			ClientID:     cmp.Or(cfg.ClientID, "tobira-"+cfg.Site+"-"+cfg.Device),
			TLS:          cfg.TLS,
			Username:     cfg.Username,
			Password:     cfg.Password,
			ConnectRetry: cmp.Or(cfg.ConnectRetry, mqttconn.DefaultConnectRetry),
			MaxReconnect: cmp.Or(cfg.MaxReconnect, mqttconn.DefaultMaxReconnect),
		},
	}
	e.enroll = &enrollLoop{ob: ob, clk: eng.clk, log: eng.log, site: cfg.Site, device: cfg.Device,
		ackTimeout: eng.ackTimeout, kick: make(chan struct{}, 1)}
	if cfg.Marks != nil {
		e.marks = &markLoop{store: cfg.Marks, ob: ob, v: v, clk: eng.clk, log: eng.log, site: cfg.Site, device: cfg.Device,
			interval: cmp.Or(cfg.MarkInterval, DefaultMarkInterval), kick: make(chan struct{}, 1)}
	}
	if cfg.Commands != nil {
		e.cmds = &commandIntake{v: v, h: cfg.Commands, ob: ob, clk: eng.clk, log: eng.log, site: cfg.Site, device: cfg.Device}
	}
	if cfg.Snapshots != nil {
		e.snaps = &snapshotIntake{
			v: v, sink: cfg.Snapshots, ob: ob, clk: eng.clk, log: eng.log, site: cfg.Site, device: cfg.Device,
			dir: cmp.Or(cfg.StagingDir, filepath.Dir(ob.Path())),
		}
		if err := e.snaps.load(); err != nil {
			return nil, fmt.Errorf("new edge %s/%s: %w", cfg.Site, cfg.Device, err)
		}
		var lastErr atomic.Value
		lastErr.Store("")
		e.snaps.fail = func(s string) { lastErr.Store(s) }
		e.snaps.poke = e.status.nudge
		e.status.snapErr = func() string { return lastErr.Load().(string) }
	}
	return e, nil
}

// Run connects to the broker (retrying until it succeeds, and reconnecting
// after a loss), subscribes to the device's ack topic, and publishes pending
// events until ctx ends. After a reconnection or an ack timeout it sends
// every unacknowledged event again. It returns nil when ctx ends, after a
// clean disconnect, and only then may the outbox be closed.
func (e *Edge) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return fmt.Errorf("edge %s: %w", e.eng.topic, ErrRunning)
	}
	defer e.running.Store(false)

	var hg mqttconn.HandlerGroup
	site, device := e.eng.site, e.eng.device
	var pub pahoPublisher
	sendResult := func(ctx context.Context, r proto.Result) {
		b, err := json.Marshal(r)
		if err == nil {
			err = pub.publish(ctx, proto.ResultTopic(site, device), b)
		}
		if err != nil {
			e.eng.log.Warn("cannot publish result", "id", r.ID, "status", r.Status, "err", err)
		}
	}
	subs := []subscription{{
		topic:   proto.AckTopic(site, device),
		handler: func(_ context.Context, _ mqtt.Client, topic string, payload []byte) { e.eng.onAck(topic, payload) },
	}, {
		topic:   proto.EnrollAckTopic(site, device),
		handler: func(_ context.Context, _ mqtt.Client, topic string, payload []byte) { e.enroll.onAck(topic, payload) },
	}}
	if e.marks != nil {
		subs = append(subs, subscription{
			topic: proto.PeerMarksTopic(site, device),
			handler: func(ctx context.Context, _ mqtt.Client, topic string, payload []byte) {
				e.marks.onPeerMarks(ctx, topic, payload)
			},
		})
	}
	if e.cmds != nil {
		subs = append(subs, subscription{
			topic: proto.CommandTopic(site, device),
			handler: func(ctx context.Context, _ mqtt.Client, _ string, payload []byte) {
				sendResult(ctx, e.cmds.handle(ctx, payload))
			},
		})
	}
	if e.snaps != nil {
		e.snaps.report = sendResult
		e.snaps.need = func(ctx context.Context, n proto.Need) {
			b, err := json.Marshal(n)
			if err == nil {
				err = pub.publish(ctx, proto.NeedTopic(site, device), b)
			}
			if err != nil {
				e.eng.log.Warn("cannot ask for snapshot chunks", "transfer", n.Transfer, "err", err)
			}
		}
		subs = append(subs,
			subscription{topic: proto.SnapshotTopic(site, device), handler: func(ctx context.Context, _ mqtt.Client, _ string, p []byte) {
				e.snaps.onManifest(ctx, p)
			}},
			subscription{topic: proto.ChunkTopic(site, device), handler: func(ctx context.Context, _ mqtt.Client, _ string, p []byte) {
				e.snaps.onChunk(ctx, p)
			}})
	}
	filters := make(map[string]byte, len(subs))
	route := make(map[string]func(context.Context, mqtt.Client, string, []byte), len(subs))
	for _, s := range subs {
		filters[s.topic] = 1
		route[s.topic] = s.handler
	}
	onMessage := func(c mqtt.Client, m mqtt.Message) {
		if !hg.Enter() {
			return
		}
		defer hg.Leave()
		h, ok := route[m.Topic()]
		if !ok {
			e.eng.log.Warn("message on an unexpected topic dropped", "topic", m.Topic(), "bytes", len(m.Payload()))
			return
		}
		h(ctx, c, m.Topic(), m.Payload())
	}
	opts := e.link.Options().
		SetCleanSession(true). // the outbox, not the broker, keeps what is unsent
		SetWill(e.status.topic, string(proto.OfflineStatus(e.eng.site, e.eng.device)), 1, true).
		SetOnConnectHandler(func(c mqtt.Client) {
			if !hg.Enter() {
				return
			}
			defer hg.Leave()
			// Paho runs this in its own goroutine, so waiting is allowed.
			if err := mqttconn.WaitToken(ctx, e.eng.clk, c.SubscribeMultiple(filters, onMessage), mqttconn.DefaultTokenTimeout); err != nil {
				e.eng.log.Error("cannot subscribe; sending anyway, acks and commands will be missed until reconnect",
					"topics", len(filters), "broker", e.link.Broker, "err", err)
			} else {
				e.eng.log.Info("connected to broker", "broker", e.link.Broker, "client_id", e.link.ClientID)
			}
			e.eng.onConnect()
			e.status.nudge()
			e.enroll.nudge()
			if e.marks != nil {
				e.marks.nudge()
			}
			if e.snaps != nil {
				e.snaps.onConnect(ctx)
			}
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			e.eng.log.Warn("lost broker connection", "broker", e.link.Broker, "err", err)
			e.eng.onConnectionLost()
		})
	c := mqtt.NewClient(opts)
	pub = pahoPublisher{c: c, clk: e.eng.clk}
	e.eng.pub = pub
	c.Connect() // with ConnectRetry the token completes only once connected; OnConnect reports it

	var bg sync.WaitGroup
	bg.Go(func() { e.status.run(ctx, pub) })
	bg.Go(func() { e.enroll.run(ctx, pub, e.eng.up.Load) })
	if e.marks != nil {
		bg.Go(func() { e.marks.run(ctx, pub, e.eng.up.Load) })
	}
	if e.snaps != nil {
		bg.Go(func() { e.snaps.run(ctx, e.needIvl, e.eng.up.Load) })
	}
	err := e.eng.run(ctx)
	bg.Wait()
	if e.eng.up.Load() {
		// A clean disconnect does not fire the will: say offline ourselves.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		if perr := pub.publishRetained(sctx, e.status.topic, proto.OfflineStatus(e.eng.site, e.eng.device)); perr != nil {
			e.eng.log.Warn("cannot publish offline status", "topic", e.status.topic, "err", perr)
		}
		cancel()
	}
	c.Disconnect(mqttconn.DisconnectQuiesce)
	hg.CloseAndWait()
	e.eng.up.Store(false)
	e.eng.log.Info("edge link stopped", "broker", e.link.Broker, "acked", e.eng.acked.Load())
	return err
}

// Notify tells the Edge that an event or an enrollment was appended, or a
// ticket mark recorded, so that it publishes soon. It never blocks.
func (e *Edge) Notify() {
	e.eng.notify()
	e.enroll.nudge()
	if e.marks != nil {
		e.marks.nudge()
	}
}

// PublishStatus asks the Edge to publish its status soon (after a door or
// snapshot change). It never blocks.
func (e *Edge) PublishStatus() { e.status.nudge() }

// Acked returns the highest sequence number HQ has acknowledged so far
// (known from the outbox at NewEdge, then from HQ's acks).
func (e *Edge) Acked() uint64 { return e.eng.acked.Load() }

// WaitDrained returns nil when the outbox is empty, that is every event
// appended so far was acknowledged by HQ, or the ctx error when ctx ends
// first.
func (e *Edge) WaitDrained(ctx context.Context) error { return e.eng.waitDrained(ctx) }

// pahoPublisher publishes through a paho client at QoS 1 and waits for the
// broker's PUBACK.
type pahoPublisher struct {
	c   mqtt.Client
	clk clock.Clock
}

// publish implements publisher.
func (p pahoPublisher) publish(ctx context.Context, topic string, payload []byte) error {
	return mqttconn.WaitToken(ctx, p.clk, p.c.Publish(topic, 1, false, payload), mqttconn.DefaultTokenTimeout)
}

// publishRetained implements retainedPublisher.
func (p pahoPublisher) publishRetained(ctx context.Context, topic string, payload []byte) error {
	return mqttconn.WaitToken(ctx, p.clk, p.c.Publish(topic, 1, true, payload), mqttconn.DefaultTokenTimeout)
}
