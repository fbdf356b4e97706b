package hq

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/sync/proto"
)

// MarkStore keeps every site's ticket marks durably, numbered 1, 2, 3, ...
// per site (the cursor gates fetch from), with each ticket's history and
// the refusals and conflicts HQ reported. BoltMarks is the embedded
// implementation, hq/pgstore.Marks the PostgreSQL one; RecordMarks is the
// judgment both share. Record must be atomic per site, also across
// processes: two callers never get the same sequence number, and of two
// entries of one ticket judged at once, the second sees the first.
type MarkStore interface {
	// Record judges each of marks, which device sent, against its
	// ticket's history with judge, and stores in one commit (fsync'd
	// before it returns) those judge accepts and the reports of those it
	// refuses or finds conflicting. A mark the ticket's history already
	// holds (proto.Mark.Same) is a duplicate: skipped, not judged again.
	Record(ctx context.Context, site, device string, marks []proto.Mark, judge MarkJudge) (Recorded, error)
	// After returns up to limit marks of site with a sequence number above
	// after, in order, and the site's head (its latest sequence number).
	After(ctx context.Context, site string, after uint64, limit int) ([]proto.Mark, uint64, error)
	// Reports returns the refusals and conflicts recorded for site, oldest
	// first.
	Reports(ctx context.Context, site string) ([]MarkReport, error)
	// Close releases the store.
	Close() error
}

// MarkJudge decides one mark given its ticket's stored history (accepted
// marks, oldest At first).
type MarkJudge func(history []proto.Mark, m proto.Mark) MarkVerdict

// MarkVerdict is a MarkJudge's decision.
type MarkVerdict struct {
	// Refused, when not empty, says why the mark is refused; it is not
	// stored and not relayed.
	Refused string
	// Silent, with Refused, records no report (an online check answered
	// "used").
	Silent bool
	// Conflict, for an accepted entry, is the entry of the same ticket it
	// contradicts (two gates admitted a single-entry ticket).
	Conflict *proto.Mark
}

// Report kinds.
const (
	// ReportRefused: HQ refused a mark a device sent.
	ReportRefused = "refused"
	// ReportConflict: a single-entry ticket was admitted twice.
	ReportConflict = "conflict"
)

// MarkReport is a refusal or a conflict HQ recorded.
type MarkReport struct {
	// Kind is ReportRefused or ReportConflict.
	Kind string `json:"kind"`
	// Reason says why, for operators.
	Reason string `json:"reason"`
	// Device sent the mark.
	Device string `json:"device"`
	// Mark is the mark concerned.
	Mark proto.Mark `json:"mark"`
	// Other is, for a conflict, the entry it contradicts.
	Other *proto.Mark `json:"other,omitempty"`
	// Received is when HQ judged it.
	Received time.Time `json:"received"`
}

// Recorded is what Record did.
type Recorded struct {
	// Stored are the accepted marks with their site sequence numbers
	// (consecutive) and Device set.
	Stored []proto.Mark
	// Reports are the refusals and conflicts found.
	Reports []MarkReport
	// Duplicates counts marks already held.
	Duplicates int
	// Head is the site's latest sequence number after the commit.
	Head uint64
}

// MarkTx is what RecordMarks needs of a MarkStore's transaction, in which
// the site's head is locked.
type MarkTx interface {
	// History returns the stored history of ticket (accepted marks,
	// oldest At first).
	History(ticket []byte) ([]proto.Mark, error)
	// Put stores the accepted mark m (Seq and Device set) and hist, its
	// ticket's history with m in it.
	Put(m proto.Mark, hist []proto.Mark) error
}

