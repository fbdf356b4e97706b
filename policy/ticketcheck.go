package policy

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The online check of single-entry tickets: a gate that has a link asks HQ
// before it admits a ticket's entry, within a budget, as the best ticket
// scanners do. HQ answers from its durable mark store and records the
// admission in the same commit (first asker wins). No answer within the
// budget: the gate decides from its local marks (FlagTicketUnanswered).

// TicketAnswer is HQ's answer to an online check.
type TicketAnswer uint8

// Answers.
const (
	// TicketUnanswered: no answer within the budget (no link, HQ away, HQ
	// without an opinion); the gate decides locally.
	TicketUnanswered TicketAnswer = iota
	// TicketAdmit: HQ recorded this entry; no other gate had one.
	TicketAdmit
	// TicketUsed: HQ holds an entry of the ticket already (Holder).
	TicketUsed
)

// TicketVerdict is the outcome of an online check.
type TicketVerdict struct {
	// Answer is HQ's answer.
	Answer TicketAnswer
	// Holder is, for TicketUsed, the entry HQ holds; the store merges it.
	Holder UsedMark
}

// TicketCheck asks HQ whether the entry m (the mark the gate would record)
// may be admitted. It must return when ctx ends, with TicketUnanswered.
type TicketCheck func(ctx context.Context, m UsedMark) TicketVerdict

// ticketChecker is a TicketCheck with its budget.
type ticketChecker struct {
	check  TicketCheck
	budget time.Duration
}

// SetTicketCheck turns on the online check of single-entry ticket entries
// with budget (the longest a tap waits for HQ); a nil check or a budget of
// 0 turns it off. Safe to call at any time.
func (s *Store) SetTicketCheck(check TicketCheck, budget time.Duration) {
	if check == nil || budget <= 0 {
		s.ticketCheck.Store(nil)
		return
	}
	s.ticketCheck.Store(&ticketChecker{check: check, budget: budget})
}

// ticketStep applies the single-entry rule to ticket key of event ev at
// door in direction dir: with an online check, an entry the local marks
// allow is first put to HQ within the budget. It records the passage
// unless it is denied, and returns the denial reason and flags.
func (s *Store) ticketStep(key []byte, ev Event, door string, dir Direction, now time.Time) (Reason, Flags, error) {
	tc := s.ticketCheck.Load()
	var flags Flags
	if tc != nil && dir == DirectionIn {
		used, err := s.local.ticketUsed(key, ev)
		if err != nil || used {
			return ReasonTicketUsed, 0, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), tc.budget)
		v := tc.check(ctx, UsedMark{Ticket: key, Event: ev.ID, State: MarkIn, At: now, Door: door})
		cancel()
		switch v.Answer {
		case TicketUsed:
			if _, err := s.MergePeerMarks(context.Background(), []UsedMark{v.Holder}); err != nil {
				s.log.Warn("cannot merge the entry HQ holds", "err", err)
			}
			return ReasonTicketUsed, 0, nil
		case TicketAdmit:
			flags = FlagTicketOnline
		default:
			flags = FlagTicketUnanswered
		}
	}
	r, err := s.local.ticketPass(key, ev, door, dir, now)
	return r, flags, err
}

// ticketUsed reports whether the local marks refuse an entry of ticket key
// of event ev (ticketPass's rule, without recording).
func (l *localStore) ticketUsed(key []byte, ev Event) (bool, error) {
	var used bool
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(localMarks).Get(key)
		if v == nil {
			return nil
		}
		m, err := decodeMark(key, v)
		if err != nil {
			return err
		}
		used = m.State == MarkIn || !ev.Reentry
		return nil
	})
	return used, err
}
