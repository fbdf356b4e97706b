package sync

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
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

// EdgeConfig configures an Edge. Broker or Brokers, Site and Device are
// required.
type EdgeConfig struct {
	// Broker is the paho broker URL, e.g. "tcp://127.0.0.1:1883" or
	// "ssl://hq.example:8883": shorthand for Brokers with one URL. Set
	// Broker or Brokers, not both.
	Broker string
	// Brokers are the URLs of several brokers, e.g. the nodes of a broker
	// cluster: the link connects to the first that answers, in order, and
	// moves to another when its broker fails (deploy/rabbitmq).
	Brokers []string
	// Site is the site name (see proto.CheckName).
	Site string
	// Device is the device name (see proto.CheckName).
	Device string
	// ClientID is the MQTT client ID; default Site+"/"+Device (unique per
	// broker, as MQTT requires; the shipped broker config accepts only
	// the certificate's CN "{site}/{device}", alone or followed by "/...").
	ClientID string
	// TLS, when set, is used for ssl:// and wss:// brokers (client
	// certificates, pinned roots).
	TLS *tls.Config
	// Username is the optional MQTT user name.
	Username string
	// Password is the optional MQTT password.
	Password string
	// Batch is the most events per message; default proto.DefaultBatch,
	// at most proto.MaxBatch.
	Batch int
	// Window is the most batches awaiting HQ's ack at once; default
	// DefaultWindow.
	Window int
	// AckTimeout is how long to wait for HQ's ack of the oldest batch before
	// re-sending; default DefaultAckTimeout. Each timeout in a row doubles
	// the next wait, up to 4 times AckTimeout, until an ack arrives.
	AckTimeout time.Duration
	// RetryDelay is the pause after a failed publish; default
	// DefaultRetryDelay.
	RetryDelay time.Duration
	// ConnectRetry is the pause between attempts of the first connection;
	// default mqttconn.DefaultConnectRetry (2s).
	ConnectRetry time.Duration
	// MaxReconnect caps the back-off between reconnection attempts; default
	// mqttconn.DefaultMaxReconnect (10s).
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
	// SnapshotGroups are the groups of the site (door groups) whose
	// snapshot transfers the device takes, besides its own and its site's
	// (proto.SiteGroup): HQ publishes a transfer that is the same for
	// every device of a group once, on the group's topics.
	SnapshotGroups []string
	// StagingDir holds the chunks of a snapshot being received; default:
	// the outbox file's directory.
	StagingDir string
	// NeedInterval is how long the Edge waits without a new chunk before
	// it asks HQ for the missing ones; default DefaultNeedInterval.
	NeedInterval time.Duration
	// Marks is the ticket-mark store (*policy.Store): the Edge sends the
	// marks it records through the outbox and merges the other gates'
	// marks that HQ serves, signed by one of Keys. nil: no mark sharing.
	Marks MarkStore
	// TicketChecks turns on the online check of single-entry tickets
	// (Edge.CheckTicket); HQ's verdicts are signed by one of Keys.
	TicketChecks bool
	// MarkSkew is how far ahead of the device's clock a peer mark may be
	// dated before the Edge refuses it; default proto.DefaultMarkSkew.
	MarkSkew time.Duration
	// MarkInterval is how often the Edge looks for new marks when Notify
	// does not prompt it; default DefaultMarkInterval.
	MarkInterval time.Duration
	// MarkRefresh is how long a connected gate goes without asking HQ for
	// the site's marks before it asks again; default DefaultMarkRefresh.
	MarkRefresh time.Duration
	// Clock times acks and retries; default clock.System{}.
	Clock clock.Clock
	// Logger receives the link's logs; default slog.Default().
	Logger *slog.Logger
}

// settings returns c's broker settings; the client ID gets suffix when c
// names none (the ReleaseAgent's connection is the Edge's plus
// "/release").
func (c EdgeConfig) settings(suffix string) mqttconn.Settings {
	urls := c.brokers()
	return mqttconn.Settings{
		Broker:       urls[0],
		Fallbacks:    urls[1:],
		ClientID:     cmp.Or(c.ClientID, c.Site+"/"+c.Device) + suffix,
		TLS:          c.TLS,
		Username:     c.Username,
		Password:     c.Password,
		ConnectRetry: cmp.Or(c.ConnectRetry, mqttconn.DefaultConnectRetry),
		MaxReconnect: cmp.Or(c.MaxReconnect, mqttconn.DefaultMaxReconnect),
	}
}

