package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/sync/proto"
)

// consoleStatusWait is how long the console's publisher listens for the
// devices' retained statuses before it publishes (as --status-wait of
// registry publish).
const consoleStatusWait = 2 * time.Second

// registryPublisher publishes the registry's snapshots for the console
// through the console's sender, as `tobira-hq registry publish` does
// (publishFromRegistry). The registry file is opened for each call.
type registryPublisher struct {
	path   string
	sender *hq.Sender
	log    *slog.Logger
}

// SnapshotGroups implements console.SnapshotPublisher: this HQ publishes
// a site's snapshot to each of its devices, with no groups.
func (p registryPublisher) SnapshotGroups(context.Context, string) ([]string, error) { return nil, nil }

// PublishSnapshot implements console.SnapshotPublisher.
func (p registryPublisher) PublishSnapshot(ctx context.Context, site, group string, delta bool) ([]proto.Manifest, error) {
	if group != "" {
		return nil, fmt.Errorf("publish snapshot of %s to group %q: this HQ publishes to a site's devices, not to groups", site, group)
	}
	r, err := openRegistry(p.path, p.log)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return publishFromRegistry(ctx, p.sender, r, site, nil, delta, 0, consoleStatusWait, io.Discard)
}

// openConsoleOps gives the console what it needs to publish snapshots
// (a registry and the sender) and to roll out releases (a release store
// and the signing key): each is left off, with a log line, when its
// settings are missing.
func (cs *consoleServer) openConsoleOps(ctx context.Context, cfg hq.Config, reg, releaseStore string, log *slog.Logger) {
	if reg != "" && cs.sender != nil {
		cs.snapshots = registryPublisher{path: reg, sender: cs.sender, log: log}
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
