package sync

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"sync"

	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/sync/proto"
)

// ticketChecks is the edge's end of the online check of single-entry
// tickets (sync/proto/ticketcheck.go): Edge.CheckTicket publishes a check
// and waits for HQ's signed verdict with the same random ID, or for its
// context (the budget) to end.
type ticketChecks struct {
	pub    publisher
	up     func() bool
	v      *signed.Verifier
	log    *slog.Logger
	site   string
	device string

	mu      sync.Mutex
	pending map[uint64]chan proto.TicketVerdict
}

// routes implements feature: HQ's verdicts.
func (tc *ticketChecks) routes() []route {
	return []route{{topic: proto.TicketVerdictTopic(tc.site, tc.device), handle: tc.onVerdict}}
}

// connected implements feature; nothing to do.
func (tc *ticketChecks) connected(context.Context) {}

// run implements feature; checks run in the callers.
func (tc *ticketChecks) run(context.Context) {}

// notify implements feature; nothing to do.
func (tc *ticketChecks) notify() {}

// check asks HQ about entry m and waits for the verdict until ctx ends.
// Without a link it answers policy.TicketUnanswered at once.
func (tc *ticketChecks) check(ctx context.Context, m policy.UsedMark) policy.TicketVerdict {
	if !tc.up() {
		return policy.TicketVerdict{}
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	id := binary.BigEndian.Uint64(b[:])
	ch := make(chan proto.TicketVerdict, 1)
	tc.mu.Lock()
	tc.pending[id] = ch
	tc.mu.Unlock()
	defer func() {
		tc.mu.Lock()
		delete(tc.pending, id)
		tc.mu.Unlock()
	}()
	c := proto.TicketCheck{Site: tc.site, Device: tc.device, ID: id, Mark: wireMarks([]policy.UsedMark{m})[0]}
	if err := publishJSON(ctx, tc.pub, proto.TicketCheckTopic(tc.site, tc.device), c); err != nil {
		tc.log.Warn("ticket check not sent; deciding locally", "err", err)
		return policy.TicketVerdict{}
	}
	select {
	case v := <-ch:
		switch v.Verdict {
		case proto.VerdictAdmit:
			return policy.TicketVerdict{Answer: policy.TicketAdmit}
		case proto.VerdictUsed:
			return policy.TicketVerdict{Answer: policy.TicketUsed, Holder: storeMarks([]proto.Mark{*v.Holder})[0]}
		}
	case <-ctx.Done():
		tc.log.Info("ticket check unanswered within the budget; deciding locally")
	}
	return policy.TicketVerdict{}
}

// onVerdict hands a verified verdict to the check waiting for it.
func (tc *ticketChecks) onVerdict(_ context.Context, topic string, envelope []byte) {
	v, err := proto.OpenTicketVerdict(tc.v, envelope)
	if err == nil && (v.Site != tc.site || v.Device != tc.device) {
		err = proto.ErrWrongDevice
	}
	if err != nil {
		tc.log.Warn("refused ticket verdict", "topic", topic, "err", err)
		return
	}
	tc.mu.Lock()
	ch := tc.pending[v.ID]
	tc.mu.Unlock()
	if ch == nil {
		tc.log.Debug("ticket verdict for no pending check (late or replayed)", "id", v.ID)
		return
	}
	select {
	case ch <- v:
	default:
	}
}

// CheckTicket asks HQ about a single-entry ticket's entry m and waits for
// the verdict until ctx ends (the budget): it is a policy.TicketCheck for
// policy.Store.SetTicketCheck. Without EdgeConfig.TicketChecks, or without
// a link, it answers policy.TicketUnanswered at once.
func (e *Edge) CheckTicket(ctx context.Context, m policy.UsedMark) policy.TicketVerdict {
	if e.tickets == nil {
		return policy.TicketVerdict{}
	}
	return e.tickets.check(ctx, m)
}
