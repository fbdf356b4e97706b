package hq

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Config configures a Service. Path or Store is required; Broker is
// required for Run.
type Config struct {
	// Broker is the paho broker URL, e.g. "tcp://127.0.0.1:1883".
	Broker string
	// Fallbacks are further broker URLs, e.g. the other nodes of a broker
	// cluster: paho tries Broker, then each of them in order, whenever it
	// connects, and stays on the first that answers.
	Fallbacks []string
	// ClientID is the MQTT client ID; default "tobira-hq". Each replica
	// of an HQ needs its own (e.g. "tobira-hq-" and its host name): a
	// broker disconnects the older of two clients with one ID. HQ uses a
	// clean session: nothing it must handle relies on the broker keeping
	// it while HQ is away (devices re-send until HQ answers).
	ClientID string
	// SharedGroup, when set, makes Run subscribe to the leaves that must
	// be handled once (Leaves.Shared) as MQTT shared subscriptions,
	// $share/{SharedGroup}/tobira/v1/+/+/{leaf}: the broker (mosquitto 2)
	// gives each message to one of the replicas subscribed in the group.
	// Every replica still sees every status (Leaves.Every). Empty: one HQ
	// takes everything.
	SharedGroup string
	// Path is the bbolt file that stores events, status and results,
	// when Store is nil.
	Path string
	// Store, when set, is where HQ keeps events, status and results
	// instead of Path (e.g. PostgreSQL, hq/pgstore). The Service closes it.
	Store Store
	// TLS, when set, is used for ssl:// and wss:// brokers.
	TLS *tls.Config
	// Username is the optional MQTT user name.
	Username string
	// Password is the optional MQTT password.
	Password string
	// ConnectRetry is the pause between attempts of the first connection;
	// default mqttconn.DefaultConnectRetry.
	ConnectRetry time.Duration
	// MaxReconnect caps the back-off between reconnection attempts; default
	// mqttconn.DefaultMaxReconnect.
	MaxReconnect time.Duration
	// Spool is the directory of published snapshots (see
	// Sender.PublishSnapshot); HQ answers devices' requests for missing
	// chunks from it, and Fleet reads the expected versions from it.
	// Empty: no resending, no drift. It is a FileSpool; SpoolStore, when
	// set, is used instead.
	Spool string
	// SpoolStore, when set, is the Spool (shared by HQ's replicas, e.g.
	// hq/pgstore.Spool) instead of the directory Spool.
	SpoolStore Spool
	// Key is HQ's Ed25519 signing key. It signs the ticket marks HQ
	// serves to the gates of a site; nil: marks are stored and
	// acknowledged but not served.
	Key ed25519.PrivateKey
	// Marks stores the sites' ticket marks; nil: a BoltMarks file next to
	// Path ("hq.db" -> "hq-marks.db"), closed by Close.
	Marks MarkStore
	// TicketRules, when set, lets HQ accept a mark only from a door of
	// the ticket's event's door group that the sending device reported,
	// within the event's window; nil: only time and transitions are
	// checked.
	TicketRules TicketRules
	// MarkSkew is how far ahead of HQ's clock a mark may be dated (and how
	// far outside its event's window); default proto.DefaultMarkSkew.
	MarkSkew time.Duration
	// Enrollments stores the enrollment records devices send; nil: HQ
	// does not subscribe to enrollments.
	Enrollments EnrollmentSink
	// Metrics, if set, receives HQ's Prometheus metrics (ingest, lag,
	// devices online, store latency, refused messages).
	Metrics prometheus.Registerer
	// Limits bound what one device can make HQ store or send (sequence
	// window, event and byte rates, chunk re-sends); zero fields take
	// their defaults (docs/HQ.md, "Per-device limits").
	Limits Limits
	// DeviceMetricsTTL is how long a device keeps its per-device series
	// after its last events message; default DefaultDeviceMetricsTTL.
	DeviceMetricsTTL time.Duration
	// Clock times waits on the broker; default clock.System{}.
	Clock clock.Clock
	// Logger receives HQ's logs; default slog.Default().
	Logger *slog.Logger
	// Intake, when set, delivers every device -> HQ message (Leaves)
	// instead of Run's MQTT subscriptions, which Run then does not make:
	// HQ's MQTT link only publishes (acks, answers): see Intake.
	Intake Intake
}

