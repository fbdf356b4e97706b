package sync

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/atomicfile"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// ReleaseAgent defaults.
const (
	// DefaultReleaseRequestTimeout is how long the agent waits for HQ's
	// answer to one chunk request before it counts the fetch as failed
	// (the download then retries, resuming at the same byte).
	DefaultReleaseRequestTimeout = 30 * time.Second
	// DefaultReleaseRetryInterval is the pause before the agent tries an
	// accepted offer again after a failed download or a refused switch
	// (controller busy, outside the maintenance window).
	DefaultReleaseRetryInterval = time.Minute
	// DefaultReleaseReportInterval is how often the agent publishes its
	// release report when nothing else prompts it.
	DefaultReleaseReportInterval = 5 * time.Minute
)

// ReleaseInstaller is what a ReleaseAgent needs of the device's updater;
// *firmware.Updater implements it.
type ReleaseInstaller interface {
	// Check verifies a release envelope and applies the device's policy.
	Check(ctx context.Context, envelope []byte) (firmware.Manifest, error)
	// Stage downloads (resuming) and installs the binary into its slot.
	Stage(ctx context.Context, m firmware.Manifest, f firmware.ChunkFetcher) error
	// Activate switches to a staged release (refused while busy or
	// outside the maintenance window).
	Activate(ctx context.Context, m firmware.Manifest) error
	// Status reports the update root's releases and last trial result.
	Status() (firmware.Status, error)
}

// ReleaseConfig configures a ReleaseAgent besides its link settings.
type ReleaseConfig struct {
	// Installer checks, stages and activates releases. Required.
	Installer ReleaseInstaller
	// StateFile is where the agent remembers the last offer it accepted
	// and its outcome (JSON, written atomically), so that a replayed
	// older offer is refused and a trial's end is reported once, also
	// across restarts. Required.
	StateFile string
	// Groups are the device's groups; the agent also takes offers
	// published to ReleaseGroupTopic of each.
	Groups []string
	// RequestTimeout bounds the wait for one chunk; default
	// DefaultReleaseRequestTimeout.
	RequestTimeout time.Duration
	// RetryInterval is the pause before an accepted offer is tried again;
	// default DefaultReleaseRetryInterval.
	RetryInterval time.Duration
	// ReportInterval is how often the report is published unprompted;
	// default DefaultReleaseReportInterval.
	ReportInterval time.Duration
	// OnActivated is called after a release was activated: the controller
	// must stop (relays safe) and the process exit 0 so that systemd starts
	// the new release. It runs on the agent's worker and must not wait for
	// Run to return (cancel Run's context and return instead). nil: nothing
	// is called (the next restart runs it).
	OnActivated func(m firmware.Manifest)
}

// ReleaseAgent is the device end of firmware delivery over MQTT. It takes
// signed release offers (for the device, or for one of its groups),
// verifies them with the pinned HQ keys and the release manifest with the
// installer's pinned release keys, fetches the binary from HQ in chunks
// (firmware.ChunkFetcher over request/response messages, resuming after a
// disconnect, at the installer's bounded rate), activates it when the
// controller is idle, and reports every outcome: a Result on the device's
// result topic and a retained ReleaseReport.
//
// The agent keeps its own MQTT connection (client ID EdgeConfig.ClientID +
// "/release") next to the Edge's, with the same broker, credentials and
// topic tree: bulk chunks then never queue in front of the event stream's
// acks and commands on one TCP connection.
type ReleaseAgent struct {
	link     mqttconn.Settings
	site     string
	device   string
	groups   []string
	v        *signed.Verifier
	inst     ReleaseInstaller
	state    string
	clk      clock.Clock
	log      *slog.Logger
	timeout  time.Duration
	retry    time.Duration
	interval time.Duration
	onActive func(firmware.Manifest)
	running  atomic.Bool

	offers chan []byte   // newest offer envelope, capacity 1
	kick   chan struct{} // asks for a report, capacity 1
	up     atomic.Bool
	fetch  *syncFetch // asks HQ for the offer in force on every connection

	mu      sync.Mutex
	c       mqtt.Client
	rec     offerRecord
	waiting map[fetchKey]chan []byte
}