// brokers returns the broker URLs: Brokers, or Broker alone. checkLink
// makes sure there is one.
func (c EdgeConfig) brokers() []string {
	if len(c.Brokers) > 0 {
		return c.Brokers
	}
	return []string{c.Broker}
}

// checkLink checks what every connection of the device needs: broker URLs,
// site and device names.
func (c EdgeConfig) checkLink() error {
	if c.Broker != "" && len(c.Brokers) > 0 {
		return fmt.Errorf("%w: set broker %q or brokers %q, not both", ErrConfig, c.Broker, c.Brokers)
	}
	for _, b := range c.brokers() {
		if err := mqttconn.CheckBrokerURL(b); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if err := proto.CheckName(c.Site); err != nil {
		return fmt.Errorf("%w: site: %w", ErrConfig, err)
	}
	if err := proto.CheckName(c.Device); err != nil {
		return fmt.Errorf("%w: device: %w", ErrConfig, err)
	}
	return nil
}

// check reports whether c is usable for an Edge.
func (c EdgeConfig) check() error {
	if err := c.checkLink(); err != nil {
		return err
	}
	if c.Batch < 0 || c.Batch > proto.MaxBatch {
		return fmt.Errorf("%w: batch %d, want 1..%d (0 for %d)", ErrConfig, c.Batch, proto.MaxBatch, proto.DefaultBatch)
	}
	if c.Window < 0 {
		return fmt.Errorf("%w: window %d is negative", ErrConfig, c.Window)
	}
	for _, g := range c.SnapshotGroups {
		if err := proto.CheckName(g); err != nil || g == proto.SiteGroup {
			return fmt.Errorf("%w: snapshot group %q: a name other than %s: %w", ErrConfig, g, proto.SiteGroup, err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ack timeout", c.AckTimeout}, {"retry delay", c.RetryDelay}, {"connect retry", c.ConnectRetry},
		{"max reconnect", c.MaxReconnect}, {"status interval", c.StatusInterval}, {"need interval", c.NeedInterval},
		{"mark interval", c.MarkInterval}, {"mark refresh", c.MarkRefresh}, {"mark skew", c.MarkSkew}} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v is negative", ErrConfig, d.name, d.v)
		}
	}
	return nil
}

// Edge is the device end of the HQ link. It publishes the outbox's events to
// HQ in sequence order at QoS 1 and deletes them from the outbox when HQ
// acknowledges them (not when the broker does), and runs the other
// features its EdgeConfig asks for: status, enrollments, commands,
// snapshots, ticket marks. See the package doc.
type Edge struct {
	eng      *engine
	status   *statusLoop
	features []feature // eng and status first
	link     mqttconn.Settings
	pub      *clientPublisher
	tickets  *ticketChecks // nil: no online checks
	running  atomic.Bool

	// relink moves Run's connection to the next client ID (set by Run
	// before the features start).
	relink link

	// resubscribe subscribes the connected client to the features'
	// topics again (set by options); resubscribing is set while it runs.
	resubscribe   func(mqtt.Client) error
	resubscribing atomic.Bool
}

// NewEdge checks cfg and returns an Edge that sends ob's events. It does not
// connect; Run does.
func NewEdge(cfg EdgeConfig, ob *Outbox) (*Edge, error) {
	if ob == nil {
		return nil, fmt.Errorf("%w: edge needs an outbox", ErrConfig)
	}
	if err := cfg.check(); err != nil {
		return nil, err
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
	eng.log = cmp.Or(cfg.Logger, slog.Default()).With("site", cfg.Site, "device", cfg.Device)
	pub := &clientPublisher{clk: eng.clk}
	eng.pub = pub
	results := &resultSender{pub: pub, topic: proto.ResultTopic(cfg.Site, cfg.Device), log: eng.log}
	e := &Edge{
		eng: eng,
		status: &statusLoop{src: cfg.Status, eng: eng, pub: pub, clk: eng.clk, log: eng.log,
			interval: cmp.Or(cfg.StatusInterval, DefaultStatusInterval), results: results.latest,
			topic: proto.StatusTopic(cfg.Site, cfg.Device), kick: make(chan struct{}, 1)},
		link: cfg.settings(""),
		pub:  pub,
	}
	e.features = []feature{eng, e.status, &enrollLoop{ob: ob, pub: pub, up: eng.up.Load, clk: eng.clk, log: eng.log,
		site: cfg.Site, device: cfg.Device, ackTimeout: eng.ackTimeout, kick: make(chan struct{}, 1), deaf: e.deaf}}
	signedFeatures, err := e.signedFeatures(cfg, ob, results)
	if err != nil {
		return nil, fmt.Errorf("new edge %s/%s: %w", cfg.Site, cfg.Device, err)
	}
	e.features = append(e.features, signedFeatures...)
	return e, nil
}

// signedFeatures returns the features that take messages signed by HQ,
// those cfg asks for: ticket marks, commands, snapshots. They need
// cfg.Keys.
func (e *Edge) signedFeatures(cfg EdgeConfig, ob *Outbox, results *resultSender) ([]feature, error) {
	if cfg.Marks == nil && cfg.Commands == nil && cfg.Snapshots == nil && !cfg.TicketChecks {
		return nil, nil
	}
	v, err := signed.NewVerifier(cfg.Keys...)
	if err != nil {
		return nil, fmt.Errorf("%w: commands, snapshots and ticket marks need pinned HQ keys: %w", ErrConfig, err)
	}
	eng := e.eng
	var fs []feature
	if cfg.Marks != nil {
		fs = append(fs, &markLoop{store: cfg.Marks, ob: ob, pub: e.pub, up: eng.up.Load, events: eng.notify, v: v, clk: eng.clk, log: eng.log,
			site: cfg.Site, device: cfg.Device, interval: cmp.Or(cfg.MarkInterval, DefaultMarkInterval),
			ackTimeout: eng.ackTimeout, skew: cmp.Or(cfg.MarkSkew, proto.DefaultMarkSkew), kick: make(chan struct{}, 1),
			ask: &askBackoff{clk: eng.clk, first: eng.ackTimeout}, deaf: e.deaf, refresh: cmp.Or(cfg.MarkRefresh, DefaultMarkRefresh),
			status: e.status.nudge})
	}
	if cfg.TicketChecks {
		e.tickets = &ticketChecks{pub: e.pub, up: eng.up.Load, v: v, log: eng.log, site: cfg.Site, device: cfg.Device,
			pending: map[uint64]chan proto.TicketVerdict{}}
		fs = append(fs, e.tickets)
	}
	var ci *commandIntake
	var si *snapshotIntake
	if cfg.Commands != nil {
		ci = &commandIntake{v: v, h: cfg.Commands, ob: ob, clk: eng.clk, log: eng.log,
			site: cfg.Site, device: cfg.Device, report: results.send}
		fs = append(fs, ci)
	}
	if cfg.Snapshots != nil {
		var err error
		if si, err = e.snapshotIntake(cfg, ob, v, results); err != nil {
			return nil, err
		}
		fs = append(fs, si)
	}
	if ci != nil || si != nil {
		fs = append(fs, e.syncFetch(cfg, ob, ci, si))
	}
	return fs, nil
}

// syncFetch returns the feature that asks HQ, on every connection, for the
// snapshot manifest and the commands in force (those of ci and si that
// are not nil).
func (e *Edge) syncFetch(cfg EdgeConfig, ob *Outbox, ci *commandIntake, si *snapshotIntake) *syncFetch {
	eng := e.eng
	f := &syncFetch{pub: e.pub, up: eng.up.Load, clk: eng.clk, log: eng.log, site: cfg.Site, device: cfg.Device,
		ask: &askBackoff{clk: eng.clk, first: eng.ackTimeout}, kick: make(chan struct{}, 1), deaf: e.deaf}
	if si != nil {
		f.want = append(f.want, proto.WantSnapshot)
		f.snapshot = si.onManifest
	}
	if ci != nil {
		f.want = append(f.want, proto.WantCommands)
		f.command = func(ctx context.Context, env []byte) { ci.report(ctx, ci.handle(ctx, env)) }
	}
	f.have = func() (proto.SyncGet, error) {
		var g proto.SyncGet
		var err error
		if ci != nil {
			if g.Applied, err = appliedCommands(ob); err != nil {
				return g, err
			}
		}
		if si != nil {
			if g.Snapshot, err = cfg.Snapshots.Version(); err != nil {
				return g, fmt.Errorf("snapshot version: %w", err)
			}
			h, err := cfg.Snapshots.ContentHash()
			if err != nil {
				return g, fmt.Errorf("snapshot content hash: %w", err)
			}
			if h != ([32]byte{}) {
				g.ContentHash = hex.EncodeToString(h[:])
			}
			g.SnapshotGroups = cfg.SnapshotGroups
		}
		return g, nil
	}
	return f
}

// snapshotIntake returns the snapshot feature, restored from the outbox
// file, and wires its refusals into the status.
func (e *Edge) snapshotIntake(cfg EdgeConfig, ob *Outbox, v *signed.Verifier, results *resultSender) (*snapshotIntake, error) {
	eng := e.eng
	needTopic := proto.NeedTopic(cfg.Site, cfg.Device)
	var lastErr atomic.Value
	lastErr.Store("")
	si := &snapshotIntake{
		v: v, sink: cfg.Snapshots, ob: ob, clk: eng.clk, log: eng.log, site: cfg.Site, device: cfg.Device,
		groups: append([]string{proto.SiteGroup}, cfg.SnapshotGroups...),
		dir:    cmp.Or(cfg.StagingDir, filepath.Dir(ob.Path())),
		report: results.send,
		need: func(ctx context.Context, n proto.Need) {
			if err := publishJSON(ctx, e.pub, needTopic, n); err != nil {
				eng.log.Warn("cannot ask for snapshot chunks", "transfer", n.Transfer, "err", err)
			}
		},
		poke:      e.status.nudge,
		fail:      func(s string) { lastErr.Store(s) },
		up:        eng.up.Load,
		needEvery: cmp.Or(cfg.NeedInterval, DefaultNeedInterval),
	}
	if err := si.load(); err != nil {
		return nil, err
	}
	e.status.snapErr = func() string { return lastErr.Load().(string) }
	return si, nil
}

// Run connects to the broker (retrying until it succeeds, and reconnecting
// after a loss), subscribes to the topics of the Edge's features, and
// publishes pending events until ctx ends. After a reconnection or an ack
// timeout it sends every unacknowledged event again. It returns nil when
// ctx ends, after a clean disconnect, and only then may the outbox be
// closed.
func (e *Edge) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return fmt.Errorf("edge %s: %w", e.eng.topic, ErrRunning)
	}
	defer e.running.Store(false)

	var hg mqttconn.HandlerGroup
	l := link{rot: e.link.Rotator("/", e.eng.log), drop: new(mqttconn.Dropper)}
	c := mqtt.NewClient(e.options(ctx, &hg, l))
	e.pub.c = c
	e.relink = l
	e.eng.stuck = func(timeouts int) {
		if timeouts%(2*resubscribeAfter) == 0 {
			// Subscribing again did not help: the subscription delivers
			// nothing (RabbitMQ 3.10 can leave a device's queue without
			// its consumer after a node restart).
			e.deaf("no ack from HQ on a live connection after subscribing again")
			return
		}
		go e.subscribeAgain(c, &hg)
	}
	c.Connect() // with ConnectRetry the token completes only once connected; OnConnect reports it

	var wg sync.WaitGroup
	for _, f := range e.features {
		wg.Go(func() { f.run(ctx) })
	}
	wg.Wait()
	if e.eng.up.Load() {
		e.sayOffline(ctx)
	}
	c.Disconnect(mqttconn.DisconnectQuiesce)
	hg.CloseAndWait()
	e.eng.up.Store(false)
	e.eng.log.Info("edge link stopped", "broker", e.link.Broker, "acked", e.eng.acked.Load())
	return nil
}

