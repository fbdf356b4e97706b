package hq

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/sync/proto"
)

// ReleaseServer is HQ's end of firmware delivery over MQTT: it publishes
// signed release offers to devices and groups, answers the devices' chunk
// requests from the release binaries it knows, and collects the devices'
// retained release reports and release results into a rollout view. It
// holds its own broker connection; run it next to the HQ service, for as
// long as devices download.
type ReleaseServer struct {
	c      mqtt.Client
	priv   ed25519.PrivateKey
	spool  Spool // nil: offers are only published, retained
	clk    clock.Clock
	log    *slog.Logger
	served atomic.Int64
	hg     mqttconn.HandlerGroup

	mu       sync.Mutex
	releases map[string]releaseFile         // by SHA-256
	reports  map[string]proto.ReleaseReport // by site/device
	results  map[string]proto.Result        // by offer id/site/device
	changed  chan struct{}                  // closed and replaced on every report or result
	lastSeen time.Time                      // when the last report or result arrived
	ready    chan struct{}                  // closed once subscribed
	readyOK  atomic.Bool
}

// releaseFile is a release binary the server can serve.
type releaseFile struct {
	path string
	m    firmware.Manifest
}

// DialReleaseServer connects to cfg.Broker (cfg.Path is not used),
// subscribes to every device's chunk requests, release reports and
// results, and indexes the releases in store (store/<version>/release.json
// with store/<version>/tobira, as `tobira-release release publish` lays
// them out; "" for none). priv signs the offers.
func DialReleaseServer(ctx context.Context, cfg Config, priv ed25519.PrivateKey, store string) (*ReleaseServer, error) {
	if err := cfg.checkBrokers(); err != nil {
		return nil, err
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: release server needs an Ed25519 private key", ErrConfig)
	}
	spool, err := cfg.spool()
	if err != nil {
		return nil, err
	}
	s := &ReleaseServer{
		priv:     priv,
		spool:    spool,
		clk:      cmp.Or(cfg.Clock, clock.Clock(clock.System{})),
		log:      cmp.Or(cfg.Logger, slog.Default()),
		releases: map[string]releaseFile{},
		reports:  map[string]proto.ReleaseReport{},
		results:  map[string]proto.Result{},
		changed:  make(chan struct{}),
		ready:    make(chan struct{}),
	}
	if store != "" {
		if err := s.loadStore(store); err != nil {
			return nil, err
		}
	}
	l := cfg.settings("tobira-hq-release-" + proto.NewCommandID()[:8])
	filters := map[string]byte{proto.ReleaseGetSubscription: 1, proto.ReleaseReportSubscription: 1, proto.ResultSubscription: 1}
	rot := l.Rotator("-", s.log)
	opts := l.Options().SetConnectRetry(false).SetCleanSession(true).
		SetReconnectingHandler(rot.Reconnecting).
		SetOnConnectHandler(func(c mqtt.Client) {
			if !s.hg.Enter() {
				return
			}
			defer s.hg.Leave()
			if err := mqttconn.Subscribe(context.Background(), s.clk, rot, c, filters, s.onMessage); err != nil {
				s.log.Error("release server cannot subscribe", "broker", cfg.Broker, "client_id", rot.ClientID(), "err", err)
				return
			}
			if s.readyOK.CompareAndSwap(false, true) {
				close(s.ready)
			}
		})
	s.c = mqtt.NewClient(opts)
	if err := mqttconn.WaitToken(ctx, s.clk, s.c.Connect(), mqttconn.DefaultTokenTimeout); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Broker, err)
	}
	t := s.clk.NewTimer(mqttconn.DefaultTokenTimeout)
	defer t.Stop()
	select {
	case <-s.ready:
		return s, nil
	case <-t.C():
		err := fmt.Errorf("subscribe to release topics on %s: no answer within %v", cfg.Broker, mqttconn.DefaultTokenTimeout)
		s.Close()
		return nil, err
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("subscribe to release topics on %s: %w", cfg.Broker, ctx.Err())
	}
}