// checkBrokers checks Broker and every fallback broker URL.
func (c Config) checkBrokers() error {
	for _, b := range append([]string{c.Broker}, c.Fallbacks...) {
		if err := mqttconn.CheckBrokerURL(b); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return nil
}

// settings returns c's broker settings, with clientID when c names none.
func (c Config) settings(clientID string) mqttconn.Settings {
	return mqttconn.Settings{
		Broker:       c.Broker,
		Fallbacks:    c.Fallbacks,
		ClientID:     cmp.Or(c.ClientID, clientID),
		TLS:          c.TLS,
		Username:     c.Username,
		Password:     c.Password,
		ConnectRetry: cmp.Or(c.ConnectRetry, mqttconn.DefaultConnectRetry),
		MaxReconnect: cmp.Or(c.MaxReconnect, mqttconn.DefaultMaxReconnect),
	}
}

// Service is the headquarters end of the link. It subscribes to every
// device's events topic, stores each event once by (site, device, seq), and
// acknowledges to each device the highest sequence number up to which it
// holds every event. Events that arrive ahead of a gap are kept, and
// acknowledged once the gap fills. A duplicate is dropped and acknowledged
// again. It also keeps the devices' status and results (Fleet, Result),
// re-sends the snapshot chunks devices ask for, relays ticket marks between
// the gates of a site, and takes enrollments.
//
// Its data is in a Store: a bbolt file by default, or PostgreSQL.
type Service struct {
	st      Store
	path    string // names the store in messages
	spool   Spool  // nil: none
	link    mqttconn.Settings
	clk     clock.Clock
	log     *slog.Logger
	running atomic.Bool

	relay       *relay
	marks       MarkStore
	ownMarks    bool // marks was opened by Open, and Close closes it
	rules       TicketRules
	skew        time.Duration
	enrollments EnrollmentSink
	metrics     *metrics
	limits      *limiter
	acks        *ackSender // publishes device acks apart from the handlers

	reportMu sync.Mutex // orders the sequence numbers of HQ's own events

	seen seenResults // result IDs known to be stored

	intake Intake // nil: device messages come through Run's MQTT subscription
	group  string // shared-subscription group; "": none

	mu      sync.Mutex
	onEvent func(site, device string, ev proto.Event)

	commitMu   sync.Mutex
	pending    []*storeReq // messages waiting for the next group commit
	committing bool        // a caller is committing pending

	ready     chan struct{} // closed once subscribed for the first time
	readyOnce sync.Once
}

// Ready returns a channel that is closed once Run has connected and
// subscribed to the devices' topics for the first time. Devices that
// publish before that moment are served anyway: what the broker had no
// subscriber for, the device sends again after its ack timeout.
func (h *Service) Ready() <-chan struct{} { return h.ready }

// Open opens (or creates) HQ's store: cfg.Store, else the bbolt file at
// cfg.Path. It does not connect; Run does.
func Open(cfg Config) (*Service, error) {
	if cfg.Path == "" && cfg.Store == nil {
		return nil, fmt.Errorf("%w: HQ needs a store path", ErrConfig)
	}
	if cfg.Broker != "" || len(cfg.Fallbacks) > 0 {
		if err := cfg.checkBrokers(); err != nil {
			return nil, err
		}
	}
	if err := checkGroup(cfg.SharedGroup); err != nil {
		return nil, err
	}
	if cfg.Key != nil && len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: HQ key is %d bytes, want an Ed25519 private key", ErrConfig, len(cfg.Key))
	}
	log := cmp.Or(cfg.Logger, slog.Default())
	lim, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	st, name := cfg.Store, cmp.Or(cfg.Path, "the HQ store")
	if st == nil {
		bs, err := OpenBoltStore(cfg.Path, log)
		if err != nil {
			return nil, err
		}
		st = bs
	}
	spool, err := cfg.spool()
	if err != nil {
		st.Close()
		return nil, err
	}
	clk := cmp.Or(cfg.Clock, clock.Clock(clock.System{}))
	marks, ownMarks := cfg.Marks, false
	if marks == nil {
		if cfg.Path == "" {
			st.Close()
			return nil, fmt.Errorf("%w: HQ needs a path for its ticket-mark store (or Config.Marks)", ErrConfig)
		}
		if marks, err = OpenBoltMarks(MarksPath(cfg.Path), clk.Now); err != nil {
			st.Close()
			return nil, err
		}
		ownMarks = true
	}
	h := &Service{
		st:          st,
		path:        name,
		spool:       spool,
		ready:       make(chan struct{}),
		link:        cfg.settings("tobira-hq"),
		clk:         clk,
		log:         log,
		relay:       newRelay(cfg.Key),
		marks:       marks,
		ownMarks:    ownMarks,
		rules:       cfg.TicketRules,
		skew:        cmp.Or(cfg.MarkSkew, proto.DefaultMarkSkew),
		enrollments: cfg.Enrollments,
		intake:      cfg.Intake,
		group:       cfg.SharedGroup,
		acks:        newAckSender(log, maxAckPublishers),
		limits: newLimiter(lim, clk, func(site, device string) (uint64, error) {
			return st.Acked(context.Background(), site, device)
		}),
	}
	if h.metrics, err = newMetrics(cfg.Metrics, h, cfg.DeviceMetricsTTL); err != nil {
		if ownMarks {
			marks.Close()
		}
		st.Close()
		return nil, fmt.Errorf("%w: metrics: %w", ErrConfig, err)
	}
	return h, nil
}

