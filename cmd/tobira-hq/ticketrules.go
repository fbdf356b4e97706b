package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// registryRules answers HQ's questions about tickets (hq.TicketRules) from
// the registry, opening the file for each one so that admin commands can
// use it in between.
type registryRules struct {
	path string
	log  *slog.Logger
}

// get reads the live record like it of site.
func (r registryRules) get(ctx context.Context, site string, it policy.Item) (policy.Item, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	reg, err := registry.Open(r.path, registry.Options{Logger: r.log})
	if err != nil {
		return nil, false, err
	}
	defer reg.Close()
	return reg.Get(site, it)
}

// TicketEvent implements hq.TicketRules.
func (r registryRules) TicketEvent(ctx context.Context, site, event string) (hq.TicketEvent, bool, error) {
	it, ok, err := r.get(ctx, site, policy.Event{ID: event})
	if err != nil || !ok {
		return hq.TicketEvent{}, false, err
	}
	ev, ok := it.(policy.Event)
	if !ok {
		return hq.TicketEvent{}, false, fmt.Errorf("registry %s: event %q is a %T", r.path, event, it)
	}
	return hq.TicketEvent{Start: ev.Start, End: ev.End, DoorGroup: ev.DoorGroup, Reentry: ev.Reentry}, true, nil
}

// DoorGroups implements hq.TicketRules.
func (r registryRules) DoorGroups(ctx context.Context, site, door string) ([]string, bool, error) {
	it, ok, err := r.get(ctx, site, policy.Door{ID: door})
	if err != nil || !ok {
		return nil, false, err
	}
	d, ok := it.(policy.Door)
	if !ok {
		return nil, false, fmt.Errorf("registry %s: door %q is a %T", r.path, door, it)
	}
	return d.Groups, true, nil
}