// link is what moves a Run's connection to another client ID and broker:
// after refused subscriptions (rot alone), or when the connection
// delivers nothing (rot told to move on, drop failing its reads).
type link struct {
	rot  *mqttconn.Rotator
	drop *mqttconn.Dropper
}

// options returns the paho options of Run: a clean session (the outbox,
// not the broker, keeps what is unsent), the offline status as last will,
// and on every connection a subscription to every feature's routes, whose
// handlers hg tracks.
func (e *Edge) options(ctx context.Context, hg *mqttconn.HandlerGroup, l link) *mqtt.ClientOptions {
	routes := map[string]func(context.Context, string, []byte){}
	for _, f := range e.features {
		for _, r := range f.routes() {
			routes[r.topic] = r.handle
		}
	}
	filters := make(map[string]byte, len(routes))
	for topic := range routes {
		filters[topic] = 1
	}
	onMessage := func(_ mqtt.Client, m mqtt.Message) {
		if !hg.Enter() {
			return
		}
		defer hg.Leave()
		handle, ok := routes[m.Topic()]
		if !ok {
			e.eng.log.Warn("message on an unexpected topic dropped", "topic", m.Topic(), "bytes", len(m.Payload()))
			return
		}
		handle(ctx, m.Topic(), m.Payload())
	}
	e.resubscribe = func(c mqtt.Client) error {
		return mqttconn.Subscribe(ctx, e.eng.clk, nil, c, filters, onMessage)
	}
	// dialed is the broker paho tried last: on connection, the one it is
	// connected to (several brokers: EdgeConfig.Brokers).
	var dialed atomic.Value
	dialed.Store(e.link.Broker)
	return e.link.Options().
		SetConnectionAttemptHandler(func(u *url.URL, cfg *tls.Config) *tls.Config {
			dialed.Store(u.String())
			return cfg
		}).
		SetCleanSession(true).
		SetReconnectingHandler(l.rot.Reconnecting).
		SetCustomOpenConnectionFn(l.drop.Open).
		SetWill(e.status.topic, string(proto.OfflineStatus(e.eng.site, e.eng.device)), 1, true).
		SetOnConnectHandler(func(c mqtt.Client) {
			if !hg.Enter() {
				return
			}
			defer hg.Leave()
			// Paho runs this in its own goroutine, so waiting is allowed.
			if err := mqttconn.Subscribe(ctx, e.eng.clk, l.rot, c, filters, onMessage); err != nil {
				e.eng.log.Error("cannot subscribe; sending anyway, acks and commands will be missed until reconnect",
					"topics", len(filters), "broker", dialed.Load(), "client_id", l.rot.ClientID(), "err", err)
			} else {
				e.eng.log.Info("connected to broker", "broker", dialed.Load(), "client_id", l.rot.ClientID())
			}
			for _, f := range e.features {
				f.connected(ctx)
			}
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			e.eng.log.Warn("lost broker connection", "broker", dialed.Load(), "err", err)
			e.eng.onConnectionLost()
		})
}