// RecordMarks is MarkStore.Record's judgment, shared by the
// implementations: it judges each of marks, which device sent, against its
// ticket's history in tx, numbers the accepted ones from head+1 on and
// puts them in tx, and returns what it did, the reports stamped now. The
// caller stores the reports and the new head (Recorded.Head) in the same
// transaction.
func RecordMarks(tx MarkTx, head uint64, device string, marks []proto.Mark, judge MarkJudge, now time.Time) (Recorded, error) {
	var res Recorded
	hists := map[string][]proto.Mark{} // histories read or changed in this call
	for _, m := range marks {
		m.Device, m.Seq = device, 0
		hist, ok := hists[string(m.Ticket)]
		if !ok {
			var err error
			if hist, err = tx.History(m.Ticket); err != nil {
				return Recorded{}, err
			}
		}
		if slices.ContainsFunc(hist, m.Same) {
			res.Duplicates++
			continue
		}
		v := judge(hist, m)
		if v.Refused != "" && v.Silent {
			continue
		}
		if v.Refused != "" {
			res.Reports = append(res.Reports, MarkReport{Kind: ReportRefused, Reason: v.Refused, Device: device, Mark: m, Received: now})
			continue
		}
		head++
		m.Seq = head
		hist = addHistory(hist, m)
		hists[string(m.Ticket)] = hist
		if err := tx.Put(m, hist); err != nil {
			return Recorded{}, err
		}
		res.Stored = append(res.Stored, m)
		if v.Conflict != nil {
			res.Reports = append(res.Reports, MarkReport{Kind: ReportConflict, Reason: "single-entry ticket admitted at two gates",
				Device: device, Mark: m, Other: v.Conflict, Received: now})
		}
	}
	res.Head = head
	return res, nil
}

// MaxTicketMarks is how many marks of a ticket a MarkStore keeps as its
// history (older marks drop out of it).
const MaxTicketMarks = 64

// BoltMarks is the MarkStore in a bbolt file of its own:
//
//	meta/format                     = "tobira-hq-marks-v1"
//	sites/<site>/head               = 8-byte big-endian: the latest sequence number
//	sites/<site>/log/<seq>          = JSON proto.Mark with Seq and Device
//	sites/<site>/tickets/<ticket>   = JSON []proto.Mark: the ticket's accepted marks, by At
//	sites/<site>/reports/<n>        = JSON MarkReport, by 8-byte report number
type BoltMarks struct {
	db   *bolt.DB
	path string
	now  func() time.Time
}

var (
	marksFormat   = []byte("tobira-hq-marks-v1")
	bucketSites   = []byte("sites")
	bucketMarkLog = []byte("log")
	bucketTickets = []byte("tickets")
	bucketReports = []byte("reports")
	keyHead       = []byte("head")
)

// OpenBoltMarks opens (or creates) the mark store at path; now stamps
// reports (nil: time.Now).
func OpenBoltMarks(path string, now func() time.Time) (*BoltMarks, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltfile.OpenTimeout})
	if err != nil {
		return nil, fmt.Errorf("open HQ mark store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return boltfile.Init(tx, marksFormat, bucketSites) }); err != nil {
		db.Close()
		return nil, fmt.Errorf("open HQ mark store %s: %w", path, err)
	}
	if now == nil {
		now = time.Now
	}
	return &BoltMarks{db: db, path: path, now: now}, nil
}

// MarksPath returns where HQ keeps its mark store next to the bbolt event
// store at path: "hq.db" -> "hq-marks.db".
func MarksPath(path string) string {
	return strings.TrimSuffix(path, ".db") + "-marks.db"
}

// Close implements MarkStore.
func (s *BoltMarks) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close HQ mark store %s: %w", s.path, err)
	}
	return nil
}

// siteBuckets returns the site's bucket and its log, tickets and reports
// buckets, creating them.
func siteBuckets(tx *bolt.Tx, site string) (sb, log, tickets, reports *bolt.Bucket, err error) {
	if sb, err = tx.Bucket(bucketSites).CreateBucketIfNotExists([]byte(site)); err != nil {
		return
	}
	if log, err = sb.CreateBucketIfNotExists(bucketMarkLog); err != nil {
		return
	}
	if tickets, err = sb.CreateBucketIfNotExists(bucketTickets); err != nil {
		return
	}
	reports, err = sb.CreateBucketIfNotExists(bucketReports)
	return
}