// offerRecord is what the agent remembers in its state file.
type offerRecord struct {
	// Accepted is the issue time of the last offer accepted.
	Accepted time.Time `json:"accepted,omitzero"`
	// Outcome is the outcome of the last offer handled.
	Outcome *proto.OfferOutcome `json:"outcome,omitempty"`
	// Concluded is set once the trial of an installed offer has been
	// reported with a Result.
	Concluded bool `json:"concluded,omitempty"`
}

// fetchKey names one outstanding chunk request.
type fetchKey struct {
	sha    string
	offset int64
}

// NewReleaseAgent checks its configuration and loads its state file. It
// takes the link settings (Broker, Site, Device, ClientID, TLS, Username,
// Password, ConnectRetry, MaxReconnect, Keys, Clock, Logger) from edge;
// edge.Keys, the pinned HQ keys, are required. It does not connect; Run
// does.
func NewReleaseAgent(edge EdgeConfig, rc ReleaseConfig) (*ReleaseAgent, error) {
	if err := edge.checkLink(); err != nil {
		return nil, err
	}
	for _, g := range rc.Groups {
		if err := proto.CheckName(g); err != nil {
			return nil, fmt.Errorf("%w: release group: %w", ErrConfig, err)
		}
	}
	if rc.Installer == nil || rc.StateFile == "" {
		return nil, fmt.Errorf("%w: release agent needs an installer and a state file", ErrConfig)
	}
	if rc.RequestTimeout < 0 || rc.RetryInterval < 0 || rc.ReportInterval < 0 {
		return nil, fmt.Errorf("%w: release agent intervals must not be negative", ErrConfig)
	}
	v, err := signed.NewVerifier(edge.Keys...)
	if err != nil {
		return nil, fmt.Errorf("%w: release offers need pinned HQ keys: %w", ErrConfig, err)
	}
	log := cmp.Or(edge.Logger, slog.Default()).With("site", edge.Site, "device", edge.Device)
	a := &ReleaseAgent{
		link: edge.settings("/release"),
		site: edge.Site, device: edge.Device, groups: slices.Clone(rc.Groups),
		v: v, inst: rc.Installer, state: rc.StateFile,
		clk:      cmp.Or(edge.Clock, clock.Clock(clock.System{})),
		log:      log,
		timeout:  cmp.Or(rc.RequestTimeout, DefaultReleaseRequestTimeout),
		retry:    cmp.Or(rc.RetryInterval, DefaultReleaseRetryInterval),
		interval: cmp.Or(rc.ReportInterval, DefaultReleaseReportInterval),
		onActive: rc.OnActivated,
		offers:   make(chan []byte, 1),
		kick:     make(chan struct{}, 1),
		waiting:  map[fetchKey]chan []byte{},
	}
	if err := a.loadRecord(); err != nil {
		return nil, err
	}
	a.fetch = &syncFetch{pub: agentPublisher{a}, up: a.up.Load, clk: a.clk, log: log, site: a.site, device: a.device,
		ask: &askBackoff{clk: a.clk, first: a.timeout}, kick: make(chan struct{}, 1), want: []string{proto.WantRelease},
		have: func() (proto.SyncGet, error) {
			g := proto.SyncGet{Groups: a.groups}
			// An offer still being worked on is asked for again: after a
			// restart it is taken up where it stopped.
			if out := a.current().Outcome; out != nil && (out.State == proto.OfferInstalled || out.State == proto.OfferRefused) {
				g.Release = out.ID
			}
			return g, nil
		},
		release: func(_ context.Context, env []byte) { a.deliver(env) },
	}
	return a, nil
}

// agentPublisher is the publisher of the agent's connection.
type agentPublisher struct{ a *ReleaseAgent }

// publish implements publisher.
func (p agentPublisher) publish(ctx context.Context, topic string, payload []byte) error {
	return p.a.publish(ctx, topic, payload, false)
}

// loadRecord reads the state file; a missing file is an empty record.
func (a *ReleaseAgent) loadRecord() error {
	data, err := os.ReadFile(a.state)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read release agent state %s: %w", a.state, err)
	}
	if err := json.Unmarshal(data, &a.rec); err != nil {
		return fmt.Errorf("%w: release agent state %s: %w", ErrBadFile, a.state, err)
	}
	return nil
}

