package hq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// Fetch on connect (the topics: sync/proto/syncget.go). A device asks
// with a sync-get whenever it connects, and HQ answers from its Spool, so
// that nothing that decides who may pass depends on a retained message or
// a session the broker kept: the snapshot manifest published to the
// device when newer than the device's, the release offer in force for it,
// and the commands in force it lacks.

// resentCommandLifetime is the validity of a command HQ signs again for a
// sync answer.
const resentCommandLifetime = 5 * time.Minute

// handleSyncGet answers a device's sync-get from the spool.
func (h *Service) handleSyncGet(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	site, device, g, err := proto.DecodeSyncGet(topic, payload)
	if err != nil {
		h.log.Warn("rejected sync-get message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	h.relay.seen(site, device, true)
	if reason, detail := h.limits.request(site, device, proto.LeafSyncGet, len(payload)); reason != "" {
		h.refuse(ctx, site, device, reason, detail)
		return // the device asks again, less and less often
	}
	a, err := h.syncAnswer(ctx, site, device, g)
	if err != nil {
		h.log.Error("cannot answer sync-get; the device asks again", "topic", topic, "id", g.ID, "err", err)
		return
	}
	ansTopic := proto.SyncTopic(site, device)
	if err := publishJSONTo(ctx, pub, ansTopic, a); err != nil {
		h.log.Warn("cannot send sync answer; the device asks again", "topic", ansTopic, "id", g.ID, "err", err)
		return
	}
	h.log.Debug("answered sync-get", "site", site, "device", device, "id", g.ID,
		"snapshot", len(a.Snapshot) > 0, "release", len(a.Release) > 0, "commands", len(a.Commands))
}

// syncAnswer builds the answer to g of site/device. Without a spool HQ
// knows nothing in force, and says so.
func (h *Service) syncAnswer(ctx context.Context, site, device string, g proto.SyncGet) (proto.SyncAnswer, error) {
	a := proto.SyncAnswer{ID: g.ID}
	if h.spool == nil {
		return a, nil
	}
	if g.Wants(proto.WantSnapshot) {
		env, err := h.snapshotFor(ctx, site, device, g)
		if err != nil {
			return a, err
		}
		a.Snapshot = env
	}
	if g.Wants(proto.WantRelease) {
		offers, err := h.spool.Offers(ctx, site, device, g.Groups)
		if err != nil {
			return a, err
		}
		if o, ok := offerInForce(offers, h.clk.Now()); ok && o.Value.ID != g.Release {
			a.Release = o.Envelope
		}
	}
	if g.Wants(proto.WantCommands) {
		cmds, err := h.commandsToResend(ctx, site, device, g.Applied)
		if err != nil {
			return a, err
		}
		a.Commands = cmds
	}
	return a, nil
}

// snapshotFor returns the signed manifest of the transfer to offer
// site/device, which has version g.Snapshot: of the latest transfers to
// the device, its site (proto.SiteGroup) and its snapshot groups, those
// newer than its version, the newest that fits it (a full snapshot, or a
// delta from its version), else the newest (the device refuses it and says
// why). nil: none is newer.
func (h *Service) snapshotFor(ctx context.Context, site, device string, g proto.SyncGet) ([]byte, error) {
	latest := []func() (SpooledEnvelope[proto.Manifest], error){
		func() (SpooledEnvelope[proto.Manifest], error) { return h.spool.Latest(ctx, site, device) },
	}
	for _, gr := range append([]string{proto.SiteGroup}, g.SnapshotGroups...) {
		latest = append(latest, func() (SpooledEnvelope[proto.Manifest], error) { return h.spool.LatestGroup(ctx, site, gr) })
	}
	var best []byte
	var bestVersion uint64
	bestFits := false
	for _, read := range latest {
		l, err := read()
		if errors.Is(err, ErrNotSpooled) {
			continue
		}
		if err != nil {
			return nil, err
		}
		m := l.Value
		if m.Version <= g.Snapshot || len(l.Envelope) == 0 {
			continue
		}
		fits := m.Type == proto.SnapshotFull || m.From == g.Snapshot
		if best == nil || (fits && !bestFits) || (fits == bestFits && m.Version > bestVersion) {
			best, bestVersion, bestFits = l.Envelope, m.Version, fits
		}
	}
	return best, nil
}

// commandsToResend returns the signed commands in force for site/device
// that it must apply again, in order: from the first one it has not
// applied on, every one; those it lacks with their own IDs (its replay
// check refuses a second delivery), those it applied already with a new
// ID (they must come after the missing ones again), recorded in the spool
// in place of the old. The commands are signed with a fresh validity; HQ
// without a signing key sends the envelopes as they were sent, which the
// device refuses once they expired.
func (h *Service) commandsToResend(ctx context.Context, site, device string, applied []string) ([][]byte, error) {
	inForce, err := h.spool.Commands(ctx, site, device)
	if err != nil {
		return nil, err
	}
	now := h.clk.Now().UTC().Truncate(time.Second)
	var out [][]byte
	missing := false
	for _, c := range inForce {
		have := slices.Contains(applied, c.Value.ID)
		if have && !missing {
			continue
		}
		missing = true
		if h.relay.key == nil {
			if !have {
				out = append(out, c.Envelope)
			}
			continue
		}
		cmd := c.Value
		if have {
			cmd.ID = proto.NewCommandID()
		}
		cmd.Issued, cmd.Expires = now, now.Add(resentCommandLifetime)
		env, err := proto.SignCommand(h.relay.key, cmd)
		if err != nil {
			return nil, fmt.Errorf("sign command %s again: %w", c.Value.ID, err)
		}
		if have {
			if err := h.spool.PutCommand(ctx, SpooledEnvelope[proto.Command]{Value: cmd, Envelope: env}); err != nil {
				return nil, err
			}
		}
		out = append(out, env)
	}
	return out[:min(len(out), proto.MaxSyncCommands)], nil
}

// expected returns the newest transfer published to site/device: on its
// own topics or to its whole site (proto.SiteGroup). The error wraps
// ErrNotSpooled when there is none.
func (h *Service) expected(ctx context.Context, site, device string) (proto.Manifest, error) {
	dev, err := h.spool.Latest(ctx, site, device)
	if err != nil && !errors.Is(err, ErrNotSpooled) {
		return proto.Manifest{}, err
	}
	grp, gerr := h.spool.LatestGroup(ctx, site, proto.SiteGroup)
	switch {
	case gerr != nil && !errors.Is(gerr, ErrNotSpooled):
		return proto.Manifest{}, gerr
	case err != nil && gerr != nil:
		return proto.Manifest{}, err
	case err != nil || (gerr == nil && grp.Value.Version > dev.Value.Version):
		return grp.Value, nil
	}
	return dev.Value, nil
}