// OnEvent sets a callback for each newly stored event (not for duplicates).
// It is called after the event is committed, possibly from several
// goroutines at once, and must not block for long. nil removes it.
func (h *Service) OnEvent(fn func(site, device string, ev proto.Event)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onEvent = fn
}

// publishFunc publishes one QoS 1 message and waits for the broker's
// PUBACK.
type publishFunc func(ctx context.Context, topic string, payload []byte) error

// publisher returns the publishFunc of client c.
func publisher(c mqtt.Client, clk clock.Clock) publishFunc {
	return func(ctx context.Context, topic string, payload []byte) error {
		return mqttconn.WaitToken(ctx, clk, c.Publish(topic, 1, false, payload), mqttconn.DefaultTokenTimeout)
	}
}

// route handles the messages of one leaf of every device; pub answers.
type route func(ctx context.Context, pub publishFunc, topic string, payload []byte)

// routes returns what Run subscribes to, by leaf: every device's events,
// status, results, chunk requests, ticket marks and sync requests, and its enrollments
// when the Service has a sink for them.
func (h *Service) routes() map[proto.Leaf]route {
	r := map[proto.Leaf]route{
		proto.LeafEvents:      h.handleEvents,
		proto.LeafStatus:      h.handleStatus,
		proto.LeafResult:      h.handleResult,
		proto.LeafNeed:        h.handleNeed,
		proto.LeafMarks:       h.handleMarks,
		proto.LeafMarksGet:    h.handleMarksGet,
		proto.LeafTicketCheck: h.handleTicketCheck,
		proto.LeafSyncGet:     h.handleSyncGet,
	}
	if h.enrollments != nil {
		r[proto.LeafEnroll] = h.handleEnrollment
	}
	return r
}

// Run connects to the broker (retrying, and reconnecting after a loss),
// subscribes to the topics of routes at QoS 1, and stores, acknowledges and
// answers what devices send until ctx ends. It returns nil when ctx ends,
// after a clean disconnect and after every message handler has finished.
func (h *Service) Run(ctx context.Context) error {
	if h.link.Broker == "" {
		return fmt.Errorf("%w: HQ %s has no broker URL", ErrConfig, h.path)
	}
	if !h.running.CompareAndSwap(false, true) {
		return fmt.Errorf("HQ %s: %w", h.path, ErrRunning)
	}
	defer h.running.Store(false)

	if err := h.loadDevices(); err != nil {
		return err
	}
	routes := h.routes()
	leaves := h.Leaves()
	filters := subscriptions(leaves, h.group)
	if h.intake != nil {
		filters = nil // the intake delivers every leaf; MQTT only publishes
	}
	var hg mqttconn.HandlerGroup
	var pub publishFunc
	onMessage := func(_ mqtt.Client, m mqtt.Message) {
		if !hg.Enter() {
			return
		}
		defer hg.Leave()
		h.dispatch(ctx, routes, pub, m.Topic(), m.Payload())
	}
	rot := h.link.Rotator("-", h.log)
	opts := h.link.Options().
		SetReconnectingHandler(rot.Reconnecting).
		// A clean session: a persistent one would make the broker queue
		// for HQ while it is away, which nothing needs (devices re-send
		// until answered) and which has hurt (a stalled session queue on a
		// dead RabbitMQ node, a panic in paho's session resume).
		SetCleanSession(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			if !hg.Enter() {
				return
			}
			defer hg.Leave()
			if len(filters) > 0 {
				if err := mqttconn.Subscribe(ctx, h.clk, rot, c, filters, onMessage); err != nil {
					h.log.Error("cannot subscribe to the devices' topics", "topics", len(filters), "broker", h.link.Broker, "client_id", rot.ClientID(), "err", err)
					return
				}
			}
			h.log.Info("HQ connected to broker", "broker", h.link.Broker, "client_id", rot.ClientID(), "shared_group", h.group, "topics", len(filters))
			h.readyOnce.Do(func() { close(h.ready) })
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			h.log.Warn("HQ lost broker connection", "broker", h.link.Broker, "err", err)
		})
	// A message whose topic paho matches to no filter (e.g. through a
	// $share filter) is routed too.
	opts.SetDefaultPublishHandler(onMessage)
	c := mqtt.NewClient(opts)
	pub = publisher(c, h.clk)
	c.Connect() // with ConnectRetry the token completes only once connected; OnConnect reports it

	err := h.runIntake(ctx, leaves, func(ctx context.Context, topic string, payload []byte) bool {
		if !hg.Enter() {
			return false
		}
		defer hg.Leave()
		h.dispatch(ctx, routes, pub, topic, payload)
		return true
	})
	c.Disconnect(mqttconn.DisconnectQuiesce)
	hg.CloseAndWait()
	h.acks.wait()
	h.log.Info("HQ link stopped", "broker", h.link.Broker)
	return err
}

