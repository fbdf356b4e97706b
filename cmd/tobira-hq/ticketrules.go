package main

import (
	"context"
	"fmt"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// registryRules answers HQ's questions about tickets (hq.TicketRules) from
// the registry: in PostgreSQL, kept open; a bbolt file is opened for each
// question, so that admin commands can use it in between
// (sharedRegistry).
type registryRules struct{ reg *sharedRegistry }

// get reads the live record like it of site.
func (r registryRules) get(ctx context.Context, site string, it policy.Item) (policy.Item, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var out policy.Item
	var ok bool
	err := r.reg.with(ctx, func(reg *registry.Registry) error {
		var err error
		out, ok, err = reg.Get(site, it)
		return err
	})
	return out, ok, err
}

// TicketEvent implements hq.TicketRules.
func (r registryRules) TicketEvent(ctx context.Context, site, event string) (hq.TicketEvent, bool, error) {
	it, ok, err := r.get(ctx, site, policy.Event{ID: event})
	if err != nil || !ok {
		return hq.TicketEvent{}, false, err
	}
	ev, ok := it.(policy.Event)
	if !ok {
		return hq.TicketEvent{}, false, fmt.Errorf("registry %s: event %q is a %T", r.reg.at.name(), event, it)
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
		return nil, false, fmt.Errorf("registry %s: door %q is a %T", r.reg.at.name(), door, it)
	}
	return d.Groups, true, nil
}
