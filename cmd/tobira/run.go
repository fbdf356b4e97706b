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
	gosync "sync"
	"sync/atomic"
	"time"

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
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// runEdge runs a real controller: GPIO relays, PC/SC readers, the snapshot
// store, the outbox and the HQ link, until ctx ends.
func runEdge(ctx context.Context, path string, stderr io.Writer) error {
	cfg, err := controller.LoadConfig(path)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)

	// Safety first: every relay is driven to its locked level before
	// anything else is opened, so a restart never leaves a door unlocked.
	clk := clock.System{}
	doors := make([]*door.Door, 0, len(cfg.Doors))
	closeDoors := func() {
		for _, d := range doors {
			_ = d.Close() // relocks; idempotent
		}
	}
	defer closeDoors()
	interlocks := map[string]*door.Interlock{}
	setups := make([]door.Config, len(cfg.Doors))
	pinNames := make([]door.PinNames, len(cfg.Doors))
	for i, dc := range cfg.Doors {
		if setups[i], pinNames[i], err = dc.DoorSetup(interlocks); err != nil {
			return fmt.Errorf("door %q: %w", dc.Name, err)
		}
	}
	// Every door's relays first, before any other pin is looked up: a
	// mistake in one door's optional pins must not leave another door's
	// lock undriven while the process exits.
	if err := secureRelays(setups, pinNames); err != nil {
		return err
	}
	for i, dc := range cfg.Doors {
		dcfg, names := setups[i], pinNames[i]
		pins, err := door.OpenPins(names)
		if err != nil {
			return fmt.Errorf("door %q: %w", dc.Name, err)
		}
		d, err := door.NewDoor(dcfg, pins, clk, log)
		if err != nil {
			return fmt.Errorf("door %q: %w", dc.Name, err)
		}
		doors = append(doors, d)
	}

	// The health gate of a release on trial: a release that systemd has
	// restarted too often, or that never became healthy, is rolled back
	// here and this process exits so that the previous one starts.
	// Without firmware.root (development machines) there is no gate.
	var trial *firmware.Trial
	if cfg.Firmware.Root != "" {
		trial, err = firmware.Boot(ctx, firmware.GateOptions{Root: cfg.Firmware.Root,
			MaxAttempts: cfg.Firmware.MaxAttempts, HealthDeadline: cfg.Firmware.HealthDeadline.Duration,
			InvocationID: os.Getenv("INVOCATION_ID"), Logger: log})
		if err != nil {
			return err
		}
	}

	anchors, err := reader.LoadTrustAnchors(cfg.Trust.Anchors...)
	if err != nil {
		return fmt.Errorf("trust.anchors: %w", err)
	}
	verifier, err := reader.NewVerifier(anchors)
	if err != nil {
		return fmt.Errorf("trust.anchors: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	popts, err := policyOptions(cfg, log)
	if err != nil {
		return err
	}
	store, err := policy.OpenWithOptions(filepath.Join(cfg.DataDir, "policy.db"), popts)
	if err != nil {
		return err
	}
	defer store.Close()
	outbox, err := tsync.OpenOutbox(filepath.Join(cfg.DataDir, "events.db"))
	if err != nil {
		return err
	}
	defer outbox.Close()
	// Doors close (relock) before the outbox does, so their closing
	// changes are recorded.
	defer closeDoors()
	for _, r := range store.Recoveries() {
		// The controller keeps running on break-glass credentials until HQ
		// resends a snapshot.
		log.Error("policy database was unusable and has been moved aside", "path", r.Path, "moved_to", r.MovedTo, "err", r.Err)
		if _, err := outbox.Append(proto.Event{Time: clk.Now(), Type: "system", Reason: "policy_db_recovered",
			Detail: fmt.Sprintf("%s moved to %s: %v", r.Path, r.MovedTo, r.Err)}); err != nil {
			log.Error("event not stored", "reason", "policy_db_recovered", "err", err)
		}
	}
	if v, err := store.Version(); err == nil && v == 0 {
		log.Warn("no allowlist snapshot yet: only break-glass credentials open doors until HQ sends one",
			"path", filepath.Join(cfg.DataDir, "policy.db"))
	}

	tlsCfg, err := hqTLS(cfg.HQ)
	if err != nil {
		return err
	}
	password := ""
	if cfg.HQ.PasswordFile != "" {
		b, err := os.ReadFile(cfg.HQ.PasswordFile)
		if err != nil {
			return fmt.Errorf("hq.password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	keys, err := hqKeys(cfg.HQ)
	if err != nil {
		return err
	}
	statusDoors := make([]controller.StatusDoor, len(doors))
	commandDoors := map[string]controller.CommandDoor{}
	for i, d := range doors {
		statusDoors[i], commandDoors[d.Name()] = d, d
	}
	var edge *tsync.Edge
	commands := &controller.Commands{Doors: commandDoors, Policy: store, Log: log,
		Resync: func() { edge.PublishStatus() }}
	ecfg := tsync.EdgeConfig{Broker: cfg.HQ.Broker, Site: cfg.Site, Device: cfg.Device,
		TLS: tlsCfg, Username: cfg.HQ.Username, Password: password, Logger: log, StagingDir: cfg.DataDir,
		Batch: cfg.HQ.Batch, Window: cfg.HQ.Window,
		Status: controller.DeviceStatus(version, store, statusDoors, clk)}
	if len(keys) > 0 {
		ecfg.Keys, ecfg.Commands, ecfg.Snapshots, ecfg.Marks = keys, commands, store, store
	} else {
		log.Warn("no hq.keys pinned: HQ's snapshots, commands and ticket marks are not accepted; events still flow")
	}
	if edge, err = tsync.NewEdge(ecfg, outbox); err != nil {
		return err
	}
	for _, d := range doors {
		controller.RecordDoorChanges(d, outbox, func() { edge.Notify(); edge.PublishStatus() }, log)
	}

	pcsc, err := reader.OpenPCSC(log)
	if err != nil {
		return fmt.Errorf("PC/SC (is pcscd running?): %w", err)
	}
	defer pcsc.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg gosync.WaitGroup
	errc := make(chan error, len(cfg.Readers)+3)
	var running atomic.Int32 // door loops alive, for the systemd watchdog
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := edge.Run(ctx); err != nil {
			errc <- fmt.Errorf("HQ link: %w", err)
		}
	}()
	activity := &controller.Activity{Doors: statusDoors}
	activated := make(chan firmware.Manifest, 1)
	agent, err := releaseAgent(cfg, ecfg, activity, activated, log)
	if err != nil {
		return err
	}
	if agent != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := agent.Run(ctx); err != nil {
				errc <- fmt.Errorf("release agent: %w", err)
			}
		}()
	}
	locks := map[string]*door.Door{}
	for _, d := range doors {
		locks[d.Name()] = d
	}
	for _, rc := range cfg.Readers {
		identifier, pinIdentifier, closeKeypad, err := newIdentifiers(rc, verifier, log)
		if err != nil {
			return fmt.Errorf("reader %q: %w", rc.Name, err)
		}
		defer closeKeypad()
		loop := &controller.ReaderLoop{Door: rc.Door, Reader: rc.Name, Direction: rc.Direction,
			Source: pcsc.Source(rc.Name), Identifier: identifier, PINIdentifier: pinIdentifier, Decider: store,
			Lock: locks[rc.Door], Events: outbox, Enrollments: outbox, Notify: edge.Notify, Activity: activity,
			Clock: clk, Log: log}
		wg.Add(1)
		running.Add(1)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			if err := loop.Run(ctx); err != nil {
				errc <- fmt.Errorf("reader %q: %w", rc.Name, err)
			}
		}()
	}
	log.Info("tobira running", "version", version, "site", cfg.Site, "device", cfg.Device,
		"doors", len(doors), "readers", len(cfg.Readers))

	// Healthy: relays safe, databases open, trust anchors loaded, PC/SC up,
	// door loops and the HQ link started. HQ being reachable is not required:
	// a door must keep working offline, and so must an update.
	if trial != nil {
		if res, err := trial.ReportHealthy(ctx); err != nil {
			log.Error("firmware: could not commit the release on trial", "err", err)
		} else if res.Outcome != "" {
			log.Info("firmware: release committed", "outcome", res.Outcome, "reason", res.Reason)
			if agent != nil {
				agent.Refresh() // tell HQ at once
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := trial.Supervise(ctx); err != nil {
				errc <- err
			}
		}()
	}
	notifySystemd(ctx, &wg, log, fmt.Sprintf("%d door(s), %d reader(s) running", len(doors), len(cfg.Readers)), func() bool {
		return int(running.Load()) == len(cfg.Readers)
	})
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	case m := <-activated:
		// A new release is in place: stop (relays locked by the deferred
		// Close) so that systemd starts it, on trial.
		log.Info("firmware: release activated; restarting into it", "version", m.Version)
		err = nil
	}
	cancel()
	wg.Wait()
	log.Info("tobira stopped")
	return err
}

