package hq

import (
	"context"

	"github.com/tobira-ac/tobira/sync/proto"
)

// handleTicketCheck answers a gate's online check of a single-entry
// ticket's entry: HQ judges it like a mark; when no entry of the ticket is
// held it stores this one (in one commit with the judgment: the first
// asker wins), pushes it to the site's other gates and answers "admit";
// otherwise it answers "used" with the entry it holds. A mark HQ would
// refuse gets "unknown": the gate decides locally.
func (h *Service) handleTicketCheck(ctx context.Context, pub publishFunc, topic string, payload []byte) {
	c, err := proto.DecodeTicketCheck(topic, payload)
	if err != nil {
		h.log.Warn("rejected ticket-check message", "topic", topic, "bytes", len(payload), "err", err)
		return
	}
	if h.relay.key == nil {
		return // the gate's budget runs out: it decides locally
	}
	h.relay.seen(c.Site, c.Device, true)
	if reason, detail := h.limits.request(c.Site, c.Device, proto.LeafTicketCheck, len(payload)); reason != "" {
		h.refuse(ctx, c.Site, c.Device, reason, detail)
		return // the gate's budget runs out: it decides locally
	}
	verdict := proto.TicketVerdict{Site: c.Site, Device: c.Device, ID: c.ID, Verdict: proto.VerdictUnknown}
	var doors []string
	known := true
	if h.rules != nil {
		doors, known = h.deviceDoors(ctx, c.Site, c.Device)
	}
	lk, err := h.lookup(ctx, c.Site, []proto.Mark{c.Mark})
	if err == nil && known {
		var holder *proto.Mark
		base := h.judge(h.clk.Now(), doors, lk)
		judge := func(hist []proto.Mark, m proto.Mark) MarkVerdict {
			v := base(hist, m)
			if v.Refused == "" && v.Conflict != nil {
				holder = v.Conflict
				return MarkVerdict{Refused: "used", Silent: true}
			}
			return v
		}
		var res Recorded
		res, err = h.marks.Record(ctx, c.Site, c.Device, []proto.Mark{c.Mark}, judge)
		h.reportMarks(ctx, c.Site, res.Reports)
		switch {
		case err != nil:
		case holder != nil:
			verdict.Verdict, verdict.Holder = proto.VerdictUsed, holder
		case len(res.Stored) == 1:
			verdict.Verdict = proto.VerdictAdmit
			defer h.push(ctx, pub, c.Site, c.Device, res.Stored, res.Head)
		}
	}
	if err != nil {
		h.log.Error("cannot judge a ticket check; the gate decides locally", "topic", topic, "err", err)
	}
	env, err := proto.SignTicketVerdict(h.relay.key, verdict)
	if err == nil {
		err = pub(ctx, proto.TicketVerdictTopic(c.Site, c.Device), env)
	}
	if err != nil {
		h.log.Warn("cannot answer a ticket check; the gate decides locally", "topic", topic, "err", err)
	}
}