// saveRecord writes rec to the state file atomically; called with mu held.
func (a *ReleaseAgent) saveRecord(rec offerRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode release agent state: %w", err)
	}
	if err := atomicfile.Write(a.state, data, 0o600); err != nil {
		return fmt.Errorf("write release agent state %s: %w", a.state, err)
	}
	a.rec = rec
	return nil
}

// Refresh asks the agent to publish its report soon, e.g. right after the
// release on trial committed. It never blocks.
func (a *ReleaseAgent) Refresh() { wake(a.kick) }

// Run connects (retrying, reconnecting after a loss), subscribes to the
// device's release and chunk topics and its groups' release topics, and
// handles offers until ctx ends. It returns nil when ctx ends.
func (a *ReleaseAgent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return fmt.Errorf("release agent %s/%s: %w", a.site, a.device, ErrRunning)
	}
	defer a.running.Store(false)
	var hg mqttconn.HandlerGroup
	filters := map[string]byte{proto.ReleaseTopic(a.site, a.device): 1, proto.ReleaseChunkTopic(a.site, a.device): 1,
		proto.SyncTopic(a.site, a.device): 1}
	for _, g := range a.groups {
		filters[proto.ReleaseGroupTopic(a.site, g)] = 1
	}
	onMessage := func(_ mqtt.Client, m mqtt.Message) {
		if !hg.Enter() {
			return
		}
		defer hg.Leave()
		switch t := m.Topic(); t {
		case proto.ReleaseChunkTopic(a.site, a.device):
			a.onChunk(m.Payload())
		case proto.SyncTopic(a.site, a.device):
			a.fetch.onAnswer(ctx, t, m.Payload())
		default:
			if len(m.Payload()) == 0 {
				return // a cleared retained offer
			}
			a.deliver(m.Payload())
		}
	}
	rot := a.link.Rotator("/", a.log)
	opts := a.link.Options().
		SetCleanSession(true).
		SetReconnectingHandler(rot.Reconnecting).
		SetOnConnectHandler(func(c mqtt.Client) {
			if !hg.Enter() {
				return
			}
			defer hg.Leave()
			if err := mqttconn.Subscribe(ctx, a.clk, rot, c, filters, onMessage); err != nil {
				a.log.Error("cannot subscribe to release topics; offers will be missed until reconnect", "broker", a.link.Broker, "client_id", rot.ClientID(), "err", err)
			}
			a.up.Store(true)
			a.Refresh()
			a.fetch.connected(ctx)
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			a.up.Store(false)
			a.log.Warn("release link lost its broker connection", "broker", a.link.Broker, "err", err)
		})
	c := mqtt.NewClient(opts)
	a.mu.Lock()
	a.c = c
	a.mu.Unlock()
	c.Connect() // with ConnectRetry the token completes only once connected

	var bg sync.WaitGroup
	bg.Go(func() { a.work(ctx) })
	bg.Go(func() { a.reportLoop(ctx) })
	bg.Go(func() { a.fetch.run(ctx) })
	bg.Wait()
	c.Disconnect(mqttconn.DisconnectQuiesce)
	hg.CloseAndWait()
	a.up.Store(false)
	return nil
}

// deliver queues env as the newest offer, replacing one not yet taken.
func (a *ReleaseAgent) deliver(env []byte) {
	env = slices.Clone(env)
	for {
		select {
		case a.offers <- env:
			return
		default:
		}
		select {
		case <-a.offers:
		default:
		}
	}
}

// publish sends one QoS 1 message and waits for the broker's PUBACK.
func (a *ReleaseAgent) publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	a.mu.Lock()
	c := a.c
	a.mu.Unlock()
	if c == nil {
		return errors.New("release link not started")
	}
	return mqttconn.WaitToken(ctx, a.clk, c.Publish(topic, 1, retained, payload), a.timeout)
}

// work handles offers one at a time until ctx ends.
func (a *ReleaseAgent) work(ctx context.Context) {
	var next []byte
	for {
		if next == nil {
			select {
			case <-ctx.Done():
				return
			case next = <-a.offers:
			}
		}
		next = a.handle(ctx, next)
	}
}