// loadStore indexes every release of a release store directory.
func (s *ReleaseServer) loadStore(store string) error {
	envs, err := filepath.Glob(filepath.Join(store, "*", "release.json"))
	if err != nil {
		return fmt.Errorf("list release store %s: %w", store, err)
	}
	for _, p := range envs {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read release store: %w", err)
		}
		if _, err := s.AddRelease(data, filepath.Join(filepath.Dir(p), firmware.BinaryName)); err != nil {
			return fmt.Errorf("release store entry %s: %w", p, err)
		}
	}
	return nil
}

// AddRelease makes the server serve binary as the release of envelope. It
// checks that the binary has the manifest's size and SHA-256 (the
// signature is checked by the devices, which pin the release keys).
func (s *ReleaseServer) AddRelease(envelope []byte, binary string) (firmware.Manifest, error) {
	m, err := firmware.PeekManifest(envelope)
	if err != nil {
		return firmware.Manifest{}, fmt.Errorf("add release: %w", err)
	}
	f, err := os.Open(binary)
	if err != nil {
		return m, fmt.Errorf("add release %s: %w", m.Version, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return m, fmt.Errorf("add release %s: hash %s: %w", m.Version, binary, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != m.Size || sum != m.SHA256 {
		return m, fmt.Errorf("add release %s: %w: %s has %d bytes sha256 %s, manifest says %d bytes %s",
			m.Version, firmware.ErrHashMismatch, binary, n, sum, m.Size, m.SHA256)
	}
	s.mu.Lock()
	s.releases[m.SHA256] = releaseFile{path: binary, m: m}
	s.mu.Unlock()
	return m, nil
}

// ReleasePublication says what Publish offers to whom.
type ReleasePublication struct {
	// Site is the site of the addressed devices and groups.
	Site string
	// Devices and Groups are addressed; one offer is published to each.
	Devices []string
	// Groups are addressed by their group topic.
	Groups []string
	// Envelope is the signed release manifest (firmware envelope). Its
	// binary must have been added (AddRelease or the store).
	Envelope []byte
	// ChunkSize is the largest chunk a device may ask for; default
	// DefaultReleaseChunkSize.
	ChunkSize int
	// Lifetime is the offers' validity; default
	// DefaultReleaseOfferLifetime.
	Lifetime time.Duration
}

// Publish signs one offer per addressed device and group, records each in
// the spool (when the server has one: HQ answers the devices' sync-get
// from it) and publishes each, retained, on its release topic (the fast
// path for a device that connects later). It returns the offers as sent;
// their IDs name the results.
func (s *ReleaseServer) Publish(ctx context.Context, p ReleasePublication) ([]proto.ReleaseOffer, error) {
	m, err := firmware.PeekManifest(p.Envelope)
	if err != nil {
		return nil, fmt.Errorf("publish release: %w", err)
	}
	s.mu.Lock()
	_, known := s.releases[m.SHA256]
	s.mu.Unlock()
	if !known {
		return nil, fmt.Errorf("publish release %s: its binary (sha256 %s) is not in the release store", m.Version, m.SHA256)
	}
	if len(p.Devices)+len(p.Groups) == 0 {
		return nil, fmt.Errorf("publish release %s: no device or group addressed", m.Version)
	}
	now := s.clk.Now().UTC().Truncate(time.Second)
	base := proto.ReleaseOffer{Site: p.Site, Issued: now, Expires: now.Add(cmp.Or(p.Lifetime, proto.DefaultReleaseOfferLifetime)),
		ChunkSize: cmp.Or(p.ChunkSize, proto.DefaultReleaseChunkSize), Manifest: p.Envelope}
	type target struct {
		offer proto.ReleaseOffer
		topic string
	}
	var targets []target
	for _, d := range p.Devices {
		o := base
		o.ID, o.Device = proto.NewCommandID(), d
		targets = append(targets, target{o, proto.ReleaseTopic(p.Site, d)})
	}
	for _, g := range p.Groups {
		o := base
		o.ID, o.Group = proto.NewCommandID(), g
		targets = append(targets, target{o, proto.ReleaseGroupTopic(p.Site, g)})
	}
	var sent []proto.ReleaseOffer
	for _, t := range targets {
		env, err := proto.SignReleaseOffer(s.priv, t.offer)
		if err != nil {
			return sent, fmt.Errorf("publish release %s: %w", m.Version, err)
		}
		if s.spool != nil {
			if err := s.spool.PutOffer(ctx, SpooledEnvelope[proto.ReleaseOffer]{Value: t.offer, Envelope: env}); err != nil {
				return sent, fmt.Errorf("publish release %s offer %s: %w", m.Version, t.offer.ID, err)
			}
		}
		if err := mqttconn.WaitToken(ctx, s.clk, s.c.Publish(t.topic, 1, true, env), mqttconn.DefaultTokenTimeout); err != nil {
			return sent, fmt.Errorf("publish release %s offer %s to %s: %w", m.Version, t.offer.ID, t.topic, err)
		}
		s.log.Info("published release offer", "version", m.Version, "id", t.offer.ID, "topic", t.topic)
		sent = append(sent, t.offer)
	}
	return sent, nil
}

// PublishRaw publishes envelope, retained, as the release offer on topic:
// for tests and for clearing an offer (an empty envelope deletes the
// retained one).
func (s *ReleaseServer) PublishRaw(ctx context.Context, topic string, envelope []byte) error {
	if err := mqttconn.WaitToken(ctx, s.clk, s.c.Publish(topic, 1, true, envelope), mqttconn.DefaultTokenTimeout); err != nil {
		return fmt.Errorf("publish %d bytes to %s: %w", len(envelope), topic, err)
	}
	return nil
}

// onMessage routes a chunk request, a report or a result.
func (s *ReleaseServer) onMessage(c mqtt.Client, msg mqtt.Message) {
	if !s.hg.Enter() {
		return
	}
	defer s.hg.Leave()
	t := msg.Topic()
	if len(msg.Payload()) == 0 {
		return // a cleared retained message
	}
	_, _, leaf, _ := proto.ParseTopic(t)
	if leaf == proto.LeafReleaseGet {
		s.serve(c, t, msg.Payload())
		return
	}
	if leaf == proto.LeafReleaseReport {
		r, err := proto.DecodeReleaseReport(t, msg.Payload())
		if err != nil {
			s.log.Warn("rejected release report", "topic", t, "err", err)
			return
		}
		s.note(func() {
			// Handlers run concurrently: keep the newest report.
			key := r.Site + "/" + r.Device
			if old, ok := s.reports[key]; !ok || !r.Time.Before(old.Time) {
				s.reports[key] = r
			}
		})
		return
	}
	r, err := proto.DecodeResult(t, msg.Payload())
	if err != nil {
		s.log.Warn("rejected result message", "topic", t, "err", err)
		return
	}
	if r.Kind == proto.KindRelease && r.ID != "" {
		s.note(func() { s.results[r.ID+"/"+r.Site+"/"+r.Device] = r })
	}
}

// note applies change under the lock and wakes the waiters.
func (s *ReleaseServer) note(change func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change()
	s.lastSeen = s.clk.Now()
	close(s.changed)
	s.changed = make(chan struct{})
}

// serve answers one chunk request.
func (s *ReleaseServer) serve(c mqtt.Client, topic string, payload []byte) {
	site, device, g, err := proto.DecodeReleaseGet(topic, payload)
	if err != nil {
		s.log.Warn("rejected release request", "topic", topic, "err", err)
		return
	}
	s.mu.Lock()
	rf, ok := s.releases[g.SHA256]
	s.mu.Unlock()
	if !ok {
		s.log.Warn("device asks for a release this server does not hold", "site", site, "device", device, "sha256", g.SHA256)
		return
	}
	var data []byte
	if g.Offset < rf.m.Size {
		data = make([]byte, min(int64(g.Length), rf.m.Size-g.Offset))
		f, err := os.Open(rf.path)
		if err != nil {
			s.log.Error("cannot open release binary", "path", rf.path, "err", err)
			return
		}
		_, err = f.ReadAt(data, g.Offset)
		f.Close()
		if err != nil {
			s.log.Error("cannot read release binary", "path", rf.path, "offset", g.Offset, "err", err)
			return
		}
	}
	out, err := proto.EncodeReleaseChunk(g.SHA256, g.Offset, data)
	if err != nil {
		s.log.Error("cannot encode release chunk", "err", err)
		return
	}
	if err := mqttconn.WaitToken(context.Background(), s.clk, c.Publish(proto.ReleaseChunkTopic(site, device), 1, false, out), mqttconn.DefaultTokenTimeout); err != nil {
		s.log.Warn("cannot send release chunk; the device will ask again", "site", site, "device", device, "offset", g.Offset, "err", err)
		return
	}
	s.served.Add(int64(len(data)))
}

// Served returns how many binary bytes the server has sent so far.
func (s *ReleaseServer) Served() int64 { return s.served.Load() }

// Reports returns the release reports received so far, sorted by site and
// device.
func (s *ReleaseServer) Reports() []proto.ReleaseReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]proto.ReleaseReport, 0, len(s.reports))
	for _, r := range s.reports {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Site+"/"+out[i].Device < out[j].Site+"/"+out[j].Device
	})
	return out
}

