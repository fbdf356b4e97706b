package hq

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Store file layout (bbolt):
//
//	meta/format                  = "tobira-hq-v1"
//	meta/count                   = 8-byte big-endian: events stored, all devices
//	devices/<site>/<device>/acked = 8-byte big-endian: highest contiguous seq
//	devices/<site>/<device>/events/<seq> = JSON Event, keyed by 8-byte big-endian seq
//
// (<site>/<device> is one bucket name; names cannot contain '/'.)
var (
	bucketDevices = []byte("devices")
	bucketEvents  = []byte("events")
	keyCount      = []byte("count")
	keyAcked      = []byte("acked")
	hqFormat      = []byte("tobira-hq-v1")
)

// Config configures a Service. Path is required; Broker is required for
// Run.
type Config struct {
	// Broker is the paho broker URL, e.g. "tcp://127.0.0.1:1883".
	Broker string
	// ClientID is the MQTT client ID; default "tobira-hq". HQ uses a
	// persistent session, so the broker queues events while HQ is away.
	ClientID string
	// Path is the bbolt file that stores events.
	Path string
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
	// Empty: no resending, no drift.
	Spool string
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
	// Clock times waits on the broker; default clock.System{}.
	Clock clock.Clock
	// Logger receives HQ's logs; default slog.Default().
	Logger *slog.Logger
}

// settings returns c's broker settings, with clientID when c names none.
func (c Config) settings(clientID string) mqttconn.Settings {
	return mqttconn.Settings{
		Broker:       c.Broker,
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
// The bbolt store is the spine's stand-in for a real database.
type Service struct {
	db      *bolt.DB
	path    string
	spool   string
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

	mu      sync.Mutex
	onEvent func(site, device string, ev proto.Event)

	commitMu   sync.Mutex
	pending    []*storeReq // messages waiting for the next group commit
	committing bool        // a caller is committing pending

	ready     chan struct{} // closed once subscribed for the first time
	readyOnce sync.Once
}

// Ready returns a channel that is closed once Run has subscribed to the
// devices' topics for the first time: from then on the broker keeps
// (persistent session) what devices publish for HQ, also while HQ is away.
// Devices that publish before that moment are served anyway, but events
// the broker had no subscriber for wait for the device's ack timeout.
func (h *Service) Ready() <-chan struct{} { return h.ready }

// Open opens (or creates) HQ's event store at cfg.Path. It does not
// connect; Run does.
func Open(cfg Config) (*Service, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: HQ needs a store path", ErrConfig)
	}
	if cfg.Broker != "" {
		if err := mqttconn.CheckBrokerURL(cfg.Broker); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if cfg.Key != nil && len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: HQ key is %d bytes, want an Ed25519 private key", ErrConfig, len(cfg.Key))
	}
	// The map freelist finds free pages in a large store faster (it
	// lives in memory only; the file format is the same).
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: boltfile.OpenTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open HQ store %s: %w", cfg.Path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return boltfile.Init(tx, hqFormat, bucketDevices, bucketStatus, bucketResults)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open HQ store %s: %w", cfg.Path, err)
	}
	clk := cmp.Or(cfg.Clock, clock.Clock(clock.System{}))
	marks, ownMarks := cfg.Marks, false
	if marks == nil {
		if marks, err = OpenBoltMarks(marksPath(cfg.Path), clk.Now); err != nil {
			db.Close()
			return nil, err
		}
		ownMarks = true
	}
	return &Service{
		db:          db,
		path:        cfg.Path,
		spool:       cfg.Spool,
		ready:       make(chan struct{}),
		link:        cfg.settings("tobira-hq"),
		clk:         clk,
		log:         cmp.Or(cfg.Logger, slog.Default()),
		relay:       newRelay(cfg.Key),
		marks:       marks,
		ownMarks:    ownMarks,
		rules:       cfg.TicketRules,
		skew:        cmp.Or(cfg.MarkSkew, proto.DefaultMarkSkew),
		enrollments: cfg.Enrollments,
	}, nil
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
// status, results, chunk requests and ticket marks, and its enrollments
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
	filters := make(map[string]byte, len(routes))
	for leaf := range routes {
		filters[proto.Subscription(leaf)] = 1
	}
	var hg mqttconn.HandlerGroup
	var pub publishFunc
	onMessage := func(_ mqtt.Client, m mqtt.Message) {
		if !hg.Enter() {
			return
		}
		defer hg.Leave()
		_, _, leaf, err := proto.ParseTopic(m.Topic())
		r, ok := routes[leaf]
		if err != nil || !ok {
			h.log.Warn("message on an unexpected topic dropped", "topic", m.Topic(), "bytes", len(m.Payload()), "err", err)
			return
		}
		r(ctx, pub, m.Topic(), m.Payload())
	}
	opts := h.link.Options().
		SetCleanSession(false). // the broker keeps our subscription and queues events while we are away
		SetOnConnectHandler(func(c mqtt.Client) {
			if !hg.Enter() {
				return
			}
			defer hg.Leave()
			// Subscribe on every connection: the broker may have lost the
			// session (restart without persistence).
			if err := mqttconn.WaitToken(ctx, h.clk, c.SubscribeMultiple(filters, onMessage), mqttconn.DefaultTokenTimeout); err != nil {
				h.log.Error("cannot subscribe to the devices' topics", "topics", len(filters), "broker", h.link.Broker, "err", err)
				return
			}
			h.log.Info("HQ connected to broker", "broker", h.link.Broker, "client_id", h.link.ClientID)
			h.readyOnce.Do(func() { close(h.ready) })
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			h.log.Warn("HQ lost broker connection", "broker", h.link.Broker, "err", err)
		})
	// Messages queued for our persistent session can arrive before
	// OnConnect subscribes; route them too.
	opts.SetDefaultPublishHandler(onMessage)
	c := mqtt.NewClient(opts)
	pub = publisher(c, h.clk)
	c.Connect() // with ConnectRetry the token completes only once connected; OnConnect reports it

	<-ctx.Done()
	c.Disconnect(mqttconn.DisconnectQuiesce)
	hg.CloseAndWait()
	h.log.Info("HQ link stopped", "broker", h.link.Broker)
	return nil
}