// handle processes one offer envelope. It returns a newer offer that
// arrived while it waited, or nil.
func (a *ReleaseAgent) handle(ctx context.Context, env []byte) []byte {
	now := a.clk.Now()
	o, err := proto.OpenReleaseOffer(a.v, env)
	if err == nil {
		err = a.addressed(o, now)
	}
	rec := a.current()
	if err != nil {
		a.finish(ctx, rec, proto.OfferOutcome{ID: o.ID, State: proto.OfferRefused}, err)
		return nil
	}
	if last := rec.Outcome; last != nil && last.ID == o.ID && (last.State == proto.OfferInstalled || last.State == proto.OfferRefused) {
		a.log.Debug("release offer handled before", "id", o.ID, "state", last.State)
		return nil
	}
	if (rec.Outcome == nil || rec.Outcome.ID != o.ID) && o.Issued.Before(rec.Accepted) {
		err := fmt.Errorf("%w: release offer %s issued %s, before the last accepted one (%s)",
			proto.ErrReplayed, o.ID, o.Issued.Format(time.RFC3339), rec.Accepted.Format(time.RFC3339))
		a.finish(ctx, rec, proto.OfferOutcome{ID: o.ID, State: proto.OfferRefused}, err)
		return nil
	}
	m, err := a.inst.Check(ctx, o.Manifest)
	out := proto.OfferOutcome{ID: o.ID, Version: m.Version}
	if errors.Is(err, firmware.ErrAlreadyInstalled) {
		a.log.Info("offered release already installed", "id", o.ID, "version", m.Version)
		out.State, out.Time = proto.OfferInstalled, a.clk.Now().UTC()
		a.record(offerRecord{Accepted: o.Issued, Outcome: &out, Concluded: rec.Concluded && rec.Outcome != nil && rec.Outcome.Version == m.Version})
		return nil
	}
	if err != nil {
		if pm, perr := firmware.PeekManifest(o.Manifest); perr == nil {
			out.Version = pm.Version // unverified: for the report only
		}
		rec.Accepted = o.Issued
		out.State = proto.OfferRefused
		a.finish(ctx, rec, out, err)
		return nil
	}
	a.log.Info("release offer accepted; fetching", "id", o.ID, "version", m.Version, "bytes", m.Size)
	rec = offerRecord{Accepted: o.Issued}
	out.State, out.Time = proto.OfferDownloading, a.clk.Now().UTC()
	a.record(offerRecord{Accepted: o.Issued, Outcome: &out})
	fetcher := &releaseFetcher{a: a, id: o.ID, sha: m.SHA256, max: o.ChunkSize}
	for {
		err := a.inst.Stage(ctx, m, fetcher)
		if err == nil {
			err = a.inst.Activate(ctx, m)
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err == nil:
			out.State = proto.OfferInstalled
			a.finish(ctx, rec, out, nil)
			if a.onActive != nil {
				a.onActive(m)
			}
			return nil
		case errors.Is(err, firmware.ErrBusy), errors.Is(err, firmware.ErrOutsideWindow), errors.Is(err, firmware.ErrTrialPending):
			if last := a.current().Outcome; last == nil || last.State != proto.OfferWaiting || last.Reason != firmware.RefusalReason(err) {
				out.State, out.Reason, out.Error, out.Time = proto.OfferWaiting, firmware.RefusalReason(err), err.Error(), a.clk.Now().UTC()
				a.log.Info("release staged; waiting to switch", "id", o.ID, "version", m.Version, "reason", out.Reason)
				a.record(offerRecord{Accepted: o.Issued, Outcome: &out})
			}
		case errors.Is(err, firmware.ErrHashMismatch), firmware.RefusalReason(err) == firmware.RefusedOther:
			out.State = proto.OfferFailed
			a.finish(ctx, rec, out, err)
		default:
			out.State = proto.OfferRefused
			a.finish(ctx, rec, out, err)
			return nil
		}
		if !a.clk.Now().Before(o.Expires) {
			out.State = proto.OfferRefused
			a.finish(ctx, rec, out, fmt.Errorf("%w: release offer %s expired at %s while waiting", proto.ErrExpired, o.ID, o.Expires.Format(time.RFC3339)))
			return nil
		}
		t := a.clk.NewTimer(a.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case env := <-a.offers:
			t.Stop()
			return env // a newer offer, or this one again after a reconnect
		case <-t.C():
		}
	}
}

