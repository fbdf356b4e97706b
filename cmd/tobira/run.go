package main

import (
	"context"
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

	"github.com/tobira-ac/tobira/controller"
	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/firmware/sdnotify"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	tsync "github.com/tobira-ac/tobira/sync"
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
	doors := make([]*door.Door, len(cfg.Doors))
	defer func() {
		for _, d := range doors {
			if d != nil {
				_ = d.Close()
			}
		}
	}()
	for i, dc := range cfg.Doors {
		pin, err := door.OpenPin(dc.RelayPin)
		if err != nil {
			return fmt.Errorf("door %q: %w", dc.Name, err)
		}
		doors[i], err = door.New(door.Config{Name: dc.Name, ActiveLow: dc.RelayActiveLow, FailSafe: dc.FailSafe,
			PulseLength: dc.Pulse.Duration}, pin, clk, log)
		if err != nil {
			return fmt.Errorf("door %q: %w", dc.Name, err)
		}
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
	store, err := policy.Open(filepath.Join(cfg.DataDir, "policy.db"), log)
	if err != nil {
		return err
	}
	defer store.Close()
	outbox, err := tsync.OpenOutbox(filepath.Join(cfg.DataDir, "events.db"))
	if err != nil {
		return err
	}
	defer outbox.Close()
	if v, err := store.Version(); err == nil && v == 0 {
		log.Warn("no allowlist snapshot yet: every card is denied until one is loaded", "path", filepath.Join(cfg.DataDir, "policy.db"))
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
	edge, err := tsync.NewEdge(tsync.EdgeConfig{Broker: cfg.HQ.Broker, Site: cfg.Site, Device: cfg.Device,
		TLS: tlsCfg, Username: cfg.HQ.Username, Password: password, Logger: log}, outbox)
	if err != nil {
		return err
	}

	pcsc, err := reader.OpenPCSC(log)
	if err != nil {
		return fmt.Errorf("PC/SC (is pcscd running?): %w", err)
	}
	defer pcsc.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg gosync.WaitGroup
	errc := make(chan error, len(doors)+3)
	var running atomic.Int32 // door loops alive, for the systemd watchdog
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := edge.Run(ctx); err != nil {
			errc <- fmt.Errorf("HQ link: %w", err)
		}
	}()
	for i, dc := range cfg.Doors {
		loop := &controller.Door{Name: dc.Name, Source: pcsc.Source(dc.Reader), Verifier: verifier,
			Decider: store, Lock: doors[i], Events: outbox, Notify: edge.Notify, Clock: clk, Log: log}
		wg.Add(1)
		running.Add(1)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			if err := loop.Run(ctx); err != nil {
				errc <- fmt.Errorf("door %q: %w", dc.Name, err)
			}
		}()
	}
	log.Info("tobira running", "version", version, "site", cfg.Site, "device", cfg.Device, "doors", len(doors))

	// Healthy: relays safe, databases open, trust anchors loaded, PC/SC up,
	// door loops and the HQ link started. HQ being reachable is not required:
	// a door must keep working offline, and so must an update.
	if trial != nil {
		if res, err := trial.ReportHealthy(ctx); err != nil {
			log.Error("firmware: could not commit the release on trial", "err", err)
		} else if res.Outcome != "" {
			log.Info("firmware: release committed", "outcome", res.Outcome, "reason", res.Reason)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := trial.Supervise(ctx); err != nil {
				errc <- err
			}
		}()
	}
	notifySystemd(ctx, &wg, log, fmt.Sprintf("%d door(s) running", len(doors)), func() bool {
		return int(running.Load()) == len(doors)
	})
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	log.Info("tobira stopped")
	return err
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
	if cfg.HQ.PasswordFile != "" {
		if _, err := os.Stat(cfg.HQ.PasswordFile); err != nil {
			return fmt.Errorf("%s: hq.password_file: %w", path, err)
		}
	}
	fmt.Fprintf(stdout, "%s: ok: site %s, device %s, %d trust anchor(s), %d door(s)\n",
		path, cfg.Site, cfg.Device, len(anchors), len(cfg.Doors))
	for _, d := range cfg.Doors {
		mode := "fail-secure"
		if d.FailSafe {
			mode = "fail-safe"
		}
		fmt.Fprintf(stdout, "  door %q: reader %q, relay %s (active-low %t, %s), pulse %s\n",
			d.Name, d.Reader, d.RelayPin, d.RelayActiveLow, mode, d.Pulse.Duration)
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