// Record implements MarkStore.
func (s *BoltMarks) Record(ctx context.Context, site, device string, marks []proto.Mark, judge MarkJudge) (Recorded, error) {
	if err := ctx.Err(); err != nil {
		return Recorded{}, fmt.Errorf("record %d marks of %s/%s: %w", len(marks), site, device, err)
	}
	var res Recorded
	now := s.now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		sb, log, tickets, reports, err := siteBuckets(tx, site)
		if err != nil {
			return err
		}
		res, err = RecordMarks(boltMarkTx{log, tickets}, boltfile.SeqOf(sb.Get(keyHead)), device, marks, judge, now)
		if err != nil {
			return err
		}
		for _, r := range res.Reports {
			n, err := reports.NextSequence()
			if err != nil {
				return err
			}
			if err := putJSON(reports, binary.BigEndian.AppendUint64(nil, n), r); err != nil {
				return err
			}
		}
		return sb.Put(keyHead, boltfile.SeqKey(res.Head))
	})
	if err != nil {
		return Recorded{}, fmt.Errorf("record %d marks of %s/%s in %s: %w", len(marks), site, device, s.path, err)
	}
	return res, nil
}

// boltMarkTx is a MarkTx in a bbolt transaction: the site's log and
// tickets buckets.
type boltMarkTx struct{ log, tickets *bolt.Bucket }

// Put implements MarkTx.
func (t boltMarkTx) Put(m proto.Mark, hist []proto.Mark) error {
	if err := putJSON(t.log, boltfile.SeqKey(m.Seq), m); err != nil {
		return err
	}
	return putJSON(t.tickets, m.Ticket, hist)
}

// History implements MarkTx.
func (t boltMarkTx) History(ticket []byte) ([]proto.Mark, error) {
	v := t.tickets.Get(ticket)
	if v == nil {
		return nil, nil
	}
	var h []proto.Mark
	if err := json.Unmarshal(v, &h); err != nil {
		return nil, fmt.Errorf("decode history of ticket %x: %w", ticket, err)
	}
	return h, nil
}

// addHistory inserts m into h by At, keeping the newest MaxTicketMarks.
func addHistory(h []proto.Mark, m proto.Mark) []proto.Mark {
	i, _ := slices.BinarySearchFunc(h, m, func(a, b proto.Mark) int { return a.At.Compare(b.At) })
	h = slices.Insert(slices.Clone(h), i, m)
	if len(h) > MaxTicketMarks {
		h = h[len(h)-MaxTicketMarks:]
	}
	return h
}

// putJSON stores v as JSON under k.
func putJSON(b *bolt.Bucket, k []byte, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %x: %w", k, err)
	}
	return b.Put(bytes.Clone(k), j)
}

// After implements MarkStore.
func (s *BoltMarks) After(ctx context.Context, site string, after uint64, limit int) ([]proto.Mark, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("read marks of site %s: %w", site, err)
	}
	var out []proto.Mark
	var head uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSites).Bucket([]byte(site))
		if sb == nil {
			return nil
		}
		head = boltfile.SeqOf(sb.Get(keyHead))
		c := sb.Bucket(bucketMarkLog).Cursor()
		for k, v := c.Seek(boltfile.SeqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var m proto.Mark
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode mark %d: %w", boltfile.SeqOf(k), err)
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read marks of site %s after %d from %s: %w", site, after, s.path, err)
	}
	return out, head, nil
}

// Sites returns the sites that have marks or reports, in byte order.
func (s *BoltMarks) Sites(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read the sites of %s: %w", s.path, err)
	}
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSites).ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read the sites of %s: %w", s.path, err)
	}
	return out, nil
}

// Reports implements MarkStore.
func (s *BoltMarks) Reports(ctx context.Context, site string) ([]MarkReport, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read mark reports of site %s: %w", site, err)
	}
	var out []MarkReport
	err := s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSites).Bucket([]byte(site))
		if sb == nil || sb.Bucket(bucketReports) == nil {
			return nil
		}
		return sb.Bucket(bucketReports).ForEach(func(k, v []byte) error {
			var r MarkReport
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode report %x: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read mark reports of site %s from %s: %w", site, s.path, err)
	}
	return out, nil
}