// deaf drops the connection of Run and reconnects under the next client
// ID and broker: HQ's answers stopped coming on a live connection (why
// says which), so the broker may deliver nothing on it. It does not
// block; before Run it does nothing.
func (e *Edge) deaf(why string) {
	if e.relink.rot == nil {
		return
	}
	e.eng.log.Warn(why+": reconnecting under another client ID", "topic", e.eng.topic)
	e.relink.rot.MoveOn()
	e.relink.drop.Drop()
}

// subscribeAgain subscribes c to the features' topics again, once at a
// time: HQ's acks stopped coming on a connection that still publishes, so
// the broker may have dropped the subscription without closing the
// connection. On RabbitMQ the new subscription declares the device's
// queue again (or, when its node is down, makes the broker close the
// connection, and paho reconnects, to the next broker).
func (e *Edge) subscribeAgain(c mqtt.Client, hg *mqttconn.HandlerGroup) {
	if !hg.Enter() {
		return
	}
	defer hg.Leave()
	if !e.resubscribing.CompareAndSwap(false, true) {
		return
	}
	defer e.resubscribing.Store(false)
	e.eng.log.Warn("no ack from HQ on a live connection: subscribing again", "topic", e.eng.topic)
	if err := e.resubscribe(c); err != nil {
		e.eng.log.Error("cannot subscribe again; acks and commands will be missed until reconnect", "err", err)
	}
}

