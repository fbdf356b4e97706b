package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/credential"
)

// MarkState is where a ticket's holder went last.
type MarkState uint8

// The mark states.
const (
	// MarkIn: the ticket was used to enter.
	MarkIn MarkState = 1
	// MarkOut: the ticket was scanned at an exit after entering.
	MarkOut MarkState = 2
)

// UsedMark is a ticket "used" mark: the gates of one venue share them
// through HQ so that a ticket used at gate 1 is refused at gate 2. Marks
// merge by last writer wins on At (then In over Out, then Door), so every
// device ends with the same mark whatever the order of arrival.
type UsedMark struct {
	// Ticket is the ticket's credential key (credential.Credential.Key).
	Ticket []byte `json:"ticket"`
	// Event is the ticket's event ID.
	Event string `json:"event"`
	// State is the passage recorded.
	State MarkState `json:"state"`
	// At is when the gate recorded it (the gate's trusted time); a receiver
	// measures the gate-to-gate delay as its own time minus At.
	At time.Time `json:"at"`
	// Door is the gate that recorded it.
	Door string `json:"door"`
}

// newer reports whether m wins over o.
func (m UsedMark) newer(o UsedMark) bool {
	if !m.At.Equal(o.At) {
		return m.At.After(o.At)
	}
	if m.State != o.State {
		return m.State == MarkIn
	}
	return m.Door > o.Door
}

// markHere flags, in the stored state byte, a mark this device recorded
// itself (not merged from another gate).
const markHere = 0x80

// encodeMark encodes m as the local file stores it; here flags a mark this
// device recorded.
func encodeMark(m UsedMark, here bool) []byte {
	b := []byte{byte(m.State)}
	if here {
		b[0] |= markHere
	}
	b = binary.AppendVarint(b, m.At.UnixNano())
	b = appendString(b, m.Event)
	return appendString(b, m.Door)
}

// decodeMark decodes a stored mark of ticket.
func decodeMark(ticket, v []byte) (UsedMark, error) {
	m, _, err := decodeMarkHere(ticket, v)
	return m, err
}

// decodeMarkHere decodes a stored mark of ticket and whether this device
// recorded it.
func decodeMarkHere(ticket, v []byte) (UsedMark, bool, error) {
	m, err := decodeMarkBytes(ticket, v)
	return m, len(v) > 0 && v[0]&markHere != 0, err
}

// decodeMarkBytes is decodeMark's work.
func decodeMarkBytes(ticket, v []byte) (UsedMark, error) {
	if len(v) < 1 {
		return UsedMark{}, errors.New("empty mark")
	}
	m := UsedMark{Ticket: append([]byte(nil), ticket...), State: MarkState(v[0] &^ markHere)}
	n, k := binary.Varint(v[1:])
	if k <= 0 {
		return UsedMark{}, errors.New("bad mark time")
	}
	m.At = time.Unix(0, n)
	d := decoder{b: v[1+k:]}
	m.Event = d.string()
	m.Door = d.string()
	if m.State != MarkIn && m.State != MarkOut {
		return UsedMark{}, fmt.Errorf("mark state %d", m.State)
	}
	return m, d.end()
}

// ticketPass applies the single-entry rule to ticket key of event ev at door
// in direction dir, and records the passage unless it is denied.
func (l *localStore) ticketPass(key []byte, ev Event, door string, dir Direction, now time.Time) (Reason, error) {
	var out Reason
	err := l.db.Update(func(tx *bolt.Tx) error {
		marks := tx.Bucket(localMarks)
		var last *UsedMark
		if v := marks.Get(key); v != nil {
			m, err := decodeMark(key, v)
			if err != nil {
				return fmt.Errorf("%w: ticket mark: %w", ErrCorrupt, err)
			}
			last = &m
		}
		var state MarkState
		switch {
		case dir == DirectionIn && last != nil && (last.State == MarkIn || !ev.Reentry):
			out = ReasonTicketUsed
			return nil
		case dir == DirectionIn:
			state = MarkIn
		case last != nil && last.State == MarkIn:
			state = MarkOut
		default:
			return nil // an exit without an entry changes nothing
		}
		m := UsedMark{Ticket: key, Event: ev.ID, State: state, At: now, Door: door}
		if err := marks.Put(key, encodeMark(m, true)); err != nil {
			return err
		}
		log := tx.Bucket(localMarkLog)
		seq, err := log.NextSequence()
		if err != nil {
			return err
		}
		return log.Put(binary.BigEndian.AppendUint64(nil, seq), key)
	})
	if err != nil {
		return "", fmt.Errorf("ticket mark in %s: %w", l.path, err)
	}
	return out, nil
}