// runIntake runs h.intake for leaves with handle until ctx ends, or only
// waits for ctx without one. An intake that fails ends Run with its error.
func (h *Service) runIntake(ctx context.Context, leaves Leaves, handle func(ctx context.Context, topic string, payload []byte) bool) error {
	if h.intake == nil {
		<-ctx.Done()
		return nil
	}
	if err := h.intake.Run(ctx, leaves, handle); err != nil {
		return fmt.Errorf("HQ %s: intake: %w", h.path, err)
	}
	return nil
}

// dispatch hands one device message to its route, after the checks every
// message passes (a known topic, the payload size).
func (h *Service) dispatch(ctx context.Context, routes map[proto.Leaf]route, pub publishFunc, topic string, payload []byte) {
	site, device, leaf, err := proto.ParseTopic(topic)
	r, ok := routes[leaf]
	if err != nil || !ok {
		h.metrics.refused.WithLabelValues(refusedUnexpectedTopic).Inc()
		h.log.Warn("message on an unexpected topic dropped", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	if n, limit := len(payload), maxPayload(leaf); limit > 0 && n > limit {
		h.refuse(ctx, site, device, refusedTooLarge, fmt.Sprintf("%s payload of %d bytes, max %d", leaf, n, limit))
		return
	}
	r(ctx, pub, topic, payload)
}

// handleEvents stores one events message and hands the device's ack to
// h.acks, which publishes it without holding up the handler: the events
// are committed before, so an ack lost on the way only makes the device
// send the batch again, which HQ drops as a duplicate and acknowledges.
func (h *Service) handleEvents(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	site, device, ack, err := h.ingest(ctx, topic, payload)
	if err != nil || ack == 0 {
		return
	}
	h.acks.send(ctx, pub, proto.AckTopic(site, device), ack)
}

// Ingest stores an events message as received on topic and returns the
// sequence number to acknowledge to its device: the highest up to which HQ
// holds every event of that device (0: none yet, send no ack). A malformed
// message (ErrMalformed) is logged with its topic and stores nothing. Run
// calls Ingest for every message; it is exported for other transports and
// tests.
func (h *Service) Ingest(topic string, payload []byte) (ack uint64, err error) {
	_, _, ack, err = h.ingest(context.Background(), topic, payload)
	return ack, err
}

// ingest is Ingest, also returning the site and device. A message beyond
// the device's limits is refused with an error wrapping ErrLimited.
func (h *Service) ingest(ctx context.Context, topic string, payload []byte) (site, device string, ack uint64, err error) {
	var b proto.Batch
	site, device, err = proto.ParseEventsTopic(topic)
	switch {
	case err != nil:
	case device == SystemDevice:
		err = fmt.Errorf("%w: %w: device name %s is HQ's own", proto.ErrMalformed, errWrongDevice, SystemDevice)
	default:
		b, err = proto.DecodeBatch(payload)
		if err == nil && (b.Site != site || b.Device != device) {
			err = fmt.Errorf("%w: %w: payload is from %s/%s but topic names %s/%s", proto.ErrMalformed, errWrongDevice, b.Site, b.Device, site, device)
		}
	}
	if err != nil {
		h.metrics.refused.WithLabelValues(refusedReason(err)).Inc()
		h.log.Warn("rejected events message", "topic", topic, "bytes", len(payload), "err", err)
		return "", "", 0, err
	}
	first, last := b.Events[0].Seq, b.Events[len(b.Events)-1].Seq
	reason, detail, err := h.limits.admit(site, device, first, last, len(payload))
	if err != nil {
		err = fmt.Errorf("check limits of %s: %w", topic, err)
		h.metrics.refused.WithLabelValues(refusedStoreError).Inc()
		h.log.Error("cannot check limits; the device will send again", "topic", topic, "err", err)
		return "", "", 0, err
	}
	if reason != "" {
		h.refuse(ctx, site, device, reason, detail)
		return "", "", 0, fmt.Errorf("events from %s: %w: %s: %s", topic, ErrLimited, reason, detail)
	}
	return h.store(topic, site, device, b.Events)
}

// storeReq is one events message waiting to be stored.
type storeReq struct {
	topic string
	batch EventBatch
	res   BatchResult // result
	err   error
	done  chan struct{} // closed once committed (or failed)
}

// store saves evs of one device, skipping those already held, and returns
// the new acknowledgement point once they are committed.
//
// Messages handled at the same time share one transaction (group commit):
// the first caller commits every message queued so far, in rounds until
// none is left, while the others wait for their round. Each caller still
// returns, and acks, only after its own events are committed.
func (h *Service) store(topic, site, device string, evs []proto.Event) (string, string, uint64, error) {
	// Encode outside the transaction: handlers do it in parallel, and the
	// writer holds the store's lock only to put.
	b, err := NewEventBatch(site, device, h.clk.Now().UTC(), evs)
	if err != nil {
		err = fmt.Errorf("store events from %s: %w", topic, err)
		h.log.Error("cannot store events", "topic", topic, "err", err)
		return "", "", 0, err
	}
	req := &storeReq{topic: topic, batch: b, done: make(chan struct{})}
	h.commitMu.Lock()
	h.pending = append(h.pending, req)
	if h.committing {
		h.commitMu.Unlock()
		<-req.done
	} else {
		h.committing = true
		for len(h.pending) > 0 {
			reqs := h.pending
			h.pending = nil
			h.commitMu.Unlock()
			h.commit(reqs)
			h.commitMu.Lock()
		}
		h.committing = false
		h.commitMu.Unlock()
	}
	if req.err != nil {
		return "", "", 0, req.err
	}
	h.limits.stored(site, device, req.res.Ack)
	return site, device, req.res.Ack, nil
}

// commit stores reqs in one transaction and completes each.
func (h *Service) commit(reqs []*storeReq) {
	start := h.clk.Now()
	batches := make([]EventBatch, len(reqs))
	for i, r := range reqs {
		batches[i] = r.batch
	}
	res, err := h.st.StoreEvents(context.Background(), batches)
	if err == nil {
		for i, r := range reqs {
			r.res = res[i]
		}
	}
	h.metrics.committed(reqs, h.clk.Now().Sub(start), err)
	h.mu.Lock()
	fn := h.onEvent
	h.mu.Unlock()
	for _, r := range reqs {
		if err != nil {
			r.err = fmt.Errorf("store %d events from %s in %s: %w", len(r.batch.Events), r.topic, h.path, err)
			h.log.Error("cannot store events; the device will send again", "topic", r.topic, "err", r.err)
		} else {
			evs := r.batch.Events
			h.log.Debug("stored events", "topic", r.topic, "first_seq", evs[0].Seq, "last_seq", evs[len(evs)-1].Seq,
				"new", len(r.res.Added), "duplicates", r.res.Dups, "ack", r.res.Ack, "group", len(reqs))
			if fn != nil {
				for _, ev := range r.res.Added {
					fn(r.batch.Site, r.batch.Device, ev)
				}
			}
		}
		close(r.done)
	}
}

// Events returns the stored events of one device in sequence order,
// including any held beyond a gap.
func (h *Service) Events(site, device string) ([]proto.Event, error) {
	return h.st.Events(context.Background(), site, device)
}

// Acked returns the highest sequence number up to which HQ holds every
// event of the device (what it acknowledges), 0 for an unknown device.
func (h *Service) Acked(site, device string) (uint64, error) {
	return h.st.Acked(context.Background(), site, device)
}

// Count returns how many events HQ stores, over all devices.
func (h *Service) Count() (int, error) {
	return h.st.Count(context.Background())
}

// Close closes the store. Call it after Run has returned.
func (h *Service) Close() error {
	var merr error
	if h.ownMarks {
		merr = h.marks.Close()
	}
	if err := h.st.Close(); err != nil {
		return err
	}
	return merr
}
