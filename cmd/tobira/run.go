package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"periph.io/x/conn/v3/gpio"

	"github.com/tobira-ac/tobira/controller"
	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/sdnotify"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/keypad"
	"github.com/tobira-ac/tobira/reader/pcsc"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// runEdge runs a real controller: GPIO relays, PC/SC readers, the snapshot
// store, the outbox and the HQ link, until ctx ends. It builds the parts in
// a safe order (the relays first), then runs them in one group until ctx
// ends, a part fails, or a new release is activated.
func runEdge(ctx context.Context, path string, stderr io.Writer) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	clk := clock.System{}

	// Safety first: every relay is driven to its locked level before
	// anything else is opened, so a restart never leaves a door unlocked.
	doors, err := openDoors(cfg.Doors, clk, log)
	if err != nil {
		return err
	}
	defer closeDoors(doors)
	trial, err := bootGate(ctx, cfg.Firmware, log)
	if err != nil {
		return err
	}
	verifier, err := trustVerifier(cfg.Trust)
	if err != nil {
		return err
	}
	st, err := openStores(cfg, clk, log)
	if err != nil {
		return err
	}
	defer st.close()
	// Doors close (relock) before the outbox does, so their closing
	// changes are recorded.
	defer closeDoors(doors)
	p := &edgeParts{cfg: cfg, log: log, doors: doors, trial: trial, activated: make(chan firmware.Manifest, 1)}
	if err := p.buildLink(st, clk); err != nil {
		return err
	}
	// A lockdown (or any mode) HQ set survives a crash: applied again
	// before any card is read.
	if err := controller.RestoreModes(ctx, p.commandDoors(), st.outbox, log); err != nil {
		return err
	}
	pc, err := pcsc.Open(log)
	if err != nil {
		return fmt.Errorf("PC/SC (is pcscd running?): %w", err)
	}
	defer pc.Close()
	source := func(name string) controller.CardSource { return pc.Source(name) }
	closeKeypads, err := p.buildReaders(verifier, source, st, clk)
	defer closeKeypads()
	if err != nil {
		return err
	}
	if err := p.buildMetrics(st, clk); err != nil {
		return err
	}
	return p.run(ctx)
}

// edgeParts are the running parts of a controller, built by runEdge.
type edgeParts struct {
	cfg   *Config
	log   *slog.Logger
	doors []*door.Door
	// trial is the release on trial (nil without one, or without a health
	// gate).
	trial *firmware.Trial
	edge  *tsync.Edge
	// agent takes release offers from HQ (nil without release keys); a
	// release it activates is announced on activated.
	agent     *tsync.ReleaseAgent
	activated chan firmware.Manifest
	activity  *controller.Activity
	loops     []*controller.ReaderLoop
	// metrics serves the registry on its listener (nil: metrics off).
	metrics *edgeMetrics
}

// errRestart ends the run group when a new release is in place.
var errRestart = errors.New("release activated")

// run runs the HQ link, the release agent, every reader loop, the health
// gate and the systemd watchdog in one group until ctx ends, one of them
// fails, or a new release is activated (relays are locked by the deferred
// closes of runEdge, and systemd starts the new release, on trial).
func (p *edgeParts) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	goPart(gctx, g, "HQ link", p.edge.Run)
	if p.metrics != nil {
		goPart(gctx, g, "metrics listener", p.metrics.serve)
	}
	if p.agent != nil {
		goPart(gctx, g, "release agent", p.agent.Run)
	}
	var running atomic.Int32 // door loops alive, for the systemd watchdog
	for _, loop := range p.loops {
		running.Add(1)
		goPart(gctx, g, fmt.Sprintf("reader %q", loop.Reader), func(ctx context.Context) error {
			defer running.Add(-1)
			return loop.Run(ctx)
		})
	}
	p.log.Info("tobira running", "version", version, "site", p.cfg.Site, "device", p.cfg.Device,
		"doors", len(p.doors), "readers", len(p.loops))
	p.commitTrial(gctx, g)
	notifySystemd(gctx, g, p.log, fmt.Sprintf("%d door(s), %d reader(s) running", len(p.doors), len(p.loops)), func() bool {
		return int(running.Load()) == len(p.loops)
	})
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case m := <-p.activated:
			p.log.Info("firmware: release activated; restarting into it", "version", m.Version)
			return errRestart
		}
	})
	err := g.Wait()
	p.log.Info("tobira stopped")
	if errors.Is(err, errRestart) {
		return nil
	}
	return err
}

