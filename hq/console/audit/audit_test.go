package audit

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
)

// newLog returns a log in a fresh file, with three entries.
func newLog(t *testing.T) (*Log, *bolt.DB) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "console.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	l, err := New(db, []byte("test/1"), func() time.Time { now = now.Add(time.Second); return now })
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Entry{
		{Actor: "alice", Action: "login", Addr: "192.0.2.1"},
		{Actor: "alice", Action: "command", Target: "tokyo/gate-1", After: "=lockdown"},
		{Actor: "alice", Action: "logout"},
	} {
		if _, err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	return l, db
}

// edit rewrites entry seq of db's log with fn.
func edit(t *testing.T, db *bolt.DB, seq uint64, fn func(*Entry) []byte) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		var e Entry
		if err := json.Unmarshal(b.Get(boltfile.SeqKey(seq)), &e); err != nil {
			return err
		}
		v := fn(&e)
		if v == nil {
			return b.Delete(boltfile.SeqKey(seq))
		}
		return b.Put(boltfile.SeqKey(seq), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	marshal := func(e *Entry) []byte { b, _ := json.Marshal(e); return b }
	tests := []struct {
		name string
		fn   func(*Entry) []byte // nil: no edit
		want string
	}{
		{"intact", nil, ""},
		{"edited field", func(e *Entry) []byte { e.Actor = "mallory"; return marshal(e) }, "entry 2 does not match its hash"},
		{"edited and rehashed", func(e *Entry) []byte { e.Actor = "mallory"; e.Hash = e.hash(); return marshal(e) }, "entry 3 does not follow the hash of entry 2"},
		{"deleted", func(*Entry) []byte { return nil }, "entry 3 follows entry 1"},
		{"garbage", func(*Entry) []byte { return []byte("{") }, "entry 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, db := newLog(t)
			if tt.fn != nil {
				edit(t, db, 2, tt.fn)
			}
			n, head, err := l.Verify()
			if tt.want == "" {
				if err != nil || n != 3 || len(head) != 64 {
					t.Fatalf("Verify = %d, %q, %v", n, head, err)
				}
				return
			}
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify error %v, want ErrTampered naming %q", err, tt.want)
			}
		})
	}
}

// TestExport exports the log as CSV and JSON lines (paging is tested on
// every backend: TestBackends).
func TestExport(t *testing.T) {
	l, _ := newLog(t)
	var out bytes.Buffer
	if err := l.WriteCSV(&out); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) != 4 || rows[2][8] != "'=lockdown" {
		t.Errorf("CSV rows %q, %v; want 4 with the formula escaped", rows, err)
	}
	out.Reset()
	if err := l.WriteJSON(&out); err != nil || strings.Count(out.String(), "\n") != 3 {
		t.Errorf("JSON %q, %v", out.String(), err)
	}
}
