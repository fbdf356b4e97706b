package hq

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Sender is HQ's one-shot publisher for the admin CLI: it signs and sends
// commands and snapshots, and collects the devices' results. It holds its
// own broker connection, next to a running HQ service.
type Sender struct {
	c     mqtt.Client
	priv  ed25519.PrivateKey
	spool Spool // nil: none
	clk   clock.Clock
	log   *slog.Logger

	mu      sync.Mutex
	results map[string]map[string]proto.Result // by ID, then by device
	arrived chan struct{}                      // closed and replaced when a result arrives
}

// DialSender connects to cfg.Broker (cfg.Path is not used) and subscribes
// to every device's results. priv signs what the Sender sends.
func DialSender(ctx context.Context, cfg Config, priv ed25519.PrivateKey) (*Sender, error) {
	if err := cfg.checkBrokers(); err != nil {
		return nil, err
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: sender needs an Ed25519 private key", ErrConfig)
	}
	spool, err := cfg.spool()
	if err != nil {
		return nil, err
	}
	s := &Sender{
		priv:    priv,
		spool:   spool,
		clk:     cmp.Or(cfg.Clock, clock.Clock(clock.System{})),
		log:     cmp.Or(cfg.Logger, slog.Default()),
		results: map[string]map[string]proto.Result{},
		arrived: make(chan struct{}),
	}
	l := cfg.settings("tobira-hq-cli-" + proto.NewCommandID()[:8])
	var connected atomic.Bool
	s.c = mqtt.NewClient(l.Options().SetConnectRetry(false).SetCleanSession(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			if connected.Swap(true) {
				// A reconnection (a long-lived Sender, e.g. the
				// console's): the clean session lost the subscription.
				tok := c.Subscribe(proto.ResultSubscription, 1, s.onResult)
				if err := mqttconn.WaitToken(context.Background(), s.clk, tok, mqttconn.DefaultTokenTimeout); err != nil {
					s.log.Error("sender cannot subscribe to the devices' results again", "broker", cfg.Broker, "err", err)
				}
			}
		}))
	if err := mqttconn.WaitToken(ctx, s.clk, s.c.Connect(), mqttconn.DefaultTokenTimeout); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Broker, err)
	}
	if err := mqttconn.WaitToken(ctx, s.clk, s.c.Subscribe(proto.ResultSubscription, 1, s.onResult), mqttconn.DefaultTokenTimeout); err != nil {
		s.c.Disconnect(mqttconn.DisconnectQuiesce)
		return nil, fmt.Errorf("subscribe to %s on %s: %w", proto.ResultSubscription, cfg.Broker, err)
	}
	return s, nil
}