// UsedMarks returns up to limit ticket marks this device recorded after
// cursor since (0: from the start), for sync to send to HQ, and the cursor
// to pass next time. A ticket used twice since the cursor is sent with its
// latest mark, once per use.
func (s *Store) UsedMarks(since uint64, limit int) ([]UsedMark, uint64, error) {
	var out []UsedMark
	next := since
	err := s.local.db.View(func(tx *bolt.Tx) error {
		marks := tx.Bucket(localMarks)
		c := tx.Bucket(localMarkLog).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, since+1)); k != nil && len(out) < limit; k, v = c.Next() {
			next = binary.BigEndian.Uint64(k)
			mv := marks.Get(v)
			if mv == nil {
				continue
			}
			m, err := decodeMark(v, mv)
			if err != nil {
				return fmt.Errorf("%w: ticket mark %x: %w", ErrCorrupt, v, err)
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, since, fmt.Errorf("read ticket marks after %d from %s: %w", since, s.local.path, err)
	}
	return out, next, nil
}

// MarkConflict is a peer's entry mark for a single-entry ticket that this
// device admitted itself: two gates admitted the same ticket (while they
// could not learn of each other's use). It is reported, never silent.
type MarkConflict struct {
	// Here is the entry this device recorded.
	Here UsedMark
	// Peer is the other gate's entry.
	Peer UsedMark
}

// MergeResult is what MergePeerMarks did.
type MergeResult struct {
	// Changed counts the marks that changed the local state.
	Changed int
	// Conflicts are the peer entries of single-entry tickets this device
	// had admitted itself.
	Conflicts []MarkConflict
}

// MergeUsedMarks is MergePeerMarks returning only how many marks changed
// the local state.
func (s *Store) MergeUsedMarks(ctx context.Context, marks []UsedMark) (int, error) {
	r, err := s.MergePeerMarks(ctx, marks)
	return r.Changed, err
}

// MergePeerMarks merges ticket marks received from HQ (other gates of the
// venue) in one transaction. A mark older than the local one for the same
// ticket is ignored, so merging is idempotent and order-independent. A
// peer's entry for a ticket of a single-entry event (no Reentry) whose
// local mark is an entry this device recorded itself at another instant
// or door is a conflict: both gates admitted it. The merge still keeps the
// newest mark, and the result lists the conflict for the caller to report.
func (s *Store) MergePeerMarks(ctx context.Context, marks []UsedMark) (MergeResult, error) {
	var res MergeResult
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("merge %d ticket marks: %w", len(marks), err)
	}
	rules := s.rules.Load()
	err := s.local.db.Update(func(tx *bolt.Tx) error {
		res = MergeResult{}
		b := tx.Bucket(localMarks)
		for i, m := range marks {
			c, err := credential.Parse(m.Ticket)
			if err == nil {
				_, err = entryKey(c)
			}
			if err != nil {
				return fmt.Errorf("%w: mark %d: ticket %x: %w", ErrInvalidSnapshot, i, m.Ticket, err)
			}
			if (m.State != MarkIn && m.State != MarkOut) || m.At.IsZero() {
				return fmt.Errorf("%w: mark %d: state %d at %v", ErrInvalidSnapshot, i, m.State, m.At)
			}
			if v := b.Get(m.Ticket); v != nil {
				old, here, err := decodeMarkHere(m.Ticket, v)
				if err == nil && here && conflicting(old, m, rules) {
					res.Conflicts = append(res.Conflicts, MarkConflict{Here: old, Peer: m})
				}
				if err == nil && !m.newer(old) {
					continue
				}
			}
			if err := b.Put(append([]byte(nil), m.Ticket...), encodeMark(m, false)); err != nil {
				return err
			}
			res.Changed++
		}
		return nil
	})
	if err != nil {
		return MergeResult{}, fmt.Errorf("merge %d ticket marks into %s: %w", len(marks), s.local.path, err)
	}
	return res, nil
}

// conflicting reports whether a peer's mark p contradicts the entry here
// that this device recorded: both are entries of a single-entry ticket,
// at another instant or door.
func conflicting(here, p UsedMark, r *rules) bool {
	if here.State != MarkIn || p.State != MarkIn || (here.At.Equal(p.At) && here.Door == p.Door) {
		return false
	}
	if r == nil {
		return true
	}
	ev, ok := r.events[p.Event]
	return !ok || !ev.Reentry
}