// newIdentifiers builds a reader's Identifier for its mode, opening its
// keypad if it has one. A serial-mode reader with a keypad also gets a PIN
// identifier, used when policy puts the door in card + PIN mode. The
// returned func closes the keypad.
func newIdentifiers(rc controller.ReaderConfig, v *reader.Verifier, log *slog.Logger) (id, pinID *reader.Identifier, closeKeypad func(), err error) {
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
func policyOptions(cfg *controller.Config, log *slog.Logger) (policy.Options, error) {
	o := policy.Options{Log: log, Doors: map[string]policy.DoorOptions{}}
	for i, b := range cfg.BreakGlass {
		c, err := b.Credential()
		if err != nil {
			return o, fmt.Errorf("break_glass[%d]: %w", i, err)
		}
		o.BreakGlass = append(o.BreakGlass, policy.BreakGlass{Credential: c, Label: b.Label})
	}
	for _, d := range cfg.Doors {
		stale, err := controller.ParseFallback(d.OnStaleRevocations)
		if err != nil {
			return o, fmt.Errorf("door %q: on_stale_revocations: %w", d.Name, err)
		}
		clockFB, err := controller.ParseFallback(d.OnUntrustedClock)
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
	for i, c := range setups {
		for _, r := range []struct {
			name  string
			level gpio.Level
		}{{names[i].Relay, c.LockedLevel()}, {names[i].Relay2, c.Relay2.LockedLevel()}} {
			if r.name == "" {
				continue
			}
			p, err := door.OpenPin(r.name)
			if err == nil {
				err = p.Out(r.level)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("door %q: relay %s: %w", c.Name, r.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// releaseAgent builds the firmware release agent when the configuration
// pins release keys (nil otherwise). A release it activates is announced on
// activated, and the controller then exits for systemd to start it.
func releaseAgent(cfg *controller.Config, ecfg tsync.EdgeConfig, busy firmware.BusyChecker,
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

// releaseVerifier reads the pinned release public keys.
func releaseVerifier(fw controller.FirmwareConfig) (*firmware.Verifier, error) {
	var keys []ed25519.PublicKey
	for i, p := range fw.ReleaseKeys {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("firmware.release_keys[%d]: %w", i, err)
		}
		k, err := firmware.ParsePublicKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("firmware.release_keys[%d]: %s: %w", i, p, err)
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
func hqKeys(h controller.HQConfig) ([]ed25519.PublicKey, error) {
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
func hqTLS(h controller.HQConfig) (*tls.Config, error) {
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
	cfg, err := controller.LoadConfig(path)
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
	p, err := reader.OpenPCSC(nil)
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
// configured, pings it for as long as alive reports true. Without systemd
// ($NOTIFY_SOCKET unset) it does nothing.
func notifySystemd(ctx context.Context, wg *gosync.WaitGroup, log *slog.Logger, status string, alive func() bool) {
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.RunWatchdog(ctx, clock.System{}, timeout, alive, func(err error) {
			log.Warn("systemd watchdog ping failed", "err", err)
		})
	}()
}