// goPart runs one part in g. Its error ends the group, named by what;
// errors after the group ended (on shutdown) are not failures.
func goPart(ctx context.Context, g *errgroup.Group, what string, run func(context.Context) error) {
	g.Go(func() error {
		if err := run(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// commitTrial commits the release on trial, if any, and supervises it in
// g. This process is healthy by now: relays safe, databases open, trust
// anchors loaded, PC/SC up, door loops and the HQ link started. HQ being
// reachable is not required: a door must keep working offline, and so
// must an update.
func (p *edgeParts) commitTrial(ctx context.Context, g *errgroup.Group) {
	if p.trial == nil {
		return
	}
	if res, err := p.trial.ReportHealthy(ctx); err != nil {
		p.log.Error("firmware: could not commit the release on trial", "err", err)
	} else if res.Outcome != "" {
		p.log.Info("firmware: release committed", "outcome", res.Outcome, "reason", res.Reason)
		if p.agent != nil {
			p.agent.Refresh() // tell HQ at once
		}
	}
	goPart(ctx, g, "health gate", p.trial.Supervise)
}

// openDoors drives every door's relays to their locked level, then opens
// each door with all its pins. On an error the doors opened so far are
// closed (relocked).
func openDoors(cfgs []DoorConfig, clk clock.Clock, log *slog.Logger) ([]*door.Door, error) {
	setups, pinNames, err := doorSetups(cfgs)
	if err != nil {
		return nil, err
	}
	// Every door's relays first, before any other pin is looked up: a
	// mistake in one door's optional pins must not leave another door's
	// lock undriven while the process exits.
	if err := secureRelays(setups, pinNames); err != nil {
		return nil, err
	}
	doors := make([]*door.Door, 0, len(cfgs))
	for i, dc := range cfgs {
		d, err := openDoor(setups[i], pinNames[i], clk, log)
		if err != nil {
			closeDoors(doors)
			return nil, fmt.Errorf("door %q: %w", dc.Name, err)
		}
		doors = append(doors, d)
	}
	return doors, nil
}

// openDoor looks up a door's pins and opens it.
func openDoor(cfg door.Config, names door.PinNames, clk clock.Clock, log *slog.Logger) (*door.Door, error) {
	pins, err := door.OpenPins(names)
	if err != nil {
		return nil, err
	}
	return door.NewDoor(cfg, pins, clk, log)
}

// closeDoors closes (relocks) doors; closing twice is harmless.
func closeDoors(doors []*door.Door) {
	for _, d := range doors {
		_ = d.Close()
	}
}

// bootGate runs the health gate of a release on trial: a release that
// systemd has restarted too often, or that never became healthy, is rolled
// back here and this process exits so that the previous one starts.
// Without firmware.root (development machines) there is no gate and no
// trial.
func bootGate(ctx context.Context, fw FirmwareConfig, log *slog.Logger) (*firmware.Trial, error) {
	if fw.Root == "" {
		return nil, nil
	}
	return firmware.Boot(ctx, firmware.GateOptions{Root: fw.Root, MaxAttempts: fw.MaxAttempts,
		HealthDeadline: fw.HealthDeadline.Duration, InvocationID: os.Getenv("INVOCATION_ID"), Logger: log})
}

// trustVerifier loads the JPKI trust anchors.
func trustVerifier(t TrustConfig) (*reader.Verifier, error) {
	anchors, err := reader.LoadTrustAnchors(t.Anchors...)
	if err != nil {
		return nil, fmt.Errorf("trust.anchors: %w", err)
	}
	v, err := reader.NewVerifier(anchors)
	if err != nil {
		return nil, fmt.Errorf("trust.anchors: %w", err)
	}
	return v, nil
}

// stores are the controller's databases in data_dir.
type stores struct {
	policy *policy.Store
	outbox *tsync.Outbox
}

// close closes both databases.
func (s *stores) close() {
	_ = s.outbox.Close()
	_ = s.policy.Close()
}

// openStores opens the snapshot store and the outbox in data_dir. A
// policy database found unusable was moved aside by policy: that is
// recorded as an event (the controller keeps running on break-glass
// credentials until HQ resends a snapshot).
func openStores(cfg *Config, clk clock.Clock, log *slog.Logger) (*stores, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	popts, err := policyOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	policyPath := filepath.Join(cfg.DataDir, "policy.db")
	store, err := policy.OpenWithOptions(policyPath, popts)
	if err != nil {
		return nil, err
	}
	outbox, err := tsync.OpenOutbox(filepath.Join(cfg.DataDir, "events.db"))
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	for _, r := range store.Recoveries() {
		log.Error("policy database was unusable and has been moved aside", "path", r.Path, "moved_to", r.MovedTo, "err", r.Err)
		if _, err := outbox.Append(proto.Event{Time: clk.Now(), Type: "system", Reason: "policy_db_recovered",
			Detail: fmt.Sprintf("%s moved to %s: %v", r.Path, r.MovedTo, r.Err)}); err != nil {
			log.Error("event not stored", "reason", "policy_db_recovered", "err", err)
		}
	}
	if v, err := store.Version(); err == nil && v == 0 {
		log.Warn("no allowlist snapshot yet: only break-glass credentials open doors until HQ sends one", "path", policyPath)
	}
	return &stores{policy: store, outbox: outbox}, nil
}

// commandDoors returns the doors by name, as HQ's commands name them.
func (p *edgeParts) commandDoors() map[string]controller.CommandDoor {
	m := make(map[string]controller.CommandDoor, len(p.doors))
	for _, d := range p.doors {
		m[d.Name()] = d
	}
	return m
}

// buildLink builds the HQ link (with what HQ may change: snapshots,
// commands, ticket marks, when HQ keys are pinned), records every door's
// changes in the outbox, and the release agent when release keys are
// pinned.
func (p *edgeParts) buildLink(st *stores, clk clock.Clock) error {
	cfg, log := p.cfg, p.log
	ecfg, err := linkConfig(cfg, log)
	if err != nil {
		return err
	}
	statusDoors := make([]controller.StatusDoor, len(p.doors))
	for i, d := range p.doors {
		statusDoors[i] = d
	}
	commands := &controller.Commands{Doors: p.commandDoors(), Modes: st.outbox, Policy: st.policy, Log: log,
		Resync: func() { p.edge.PublishStatus() }}
	ecfg.Status = controller.DeviceStatus(version, st.policy, statusDoors, st.outbox, clk)
	if len(ecfg.Keys) > 0 {
		ecfg.Commands, ecfg.Snapshots, ecfg.Marks = commands, st.policy, st.policy
		ecfg.TicketChecks = cfg.Tickets.OnlineCheck.Duration > 0
	} else {
		log.Warn("no hq.keys pinned: HQ's snapshots, commands and ticket marks are not accepted; events still flow")
	}
	if p.edge, err = tsync.NewEdge(ecfg, st.outbox); err != nil {
		return err
	}
	if ecfg.TicketChecks {
		st.policy.SetTicketCheck(p.edge.CheckTicket, cfg.Tickets.OnlineCheck.Duration)
	}
	for _, d := range p.doors {
		controller.RecordDoorChanges(d, st.outbox, func() { p.edge.Notify(); p.edge.PublishStatus() }, log)
	}
	p.activity = &controller.Activity{Doors: statusDoors}
	p.agent, err = releaseAgent(cfg, ecfg, p.activity, p.activated, log)
	return err
}

// linkConfig is the link's part of the configuration: broker, TLS,
// credentials, pinned HQ keys, batching.
func linkConfig(cfg *Config, log *slog.Logger) (tsync.EdgeConfig, error) {
	tlsCfg, err := hqTLS(cfg.HQ)
	if err != nil {
		return tsync.EdgeConfig{}, err
	}
	password := ""
	if cfg.HQ.PasswordFile != "" {
		b, err := os.ReadFile(cfg.HQ.PasswordFile)
		if err != nil {
			return tsync.EdgeConfig{}, fmt.Errorf("hq.password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	keys, err := hqKeys(cfg.HQ)
	if err != nil {
		return tsync.EdgeConfig{}, err
	}
	return tsync.EdgeConfig{Broker: cfg.HQ.Broker, Brokers: cfg.HQ.Brokers, Site: cfg.Site, Device: cfg.Device,
		TLS: tlsCfg, Username: cfg.HQ.Username, Password: password, Logger: log, StagingDir: cfg.DataDir,
		Batch: cfg.HQ.Batch, Window: cfg.HQ.Window, Keys: keys, SnapshotGroups: cfg.HQ.SnapshotGroups}, nil
}

// buildReaders builds one loop per [[reader]]: its identifier (and
// keypad), its card source (source: by PC/SC reader name) and its door.
// The returned func closes the keypads.
func (p *edgeParts) buildReaders(v *reader.Verifier, source func(name string) controller.CardSource, st *stores,
	clk clock.Clock) (closeKeypads func(), err error) {
	var closers []func()
	closeKeypads = func() {
		for _, c := range closers {
			c()
		}
	}
	locks := map[string]*door.Door{}
	for _, d := range p.doors {
		locks[d.Name()] = d
	}
	for _, rc := range p.cfg.Readers {
		identifier, pinIdentifier, closeKeypad, err := newIdentifiers(rc, v, p.log)
		if err != nil {
			return closeKeypads, fmt.Errorf("reader %q: %w", rc.Name, err)
		}
		closers = append(closers, closeKeypad)
		p.loops = append(p.loops, &controller.ReaderLoop{Door: rc.Door, Reader: rc.Name, Direction: rc.Direction,
			Source: source(rc.Name), Identifier: identifier, PINIdentifier: pinIdentifier, Decider: st.policy,
			Lock: locks[rc.Door], Events: st.outbox, Enrollments: st.outbox, Notify: p.edge.Notify, Activity: p.activity,
			Clock: clk, Log: p.log})
	}
	return closeKeypads, nil
}

// newIdentifiers builds a reader's Identifier for its mode, opening its
// keypad if it has one. A serial-mode reader with a keypad also gets a PIN
// identifier, used when policy puts the door in card + PIN mode. The
// returned func closes the keypad.
func newIdentifiers(rc ReaderConfig, v *reader.Verifier, log *slog.Logger) (id, pinID *reader.Identifier, closeKeypad func(), err error) {
	mode, err := reader.ParseMode(rc.Mode)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := reader.IdentifierConfig{Mode: mode, Verifier: v, FreeArea: rc.FreeArea, AllowLastTry: rc.AllowLastTry,
		CommandTimeout: rc.CommandTimeout.Duration, SignTimeout: rc.SignTimeout.Duration, Log: log}
	closeKeypad = func() {}
	if k := rc.Keypad; k != nil {
		kc := keypad.Config{Timeout: k.Timeout.Duration}
		switch k.Kind {
		case "evdev":
			ev, err := keypad.OpenEvdev(k.Device, kc, log)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("keypad %s: %w", k.Device, err)
			}
			cfg.Keypad, closeKeypad = ev, func() { _ = ev.Close() }
		case "matrix":
			rows, err := openPins(k.Rows)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("keypad rows: %w", err)
			}
			cols, err := openPins(k.Cols)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("keypad cols: %w", err)
			}
			m, err := keypad.NewMatrix(rows, cols, keypad.MatrixConfig{Config: kc})
			if err != nil {
				return nil, nil, nil, err
			}
			cfg.Keypad = m
		}
	}
	if id, err = reader.NewIdentifier(cfg); err != nil {
		closeKeypad()
		return nil, nil, nil, err
	}
	if cfg.Keypad != nil && mode == reader.ModeSerial {
		pc := cfg
		pc.Mode = reader.ModePIN
		if pinID, err = reader.NewIdentifier(pc); err != nil {
			closeKeypad()
			return nil, nil, nil, err
		}
	}
	return id, pinID, closeKeypad, nil
}

// policyOptions turns the configuration into the snapshot store's options:
// break-glass credentials and each door's fallbacks.
func policyOptions(cfg *Config, log *slog.Logger) (policy.Options, error) {
	o := policy.Options{Log: log, Doors: map[string]policy.DoorOptions{}}
	for i, b := range cfg.BreakGlass {
		c, err := b.Credential()
		if err != nil {
			return o, fmt.Errorf("break_glass[%d]: %w", i, err)
		}
		o.BreakGlass = append(o.BreakGlass, policy.BreakGlass{Credential: c, Label: b.Label})
	}
	for _, d := range cfg.Doors {
		stale, err := ParseFallback(d.OnStaleRevocations)
		if err != nil {
			return o, fmt.Errorf("door %q: on_stale_revocations: %w", d.Name, err)
		}
		clockFB, err := ParseFallback(d.OnUntrustedClock)
		if err != nil {
			return o, fmt.Errorf("door %q: on_untrusted_clock: %w", d.Name, err)
		}
		o.Doors[d.Name] = policy.DoorOptions{OnStaleRevocations: stale, OnUntrustedClock: clockFB}
	}
	return o, nil
}

// secureRelays drives every door's lock relay (and second relay) to its
// locked level. door.NewDoor does it again as its first act; this pass only
// makes sure no relay waits for another door's pins to be found.
func secureRelays(setups []door.Config, names []door.PinNames) error {
	var errs []error
	for _, r := range lockedRelays(setups, names) {
		p, err := door.OpenPin(r.line)
		if err == nil {
			err = r.lock(p)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("door %q: %s %s: %w", r.door, r.role, r.line, err))
		}
	}
	return errors.Join(errs...)
}

// lockedRelay is one relay of a door and the level that locks it.
type lockedRelay struct {
	door  string
	role  string // relay or relay2
	line  string
	level gpio.Level
}

// lockedRelays lists every door's wired relays with their locked levels.
func lockedRelays(setups []door.Config, names []door.PinNames) []lockedRelay {
	var out []lockedRelay
	for i, c := range setups {
		for _, r := range []lockedRelay{{c.Name, "relay", names[i].Relay, c.LockedLevel()},
			{c.Name, "relay2", names[i].Relay2, c.Relay2.LockedLevel()}} {
			if r.line != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// lock drives p, the relay's line, to the locked level.
func (r lockedRelay) lock(p gpio.PinOut) error { return p.Out(r.level) }

// releaseAgent builds the firmware release agent when the configuration
// pins release keys (nil otherwise). A release it activates is announced on
// activated, and the controller then exits for systemd to start it.
func releaseAgent(cfg *Config, ecfg tsync.EdgeConfig, busy firmware.BusyChecker,
	activated chan<- firmware.Manifest, log *slog.Logger) (*tsync.ReleaseAgent, error) {
	fw := cfg.Firmware
	if len(fw.ReleaseKeys) == 0 {
		return nil, nil
	}
	if len(ecfg.Keys) == 0 {
		return nil, fmt.Errorf("firmware.release_keys: release offers are signed by HQ too: pin hq.keys")
	}
	v, err := releaseVerifier(fw)
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(fw.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("firmware.time_zone: %w", err)
	}
	window, err := firmware.ParseWindow(fw.Window, loc)
	if err != nil {
		return nil, fmt.Errorf("firmware.window: %w", err)
	}
	up := &firmware.Updater{Root: fw.Root, Verifier: v, Device: firmware.Device{ID: cfg.Device, Groups: fw.Groups},
		Busy: busy, Window: window, RateLimit: fw.RateLimit, Logger: log}
	return tsync.NewReleaseAgent(ecfg, tsync.ReleaseConfig{Installer: up, Groups: fw.Groups,
		StateFile: filepath.Join(cfg.DataDir, "release-agent.json"),
		OnActivated: func(m firmware.Manifest) {
			select {
			case activated <- m:
			default:
			}
		}})
}

// releaseVerifier reads the pinned release public keys (PEM, as keygen
// writes them, or the base64 text of the first releases).
func releaseVerifier(fw FirmwareConfig) (*firmware.Verifier, error) {
	var keys []ed25519.PublicKey
	for i, p := range fw.ReleaseKeys {
		k, err := firmware.ReadPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("firmware.release_keys[%d]: %w", i, err)
		}
		keys = append(keys, k)
	}
	v, err := firmware.NewVerifier(keys...)
	if err != nil {
		return nil, fmt.Errorf("firmware.release_keys: %w", err)
	}
	return v, nil
}

// hqKeys reads the pinned HQ public keys that sign snapshots and commands.
func hqKeys(h HQConfig) ([]ed25519.PublicKey, error) {
	keys := make([]ed25519.PublicKey, 0, len(h.Keys))
	for i, p := range h.Keys {
		k, err := signed.ReadPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("hq.keys[%d]: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// openPins looks up GPIO lines by name.
func openPins(names []string) ([]gpio.PinIO, error) {
	pins := make([]gpio.PinIO, len(names))
	for i, n := range names {
		p, err := door.OpenPin(n)
		if err != nil {
			return nil, err
		}
		pins[i] = p
	}
	return pins, nil
}

// hqTLS builds the TLS configuration for an ssl:// broker (nil for tcp://).
func hqTLS(h HQConfig) (*tls.Config, error) {
	if h.CACert == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(h.CACert)
	if err != nil {
		return nil, fmt.Errorf("hq.ca_cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("hq.ca_cert: %s holds no PEM certificate", h.CACert)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if h.ClientCert != "" {
		pair, err := tls.LoadX509KeyPair(h.ClientCert, h.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("hq.client_cert/client_key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// checkConfig validates a configuration and the files it names, and prints
// a summary.
func checkConfig(path string, stdout io.Writer) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	anchors, err := reader.LoadTrustAnchors(cfg.Trust.Anchors...)
	if err != nil {
		return fmt.Errorf("%s: trust.anchors: %w", path, err)
	}
	if _, err := hqTLS(cfg.HQ); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	keys, err := hqKeys(cfg.HQ)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(keys) == 0 {
		fmt.Fprintf(stdout, "%s: warning: no hq.keys: snapshots and commands from HQ will be refused\n", path)
	}
	if len(cfg.Firmware.ReleaseKeys) > 0 {
		if _, err := releaseVerifier(cfg.Firmware); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(keys) == 0 {
			return fmt.Errorf("%s: firmware.release_keys: release offers are signed by HQ too: pin hq.keys", path)
		}
	}
	if cfg.HQ.PasswordFile != "" {
		if _, err := os.Stat(cfg.HQ.PasswordFile); err != nil {
			return fmt.Errorf("%s: hq.password_file: %w", path, err)
		}
	}
	fmt.Fprintf(stdout, "%s: ok: site %s, device %s, %d trust anchor(s), %d door(s), %d reader(s)\n",
		path, cfg.Site, cfg.Device, len(anchors), len(cfg.Doors), len(cfg.Readers))
	for _, d := range cfg.Doors {
		mode := "fail-secure"
		if d.FailSafe {
			mode = "fail-safe"
		}
		fmt.Fprintf(stdout, "  door %q: relay %s (active-low %t, %s), pulse %s\n",
			d.Name, d.RelayPin, d.RelayActiveLow, mode, d.Pulse.Duration)
	}
	for _, r := range cfg.Readers {
		keypad := "no keypad"
		if r.Keypad != nil {
			keypad = r.Keypad.Kind + " keypad"
		}
		fmt.Fprintf(stdout, "  reader %q: door %q, direction %s, mode %s, %s\n", r.Name, r.Door, r.Direction, r.Mode, keypad)
	}
	return nil
}

// listReaders prints the PC/SC readers pcscd knows.
func listReaders(stdout io.Writer) error {
	p, err := pcsc.Open(nil)
	if err != nil {
		return fmt.Errorf("PC/SC (is pcscd running?): %w", err)
	}
	defer p.Close()
	names, err := p.Readers()
	if err != nil {
		return err
	}
	for _, n := range names {
		fmt.Fprintln(stdout, n)
	}
	return nil
}

// newLogger returns a text logger at the configured level.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// notifySystemd tells systemd the service is ready and, when a watchdog is
// configured, pings it in g for as long as alive reports true. Without
// systemd ($NOTIFY_SOCKET unset) it does nothing.
func notifySystemd(ctx context.Context, g *errgroup.Group, log *slog.Logger, status string, alive func() bool) {
	n, err := sdnotify.New()
	if err != nil {
		if !errors.Is(err, sdnotify.ErrNoSocket) {
			log.Warn("systemd notification unavailable", "err", err)
		}
		return
	}
	if err := n.Notify(sdnotify.Ready, sdnotify.Status(status)); err != nil {
		log.Warn("systemd notification failed", "err", err)
	}
	timeout, on, err := sdnotify.WatchdogInterval()
	if err != nil {
		log.Warn("systemd watchdog misconfigured", "err", err)
	}
	if !on {
		return
	}
	g.Go(func() error {
		n.RunWatchdog(ctx, clock.System{}, timeout, alive, func(err error) {
			log.Warn("systemd watchdog ping failed", "err", err)
		})
		return nil
	})
}