// addressed checks that o is for this device and valid now.
func (a *ReleaseAgent) addressed(o proto.ReleaseOffer, now time.Time) error {
	switch {
	case o.Site != a.site || (o.Device != "" && o.Device != a.device) || (o.Group != "" && !slices.Contains(a.groups, o.Group)):
		return fmt.Errorf("%w: release offer %s is for site %s device %q group %q; this is %s/%s in groups %v",
			proto.ErrWrongDevice, o.ID, o.Site, o.Device, o.Group, a.site, a.device, a.groups)
	case !now.Before(o.Expires):
		return fmt.Errorf("%w: release offer %s expired at %s", proto.ErrExpired, o.ID, o.Expires.Format(time.RFC3339))
	}
	return nil
}

// current returns the agent's record.
func (a *ReleaseAgent) current() offerRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rec
}

// record stores rec (logging a failure) and publishes the report.
func (a *ReleaseAgent) record(rec offerRecord) {
	a.mu.Lock()
	err := a.saveRecord(rec)
	a.mu.Unlock()
	if err != nil {
		a.log.Error("cannot record release offer state", "err", err)
	}
	a.Refresh()
}

// finish records the outcome out of an offer (with err's reason), and
// publishes a Result for it. base holds the record fields to keep.
func (a *ReleaseAgent) finish(ctx context.Context, base offerRecord, out proto.OfferOutcome, err error) {
	out.Time = a.clk.Now().UTC()
	out.Reason, out.Error = "", ""
	status := proto.ResultDone
	if err != nil {
		out.Reason, out.Error = offerReason(err), err.Error()
		status = proto.ResultFailed
		if out.State == proto.OfferRefused {
			status = proto.ResultRefused
		}
		a.log.Warn("release offer not installed", "id", out.ID, "version", out.Version, "state", out.State, "reason", out.Reason, "err", err)
	} else {
		a.log.Info("release installed; restart to run it", "id", out.ID, "version", out.Version)
	}
	base.Outcome, base.Concluded = &out, false
	a.record(base)
	a.sendResult(ctx, proto.Result{ID: out.ID, Kind: proto.KindRelease, Site: a.site, Device: a.device, Status: status, Error: out.Error, Time: out.Time})
}

// sendResult publishes r on the device's result topic.
func (a *ReleaseAgent) sendResult(ctx context.Context, r proto.Result) {
	b, err := json.Marshal(r)
	if err == nil {
		err = a.publish(ctx, proto.ResultTopic(a.site, a.device), b, false)
	}
	if err != nil && ctx.Err() == nil {
		a.log.Warn("cannot publish release result", "id", r.ID, "status", r.Status, "err", err)
	}
}

// reportLoop publishes the report when connected, when asked and every
// interval, until ctx ends.
func (a *ReleaseAgent) reportLoop(ctx context.Context) {
	for {
		if !waitRound(ctx, a.clk, a.kick, a.interval) {
			return
		}
		if a.up.Load() {
			a.report(ctx)
		}
	}
}

