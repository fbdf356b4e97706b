package sync

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Fetch on connect (the topics: sync/proto/syncget.go): after every
// (re)connection the device asks HQ for what is in force for it
// (sync-get), and asks again, less and less often, until HQ answers. The
// answer's signed pieces go to the features that take them as if they had
// come on their own topics: the snapshot manifest to the snapshot intake,
// the commands to the command intake (whose replay check makes a second
// delivery harmless), the release offer to the release agent. The
// retained manifest and offer stay a fast path; nothing depends on them.

// syncFetch is the feature that sends sync-get requests and takes their
// answers. The Edge runs one for snapshots and commands, the ReleaseAgent
// one for release offers, each on its own connection; both receive every
// answer on the device's sync topic and take only those to their own
// request.
type syncFetch struct {
	pub    publisher
	up     func() bool // connected and subscribed
	clk    clock.Clock
	log    *slog.Logger
	site   string
	device string
	ask    *askBackoff
	kick   chan struct{} // capacity 1
	// have returns the request without ID and Want: what the device has.
	have func() (proto.SyncGet, error)
	want []string
	// take hands the pieces of an answer on; nil for a piece not asked.
	snapshot, command, release func(ctx context.Context, envelope []byte)

	// deaf, when set, is told (and must not block) that deafAfter
	// requests asked again on one connection went unanswered: the Edge
	// reconnects under another client ID (Edge.deaf).
	deaf       func(why string)
	unanswered unanswered // requests asked again on this connection

	mu sync.Mutex
	id string // the request waiting for its answer; "": none
}

// routes implements feature: HQ's answers.
func (f *syncFetch) routes() []route {
	return []route{{topic: proto.SyncTopic(f.site, f.device), handle: f.onAnswer}}
}

// connected implements feature: every connection asks.
func (f *syncFetch) connected(ctx context.Context) {
	f.unanswered.reset()
	f.fetch(ctx)
}

// notify implements feature.
func (f *syncFetch) notify() {}

// run implements feature: it asks again while HQ does not answer, until
// ctx ends.
func (f *syncFetch) run(ctx context.Context) {
	for {
		var again = maxAskWait
		if f.up() {
			if wait := f.ask.reask(f.log, "what is in force", func() { f.askAgain(ctx) }); wait > 0 {
				again = wait
			}
		}
		if !waitRound(ctx, f.clk, f.kick, again) {
			return
		}
	}
}

// askAgain asks again, HQ not having answered, and tells deaf instead
// when that happened deafAfter times on this connection.
func (f *syncFetch) askAgain(ctx context.Context) {
	if f.unanswered.again(f.deaf, "what is in force") {
		f.fetch(ctx)
	}
}

// fetch sends a new sync-get; an answer to an earlier one no longer
// counts.
func (f *syncFetch) fetch(ctx context.Context) {
	g, err := f.have()
	if err != nil {
		f.log.Error("cannot tell HQ what this device has; asking for everything", "err", err)
		g = proto.SyncGet{}
	}
	g.ID, g.Want = proto.NewCommandID(), f.want
	f.mu.Lock()
	f.id = g.ID
	f.mu.Unlock()
	f.ask.asked()
	wake(f.kick)
	if err := publishJSON(ctx, f.pub, proto.SyncGetTopic(f.site, f.device), g); err != nil && ctx.Err() == nil {
		f.log.Warn("cannot ask HQ for what is in force; will ask again", "want", f.want, "err", err)
	}
}

// onAnswer takes HQ's answer to the request waiting for it.
func (f *syncFetch) onAnswer(ctx context.Context, topic string, payload []byte) {
	a, err := proto.DecodeSyncAnswer(payload)
	if err != nil {
		f.log.Warn("rejected sync answer", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	f.mu.Lock()
	mine := a.ID == f.id
	if mine {
		f.id = ""
	}
	f.mu.Unlock()
	if !mine {
		return // another connection's, or an earlier request's
	}
	f.ask.answered()
	f.unanswered.reset()
	f.log.Debug("HQ answered the request for what is in force", "id", a.ID,
		"snapshot", len(a.Snapshot) > 0, "release", len(a.Release) > 0, "commands", len(a.Commands))
	if len(a.Snapshot) > 0 && f.snapshot != nil {
		f.snapshot(ctx, a.Snapshot)
	}
	for _, c := range a.Commands {
		if f.command != nil {
			f.command(ctx, c)
		}
	}
	if len(a.Release) > 0 && f.release != nil {
		f.release(ctx, a.Release)
	}
}

// appliedCommands returns the IDs of the commands whose door modes are in
// force on the device (the outbox's saved modes), sorted.
func appliedCommands(ob *Outbox) ([]string, error) {
	modes, err := ob.SavedModes()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range modes {
		if m.Command != "" && !slices.Contains(ids, m.Command) {
			ids = append(ids, m.Command)
		}
	}
	slices.Sort(ids)
	return ids[:min(len(ids), proto.MaxSyncApplied)], nil
}
