package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/sync/proto"
)

// consoleStatusWait is how long the console's publisher listens for the
// devices' retained statuses before it publishes (as --status-wait of
// registry publish).
const consoleStatusWait = 2 * time.Second

// registryPublisher publishes the registry's snapshots for the console
// through the console's sender, as `tobira-hq snapshot publish` does
// (publishFromRegistry): once on the site's group topics for the devices
// at the common version, on their own topics for the others.
type registryPublisher struct {
	reg    *sharedRegistry
	sender *hq.Sender
}

// SnapshotGroups implements console.SnapshotPublisher: a site's snapshot
// goes to every device of the site (its group topics and, for devices
// behind, their own); there are no smaller groups to pick.
func (p registryPublisher) SnapshotGroups(context.Context, string) ([]string, error) { return nil, nil }

// PublishSnapshot implements console.SnapshotPublisher.
func (p registryPublisher) PublishSnapshot(ctx context.Context, site, group string, delta bool) ([]proto.Manifest, error) {
	if group != "" {
		return nil, fmt.Errorf("publish snapshot of %s to group %q: this HQ publishes to a site's devices, not to groups", site, group)
	}
	var sent []pending
	err := p.reg.with(ctx, func(r *registry.Registry) error {
		var err error
		sent, err = publishFromRegistry(ctx, p.sender, r, registryPublication{site: site, delta: delta, statusWait: consoleStatusWait}, io.Discard)
		return err
	})
	ms := make([]proto.Manifest, len(sent))
	for i, s := range sent {
		ms[i] = s.m
	}
	return ms, err
}

// openConsoleOps gives the console what it needs to publish snapshots
// (a registry and the sender) and to roll out releases (a release store
// and the signing key): each is left off, with a log line, when its
// settings are missing.
func (cs *consoleServer) openConsoleOps(ctx context.Context, cfg hq.Config, reg *sharedRegistry, releaseStore string, log *slog.Logger) {
	if reg != nil && cs.sender != nil {
		cs.snapshots = registryPublisher{reg: reg, sender: cs.sender}
	} else {
		log.Info("console: no registry or no signing key; the console publishes no snapshots")
	}
	if releaseStore == "" || cfg.Key == nil {
		log.Info("console: no release store (--store) or no signing key; the console rolls out no releases")
		return
	}
	cfg.ClientID = ""
	srv, err := hq.DialReleaseServer(ctx, cfg, cfg.Key, releaseStore)
	if err != nil {
		log.Warn("console: cannot start the release server; the console rolls out no releases", "broker", cfg.Broker, "err", err)
		return
	}
	cs.releaseServer = srv
	cs.releases = console.ReleaseStore{Server: srv, Dir: releaseStore}
}