// handleEvents stores one events message and publishes the device's ack.
func (h *Service) handleEvents(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	site, device, ack, err := h.ingest(topic, payload)
	if err != nil || ack == 0 {
		return
	}
	ackTopic := proto.AckTopic(site, device)
	if err := pub(ctx, ackTopic, proto.EncodeAck(ack)); err != nil {
		h.log.Warn("cannot publish ack; the device will send again", "topic", ackTopic, "seq", ack, "err", err)
	}
}

// Ingest stores an events message as received on topic and returns the
// sequence number to acknowledge to its device: the highest up to which HQ
// holds every event of that device (0: none yet, send no ack). A malformed
// message (ErrMalformed) is logged with its topic and stores nothing. Run
// calls Ingest for every message; it is exported for other transports and
// tests.
func (h *Service) Ingest(topic string, payload []byte) (ack uint64, err error) {
	_, _, ack, err = h.ingest(topic, payload)
	return ack, err
}

// ingest is Ingest, also returning the site and device.
func (h *Service) ingest(topic string, payload []byte) (site, device string, ack uint64, err error) {
	site, device, err = proto.ParseEventsTopic(topic)
	if err == nil {
		var b proto.Batch
		b, err = proto.DecodeBatch(payload)
		switch {
		case err != nil:
		case b.Site != site || b.Device != device:
			err = fmt.Errorf("%w: payload is from %s/%s but topic names %s/%s", proto.ErrMalformed, b.Site, b.Device, site, device)
		default:
			return h.store(topic, site, device, b.Events)
		}
	}
	h.log.Warn("rejected events message", "topic", topic, "bytes", len(payload), "err", err)
	return "", "", 0, err
}

// storeReq is one events message waiting to be stored.
type storeReq struct {
	topic, site, device string
	evs                 []proto.Event
	vals                [][]byte      // evs encoded as stored, made before the transaction
	ack                 uint64        // result: the device's new ack point
	added               []proto.Event // result: events not held before
	dups                int           // result: events already held
	err                 error
	done                chan struct{} // closed once committed (or failed)
}

// store saves evs of one device, skipping those already held, and returns
// the new acknowledgement point once they are committed (fsync'd).
//
// Messages handled at the same time share one transaction (group commit):
// the first caller commits every message queued so far, in rounds until
// none is left, while the others wait for their round. Each caller still
// returns, and acks, only after its own events are on disk.
func (h *Service) store(topic, site, device string, evs []proto.Event) (string, string, uint64, error) {
	req := &storeReq{topic: topic, site: site, device: device, evs: evs, vals: make([][]byte, len(evs)), done: make(chan struct{})}
	// Encode outside the transaction: handlers do it in parallel, and the
	// writer holds bbolt's lock only to put.
	for i, ev := range evs {
		v, err := json.Marshal(ev)
		if err != nil {
			err = fmt.Errorf("store events from %s: encode event seq %d: %w", topic, ev.Seq, err)
			h.log.Error("cannot store events", "topic", topic, "err", err)
			return "", "", 0, err
		}
		req.vals[i] = v
	}
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
	return site, device, req.ack, nil
}