// onResult records a device's result.
func (s *Sender) onResult(_ mqtt.Client, m mqtt.Message) {
	r, err := proto.DecodeResult(m.Topic(), m.Payload())
	if err != nil {
		s.log.Warn("rejected result message", "topic", m.Topic(), "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.results[r.ID] == nil {
		s.results[r.ID] = map[string]proto.Result{}
	}
	s.results[r.ID][r.Device] = r
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// WaitResult returns the result of the command or transfer id, waiting
// until it arrives or ctx ends. Results that arrived since DialSender
// count. For a group transfer, it is the first device's result
// (WaitResults waits for several).
func (s *Sender) WaitResult(ctx context.Context, id string) (proto.Result, error) {
	rs, err := s.waitResults(ctx, id, func(rs map[string]proto.Result) bool { return len(rs) > 0 })
	for _, r := range rs {
		return r, nil
	}
	return proto.Result{}, err
}

// WaitResults returns the results of the transfer (or command) id by
// device, once every one of devices has reported one or when ctx ends (with
// the results so far and the error). It is the progress of a group
// transfer: each device reports the transfer's result when it applied it,
// or refused it.
func (s *Sender) WaitResults(ctx context.Context, id string, devices []string) (map[string]proto.Result, error) {
	return s.waitResults(ctx, id, func(rs map[string]proto.Result) bool {
		for _, d := range devices {
			if _, ok := rs[d]; !ok {
				return false
			}
		}
		return true
	})
}

// waitResults waits until the results of id satisfy done, or ctx ends, and
// returns a copy of them.
func (s *Sender) waitResults(ctx context.Context, id string, done func(map[string]proto.Result) bool) (map[string]proto.Result, error) {
	for {
		s.mu.Lock()
		rs := maps.Clone(s.results[id])
		ch := s.arrived
		s.mu.Unlock()
		if done(rs) {
			return rs, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return rs, fmt.Errorf("wait for the results of %s: %w", id, ctx.Err())
		}
	}
}

// SendCommand fills in c's ID (when empty), Issued (now, when zero) and
// Expires (Issued + 5 minutes, when zero), signs it and publishes it to
// the device's command topic. A command that sets a door mode is recorded
// in the spool first (the commands in force, which HQ sends again to a
// device that asks and lacks them). It returns the command as sent.
func (s *Sender) SendCommand(ctx context.Context, c proto.Command) (proto.Command, error) {
	if c.ID == "" {
		c.ID = proto.NewCommandID()
	}
	if c.Issued.IsZero() {
		c.Issued = s.clk.Now().UTC().Truncate(time.Second)
	}
	if c.Expires.IsZero() {
		c.Expires = c.Issued.Add(5 * time.Minute)
	}
	env, err := proto.SignCommand(s.priv, c)
	if err != nil {
		return c, err
	}
	if s.spool != nil {
		if err := s.spool.PutCommand(ctx, SpooledEnvelope[proto.Command]{Value: c, Envelope: env}); err != nil {
			return c, fmt.Errorf("record command %s to %s/%s: %w", c.ID, c.Site, c.Device, err)
		}
	}
	if err := mqttconn.WaitToken(ctx, s.clk, s.c.Publish(proto.CommandTopic(c.Site, c.Device), 1, false, env), mqttconn.DefaultTokenTimeout); err != nil {
		return c, fmt.Errorf("publish command %s to %s/%s: %w", c.ID, c.Site, c.Device, err)
	}
	return c, nil
}

// SnapshotOffer is what Sender.PublishSnapshot publishes.
type SnapshotOffer struct {
	// Site and Device address the device.
	Site string
	// Device is the addressed device; "" when Group is set.
	Device string
	// Group, instead of Device, addresses every device of a group of the
	// site (proto.SiteGroup: the whole site): the transfer is published
	// once, on the group's topics.
	Group string
	// Version is the version the device has after applying it.
	Version uint64
	// From, when not 0, makes it a delta from that version.
	From uint64
	// Path is the payload file (opaque to sync: the policy format).
	Path string
	// ChunkSize is the chunk size; default DefaultChunkSize.
	ChunkSize int
	// ContentHash, when not zero, is the content hash the device reports
	// after applying it (Manifest.ContentHash, for drift in the fleet view).
	ContentHash [32]byte
}

// PublishSnapshot hashes the offer's file, copies it into the spool (when
// the Sender has one, so that HQ can re-send missing chunks and answer the
// devices' sync-get), publishes the signed manifest retained on the
// device's (or the group's) snapshot topic and then every chunk. It
// returns the manifest; its Transfer is the result ID (WaitResults).
func (s *Sender) PublishSnapshot(ctx context.Context, o SnapshotOffer) (proto.Manifest, error) {
	f, err := os.Open(o.Path)
	if err != nil {
		return proto.Manifest{}, fmt.Errorf("publish snapshot: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return proto.Manifest{}, fmt.Errorf("publish snapshot: hash %s: %w", o.Path, err)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	m := proto.Manifest{
		Transfer: hex.EncodeToString(id[:]), Site: o.Site, Device: o.Device, Group: o.Group,
		Type: proto.SnapshotFull, Version: o.Version, From: o.From, Size: size, SHA256: hex.EncodeToString(h.Sum(nil)),
		ChunkSize: cmp.Or(o.ChunkSize, proto.DefaultChunkSize), Issued: s.clk.Now().UTC().Truncate(time.Second),
	}
	if o.From != 0 {
		m.Type = proto.SnapshotDelta
	}
	if o.ContentHash != ([32]byte{}) {
		m.ContentHash = hex.EncodeToString(o.ContentHash[:])
	}
	m.Chunks = int((size + int64(m.ChunkSize) - 1) / int64(m.ChunkSize))
	env, err := proto.SignManifest(s.priv, m)
	if err != nil {
		return proto.Manifest{}, fmt.Errorf("publish snapshot %s: %w", o.Path, err)
	}
	if s.spool != nil {
		if err := s.spool.PutTransfer(ctx, m, env, io.NewSectionReader(f, 0, m.Size)); err != nil {
			return proto.Manifest{}, fmt.Errorf("publish snapshot %s: %w", o.Path, err)
		}
	}
	topic := proto.SnapshotTopic(m.Site, m.Device)
	if m.Group != "" {
		topic = proto.SnapshotGroupTopic(m.Site, m.Group)
	}
	if err := mqttconn.WaitToken(ctx, s.clk, s.c.Publish(topic, 1, true, env), mqttconn.DefaultTokenTimeout); err != nil {
		return proto.Manifest{}, fmt.Errorf("publish snapshot manifest %s to %s: %w", m.Transfer, topic, err)
	}
	for i := range m.Chunks {
		if err := publishChunk(ctx, publisher(s.c, s.clk), f, m, i); err != nil {
			return m, err
		}
	}
	s.log.Info("published snapshot", "site", m.Site, "device", m.Device, "group", m.Group, "transfer", m.Transfer,
		"type", m.Type, "version", m.Version, "bytes", m.Size, "chunks", m.Chunks)
	return m, nil
}

// DeviceStatuses returns the retained status of every device of site that
// the broker holds, collected for wait after subscribing (retained
// messages come at once; wait bounds how long to listen for them).
// Devices that never published a status are missing.
func (s *Sender) DeviceStatuses(ctx context.Context, site string, wait time.Duration) (map[string]proto.Status, error) {
	if err := proto.CheckName(site); err != nil {
		return nil, fmt.Errorf("%w: site: %w", ErrConfig, err)
	}
	var mu sync.Mutex
	out := map[string]proto.Status{}
	filter := proto.TopicPrefix + "/" + site + "/+/status"
	tok := s.c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		if len(m.Payload()) == 0 {
			return
		}
		_, device, st, err := proto.DecodeStatus(m.Topic(), m.Payload())
		if err != nil {
			s.log.Warn("rejected status message", "topic", m.Topic(), "err", err)
			return
		}
		mu.Lock()
		out[device] = st
		mu.Unlock()
	})
	if err := mqttconn.WaitToken(ctx, s.clk, tok, mqttconn.DefaultTokenTimeout); err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	t := s.clk.NewTimer(wait)
	select {
	case <-ctx.Done():
	case <-t.C():
	}
	t.Stop()
	if err := mqttconn.WaitToken(ctx, s.clk, s.c.Unsubscribe(filter), mqttconn.DefaultTokenTimeout); err != nil && ctx.Err() == nil {
		s.log.Warn("cannot unsubscribe", "topic", filter, "err", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("collect statuses of site %s: %w", site, err)
	}
	mu.Lock()
	defer mu.Unlock()
	return out, nil
}

// Close disconnects.
func (s *Sender) Close() { s.c.Disconnect(mqttconn.DisconnectQuiesce) }
