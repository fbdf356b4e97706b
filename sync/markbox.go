package sync

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Outbox layout for ticket marks (their own durable channel, like
// enrollments):
//
//	marks/<seq>              = JSON proto.Mark, keyed by 8-byte seq
//	meta/marks_seq           = the last mark sequence number assigned
//	meta/marks_cursor        = the policy store's mark-log cursor taken so far
//	meta/peer_marks_cursor   = the last HQ sequence number of the site's marks applied
var (
	bucketMarks         = []byte("marks")
	keyMarksSeq         = []byte("marks_seq")
	keyMarksCursor      = []byte("marks_cursor")
	keyPeerMarksCursor  = []byte("peer_marks_cursor")
	errMarkSeqExhausted = fmt.Errorf("mark sequence numbers exhausted")
)

// takeMarks moves the marks the policy store recorded after the outbox's
// mark-log cursor into the outbox, numbered, together with the new cursor
// in one transaction (fsynced): a mark is either still in the store's log
// after the cursor or in the outbox, never lost between. It returns how
// many it took.
func (o *Outbox) takeMarks(store MarkStore) (int, error) {
	total := 0
	for {
		var cur uint64
		if err := o.db.View(func(tx *bolt.Tx) error {
			cur = boltfile.SeqOf(tx.Bucket(boltfile.MetaBucket).Get(keyMarksCursor))
			return nil
		}); err != nil {
			return total, fmt.Errorf("read mark cursor of outbox %s: %w", o.path, err)
		}
		marks, next, err := store.UsedMarks(cur, proto.MaxMarks)
		if err != nil {
			return total, fmt.Errorf("read marks after %d: %w", cur, err)
		}
		if next == cur {
			return total, nil
		}
		if err := o.appendMarks(cur, next, marks); err != nil {
			return total, err
		}
		total += len(marks)
	}
}

// appendMarks stores marks and moves the mark-log cursor from cur to next,
// unless another caller moved it first.
func (o *Outbox) appendMarks(cur, next uint64, marks []policy.UsedMark) error {
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(boltfile.MetaBucket)
		if boltfile.SeqOf(meta.Get(keyMarksCursor)) != cur {
			return nil // taken by another round
		}
		b := tx.Bucket(bucketMarks)
		b.FillPercent = 1
		seq := boltfile.SeqOf(meta.Get(keyMarksSeq))
		for _, m := range wireMarks(marks) {
			if seq == ^uint64(0) {
				return errMarkSeqExhausted
			}
			seq++
			v, err := json.Marshal(m)
			if err != nil {
				return fmt.Errorf("encode mark %d: %w", seq, err)
			}
			if err := b.Put(boltfile.SeqKey(seq), v); err != nil {
				return err
			}
		}
		if err := meta.Put(keyMarksSeq, boltfile.SeqKey(seq)); err != nil {
			return err
		}
		return meta.Put(keyMarksCursor, boltfile.SeqKey(next))
	})
	if err != nil {
		return fmt.Errorf("store %d marks in outbox %s: %w", len(marks), o.path, err)
	}
	return nil
}

// PendingMarks returns up to max ticket marks HQ has not acknowledged yet,
// oldest first, each with its outbox sequence number.
func (o *Outbox) PendingMarks(max int) ([]proto.Mark, error) {
	var out []proto.Mark
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMarks).Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			var m proto.Mark
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode mark %d: %w", boltfile.SeqOf(k), err)
			}
			m.Seq = boltfile.SeqOf(k)
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read marks of outbox %s: %w", o.path, err)
	}
	return out, nil
}

// AckMarks deletes the marks first..last (HQ has dealt with them for
// good). Numbers not held are not an error.
func (o *Outbox) AckMarks(first, last uint64) error {
	err := o.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMarks).Cursor()
		for k, _ := c.Seek(boltfile.SeqKey(first)); k != nil && boltfile.SeqOf(k) <= last; k, _ = c.Seek(boltfile.SeqKey(first)) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack marks %d..%d in outbox %s: %w", first, last, o.path, err)
	}
	return nil
}

// PeerMarksCursor returns the last HQ sequence number of the site's marks
// the device has applied (0: none).
func (o *Outbox) PeerMarksCursor() (uint64, error) {
	var c uint64
	err := o.db.View(func(tx *bolt.Tx) error {
		c = boltfile.SeqOf(tx.Bucket(boltfile.MetaBucket).Get(keyPeerMarksCursor))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read peer-marks cursor of outbox %s: %w", o.path, err)
	}
	return c, nil
}

// advancePeerCursor moves the peer-marks cursor to last when marks
// after+1..last continue it (after <= cursor < last), and returns the
// cursor it leaves.
func (o *Outbox) advancePeerCursor(after, last uint64) (uint64, error) {
	var c uint64
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(boltfile.MetaBucket)
		c = boltfile.SeqOf(meta.Get(keyPeerMarksCursor))
		if after > c || last <= c {
			return nil
		}
		c = last
		return meta.Put(keyPeerMarksCursor, boltfile.SeqKey(c))
	})
	if err != nil {
		return 0, fmt.Errorf("store peer-marks cursor %d in outbox %s: %w", last, o.path, err)
	}
	return c, nil
}

// resetPeerCursor sets the peer-marks cursor to 0 and returns it.
func (o *Outbox) resetPeerCursor() (uint64, error) {
	err := o.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(boltfile.MetaBucket).Put(keyPeerMarksCursor, boltfile.SeqKey(0))
	})
	if err != nil {
		return 0, fmt.Errorf("reset peer-marks cursor in outbox %s: %w", o.path, err)
	}
	return 0, nil
}