// sayOffline publishes the offline status: a clean disconnect does not
// fire the will.
func (e *Edge) sayOffline(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := e.pub.publishRetained(sctx, e.status.topic, proto.OfflineStatus(e.eng.site, e.eng.device)); err != nil {
		e.eng.log.Warn("cannot publish offline status", "topic", e.status.topic, "err", err)
	}
}

// Notify tells the Edge that an event or an enrollment was appended, or a
// ticket mark recorded, so that it publishes soon. It never blocks.
func (e *Edge) Notify() {
	for _, f := range e.features {
		f.notify()
	}
}

// PublishStatus asks the Edge to publish its status soon (after a door or
// snapshot change). It never blocks.
func (e *Edge) PublishStatus() { e.status.nudge() }

// Acked returns the highest sequence number HQ has acknowledged so far
// (known from the outbox at NewEdge, then from HQ's acks).
func (e *Edge) Acked() uint64 { return e.eng.acked.Load() }

// Connected reports whether the link is connected to the broker and
// subscribed.
func (e *Edge) Connected() bool { return e.eng.up.Load() }

// WaitDrained returns nil when the outbox is empty, that is every event
// appended so far was acknowledged by HQ, or the ctx error when ctx ends
// first.
func (e *Edge) WaitDrained(ctx context.Context) error { return e.eng.waitDrained(ctx) }