// report publishes the retained release report, and the Result of an
// installed offer once its trial has ended.
func (a *ReleaseAgent) report(ctx context.Context) {
	st, err := a.inst.Status()
	if err != nil {
		a.log.Warn("cannot read firmware status for the release report", "err", err)
	}
	a.mu.Lock()
	rec := a.rec
	a.mu.Unlock()
	var concl *proto.Result
	if o := rec.Outcome; o != nil && o.State == proto.OfferInstalled && !rec.Concluded && st.Last != nil && st.Last.Version == o.Version && st.Pending == "" {
		r := proto.Result{ID: o.ID, Kind: proto.KindRelease, Site: a.site, Device: a.device, Status: proto.ResultDone, Time: a.clk.Now().UTC()}
		if st.Last.Outcome != firmware.OutcomeCommitted {
			r.Status, r.Error = proto.ResultFailed, fmt.Sprintf("release %s %s: %s", o.Version, st.Last.Outcome, st.Last.Reason)
		}
		concl = &r
	}
	rep := proto.ReleaseReport{Site: a.site, Device: a.device, Time: a.clk.Now().UTC(), Firmware: st, Offer: rec.Outcome}
	b, err := json.Marshal(rep)
	if err == nil {
		err = a.publish(ctx, proto.ReleaseReportTopic(a.site, a.device), b, true)
	}
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("cannot publish release report", "err", err)
		}
		return
	}
	if concl != nil {
		a.sendResult(ctx, *concl)
		a.mu.Lock()
		rec := a.rec
		rec.Concluded = true
		err := a.saveRecord(rec)
		a.mu.Unlock()
		if err != nil {
			a.log.Error("cannot record the end of a release trial", "err", err)
		}
		a.log.Info("release trial ended", "id", concl.ID, "status", concl.Status, "error", concl.Error)
	}
}

// onChunk hands a chunk to the Fetch waiting for it; others are dropped.
func (a *ReleaseAgent) onChunk(payload []byte) {
	sha, off, data, err := proto.DecodeReleaseChunk(payload)
	if err != nil {
		a.log.Warn("dropped release chunk", "err", err)
		return
	}
	a.mu.Lock()
	ch := a.waiting[fetchKey{sha, off}]
	a.mu.Unlock()
	if ch == nil {
		a.log.Debug("dropped release chunk nobody waits for", "sha256", sha, "offset", off)
		return
	}
	select {
	case ch <- data:
	default: // a duplicate
	}
}

// releaseFetcher is a firmware.ChunkFetcher that asks HQ for each piece of
// a binary over MQTT.
type releaseFetcher struct {
	a   *ReleaseAgent
	id  string
	sha string
	max int
}

// Fetch publishes a ReleaseGet for n bytes at offset (at most the offer's
// chunk size) and waits for the chunk. An empty chunk means offset is past
// the end (io.EOF).
func (f *releaseFetcher) Fetch(ctx context.Context, offset int64, n int) ([]byte, error) {
	n = min(n, f.max)
	if n <= 0 {
		return nil, nil
	}
	key := fetchKey{f.sha, offset}
	ch := make(chan []byte, 1)
	a := f.a
	a.mu.Lock()
	a.waiting[key] = ch
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.waiting, key)
		a.mu.Unlock()
	}()
	b, err := json.Marshal(proto.ReleaseGet{ID: f.id, SHA256: f.sha, Offset: offset, Length: n})
	if err != nil {
		return nil, fmt.Errorf("encode release request at offset %d: %w", offset, err)
	}
	if err := a.publish(ctx, proto.ReleaseGetTopic(a.site, a.device), b, false); err != nil {
		return nil, fmt.Errorf("ask HQ for %d bytes of release %s at offset %d: %w", n, f.sha, offset, err)
	}
	t := a.clk.NewTimer(a.timeout)
	defer t.Stop()
	select {
	case data := <-ch:
		if len(data) == 0 {
			return nil, io.EOF
		}
		if len(data) > n {
			data = data[:n]
		}
		return data, nil
	case <-t.C():
		return nil, fmt.Errorf("no chunk of release %s at offset %d from HQ within %v", f.sha, offset, a.timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("fetch release %s at offset %d: %w", f.sha, offset, ctx.Err())
	}
}

// errOfferReason maps an offer refusal to its Reason code.
func offerReason(err error) string {
	switch {
	case errors.Is(err, proto.ErrWrongDevice):
		return proto.OfferReasonWrongDevice
	case errors.Is(err, proto.ErrExpired):
		return proto.OfferReasonExpired
	case errors.Is(err, proto.ErrReplayed):
		return proto.OfferReasonReplayed
	case errors.Is(err, signed.ErrMalformed), errors.Is(err, signed.ErrWrongKind),
		errors.Is(err, signed.ErrUnknownKey), errors.Is(err, signed.ErrBadSignature), errors.Is(err, proto.ErrMalformed):
		return proto.OfferReasonSignature
	}
	return firmware.RefusalReason(err)
}