// commit stores reqs in one transaction and completes each.
func (h *Service) commit(reqs []*storeReq) {
	err := h.db.Update(func(tx *bolt.Tx) error {
		added := 0
		for _, r := range reqs {
			r.added, r.dups = r.added[:0], 0 // bbolt may not retry, but stay correct if it did
			if err := h.storeTx(tx, r); err != nil {
				return err
			}
			added += len(r.added)
		}
		meta := tx.Bucket(boltfile.MetaBucket)
		return meta.Put(keyCount, boltfile.SeqKey(boltfile.SeqOf(meta.Get(keyCount))+uint64(added)))
	})
	h.mu.Lock()
	fn := h.onEvent
	h.mu.Unlock()
	for _, r := range reqs {
		if err != nil {
			r.err = fmt.Errorf("store %d events from %s in %s: %w", len(r.evs), r.topic, h.path, err)
			h.log.Error("cannot store events; the device will send again", "topic", r.topic, "err", r.err)
		} else {
			h.log.Debug("stored events", "topic", r.topic, "first_seq", r.evs[0].Seq, "last_seq", r.evs[len(r.evs)-1].Seq,
				"new", len(r.added), "duplicates", r.dups, "ack", r.ack, "group", len(reqs))
			if fn != nil {
				for _, ev := range r.added {
					fn(r.site, r.device, ev)
				}
			}
		}
		close(r.done)
	}
}

// storeTx stores the events of r in tx and sets r's results.
func (h *Service) storeTx(tx *bolt.Tx, r *storeReq) error {
	dev, err := tx.Bucket(bucketDevices).CreateBucketIfNotExists([]byte(r.site + "/" + r.device))
	if err != nil {
		return fmt.Errorf("create device bucket: %w", err)
	}
	held, err := dev.CreateBucketIfNotExists(bucketEvents)
	if err != nil {
		return fmt.Errorf("create events bucket: %w", err)
	}
	// Sequence numbers mostly come in order: fill pages fully rather than
	// splitting them in half.
	held.FillPercent = 0.9
	for i, ev := range r.evs {
		v := r.vals[i]
		k := boltfile.SeqKey(ev.Seq)
		if old := held.Get(k); old != nil {
			r.dups++
			if !bytes.Equal(old, v) {
				h.log.Warn("duplicate seq with different content; keeping the first", "topic", r.topic, "seq", ev.Seq)
			}
			continue
		}
		if err := held.Put(k, v); err != nil {
			return fmt.Errorf("store event seq %d: %w", ev.Seq, err)
		}
		r.added = append(r.added, ev)
	}
	ack := boltfile.SeqOf(dev.Get(keyAcked))
	for ack < ^uint64(0) && held.Get(boltfile.SeqKey(ack+1)) != nil {
		ack++
	}
	if err := dev.Put(keyAcked, boltfile.SeqKey(ack)); err != nil {
		return fmt.Errorf("store ack point: %w", err)
	}
	r.ack = ack
	return nil
}

// Events returns the stored events of one device in sequence order,
// including any held beyond a gap.
func (h *Service) Events(site, device string) ([]proto.Event, error) {
	var evs []proto.Event
	err := h.db.View(func(tx *bolt.Tx) error {
		dev := tx.Bucket(bucketDevices).Bucket([]byte(site + "/" + device))
		if dev == nil {
			return nil
		}
		return dev.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var ev proto.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode event key %x: %w", k, err)
			}
			evs = append(evs, ev)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read events of %s/%s from %s: %w", site, device, h.path, err)
	}
	return evs, nil
}

// Acked returns the highest sequence number up to which HQ holds every
// event of the device (what it acknowledges), 0 for an unknown device.
func (h *Service) Acked(site, device string) (uint64, error) {
	var seq uint64
	err := h.db.View(func(tx *bolt.Tx) error {
		if dev := tx.Bucket(bucketDevices).Bucket([]byte(site + "/" + device)); dev != nil {
			seq = boltfile.SeqOf(dev.Get(keyAcked))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read ack point of %s/%s from %s: %w", site, device, h.path, err)
	}
	return seq, nil
}

// Count returns how many events HQ stores, over all devices.
func (h *Service) Count() (int, error) {
	var n uint64
	err := h.db.View(func(tx *bolt.Tx) error {
		n = boltfile.SeqOf(tx.Bucket(boltfile.MetaBucket).Get(keyCount))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count events in %s: %w", h.path, err)
	}
	return int(n), nil
}

// Close closes the store. Call it after Run has returned.
func (h *Service) Close() error {
	var merr error
	if h.ownMarks {
		merr = h.marks.Close()
	}
	if err := h.db.Close(); err != nil {
		return fmt.Errorf("close HQ store %s: %w", h.path, err)
	}
	return merr
}
