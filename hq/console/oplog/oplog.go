// Package oplog is the console's list of the operations started from it:
// the snapshot publications and the firmware rollouts, each with who
// started it, when, where and what was sent, for their watch pages and
// the lists of the newest. A Store keeps the newest Keep of each kind: in
// memory (NewMemory), in a bbolt file's "console_ops" bucket so a restart
// keeps them (Open), or in PostgreSQL (hq/pgstore), shared by every
// tobira-hq replica. The audit log keeps every operation, however old.
package oplog

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// Kind is what an operation is.
type Kind string

// The kinds of operation.
const (
	// Publication: a policy snapshot published to a site or group.
	Publication Kind = "publication"
	// Rollout: a firmware release offered to a group.
	Rollout Kind = "rollout"
)

// Keep is how many operations of each kind a Store keeps: adding one
// beyond deletes the oldest.
const Keep = 200

// Op is one operation started from the console.
type Op struct {
	// ID names it (in its watch page's URL).
	ID string `json:"id"`
	// Kind is publication or rollout.
	Kind Kind `json:"kind"`
	// Site and Group are where it went (Group "" for a whole site).
	Site  string `json:"site"`
	Group string `json:"group,omitempty"`
	// By is the account that started it; At when.
	By string    `json:"by"`
	At time.Time `json:"at"`
	// Snapshot is a publication's kind: full or delta.
	Snapshot string `json:"snapshot,omitempty"`
	// Version is a rollout's release.
	Version string `json:"version,omitempty"`
	// Manifests are a publication's manifests as sent.
	Manifests []proto.Manifest `json:"manifests,omitempty"`
	// Offers are the IDs of a rollout's offers as sent.
	Offers []string `json:"offers,omitempty"`
}

// Store keeps the operations.
type Store interface {
	// Add keeps op and deletes the oldest of its kind beyond Keep.
	Add(ctx context.Context, op Op) error
	// Get returns the operation id, false when none is kept.
	Get(ctx context.Context, id string) (Op, bool, error)
	// Recent returns up to n operations of kind, newest first (Newer),
	// without their Manifests and Offers.
	Recent(ctx context.Context, kind Kind, n int) ([]Op, error)
}

// Newer orders operations newest first (by At, then by ID).
func Newer(a, b Op) int {
	return cmp.Or(b.At.Compare(a.At), strings.Compare(b.ID, a.ID))
}

// head is op without its Manifests and Offers.
func head(op Op) Op {
	op.Manifests, op.Offers = nil, nil
	return op
}

// recent returns up to n of ops of kind, newest first, without their
// Manifests and Offers; ops is reordered.
func recent(ops []Op, kind Kind, n int) []Op {
	ops = slices.DeleteFunc(ops, func(op Op) bool { return op.Kind != kind })
	slices.SortFunc(ops, Newer)
	ops = ops[:min(n, len(ops))]
	for i := range ops {
		ops[i] = head(ops[i])
	}
	return ops
}

// overflow returns the IDs of the operations of kind in ops beyond the
// newest Keep; ops is reordered.
func overflow(ops []Op, kind Kind) []string {
	ops = slices.DeleteFunc(ops, func(op Op) bool { return op.Kind != kind })
	slices.SortFunc(ops, Newer)
	var ids []string
	for _, op := range ops[min(Keep, len(ops)):] {
		ids = append(ids, op.ID)
	}
	return ids
}

// memory is a Store in memory.
type memory struct {
	mu  sync.Mutex
	ops map[string]Op
}

// NewMemory returns a Store in memory (one process; a restart forgets).
func NewMemory() Store { return &memory{ops: map[string]Op{}} }

// Add implements Store.
func (m *memory) Add(_ context.Context, op Op) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops[op.ID] = op
	for _, id := range overflow(m.all(), op.Kind) {
		delete(m.ops, id)
	}
	return nil
}

// all returns the operations in any order.
func (m *memory) all() []Op {
	out := make([]Op, 0, len(m.ops))
	for _, op := range m.ops {
		out = append(out, op)
	}
	return out
}

// Get implements Store.
func (m *memory) Get(_ context.Context, id string) (Op, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	op, ok := m.ops[id]
	return op, ok, nil
}

// Recent implements Store.
func (m *memory) Recent(_ context.Context, kind Kind, n int) ([]Op, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return recent(m.all(), kind, n), nil
}