// WaitReport returns the first report of site/device that satisfies ok,
// waiting until one arrives or ctx ends.
func (s *ReleaseServer) WaitReport(ctx context.Context, site, device string, ok func(proto.ReleaseReport) bool) (proto.ReleaseReport, error) {
	for {
		s.mu.Lock()
		r, have := s.reports[site+"/"+device]
		ch := s.changed
		s.mu.Unlock()
		if have && ok(r) {
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return r, fmt.Errorf("wait for a release report of %s/%s: %w", site, device, ctx.Err())
		}
	}
}

// WaitResult returns the release result of offer id from site/device,
// waiting until it arrives or ctx ends.
func (s *ReleaseServer) WaitResult(ctx context.Context, id, site, device string) (proto.Result, error) {
	for {
		s.mu.Lock()
		r, have := s.results[id+"/"+site+"/"+device]
		ch := s.changed
		s.mu.Unlock()
		if have {
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return proto.Result{}, fmt.Errorf("wait for the release result of %s from %s/%s: %w", id, site, device, ctx.Err())
		}
	}
}

// WaitQuiet returns once no report or result has arrived for d (the
// retained reports come in a burst right after DialReleaseServer), or when
// ctx ends.
func (s *ReleaseServer) WaitQuiet(ctx context.Context, d time.Duration) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		t := s.clk.NewTimer(d)
		select {
		case <-ch:
			t.Stop()
		case <-t.C():
			return nil
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// Close disconnects and waits for message handlers in flight.
func (s *ReleaseServer) Close() {
	s.c.Disconnect(mqttconn.DisconnectQuiesce)
	s.hg.CloseAndWait()
}

// FirmwareReports converts release reports to firmware.Report for
// firmware.CountRollout and the release views of tobira-hq (device named
// site/device).
func FirmwareReports(reps []proto.ReleaseReport) []firmware.Report {
	out := make([]firmware.Report, len(reps))
	for i, r := range reps {
		out[i] = firmware.Report{Device: r.Site + "/" + r.Device, Status: r.Firmware, Reported: r.Time}
	}
	return out
}
