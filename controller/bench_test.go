package controller

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

type nopLock struct{}

func (nopLock) AllowGrant(bool) bool                        { return true }
func (nopLock) Grant(context.Context) error                 { return nil }
func (nopLock) AdminGrant(context.Context) error            { return nil }
func (nopLock) Indicate(context.Context, door.Signal) error { return nil }

// BenchmarkHandle measures one whole tap in-process: the card simulator's
// answers, certificate verification, Decide on a real bbolt snapshot, and
// the event appended to a real fsync'd outbox (the lock is a no-op). The
// sub-benchmark without the outbox shows tobira's own decision work, and
// the one with metrics what counting the tap adds to it.
func BenchmarkHandle(b *testing.B) {
	ca, _ := testPKI()
	card := testCard(b, 0x4001, time.Now().AddDate(1, 0, 0))
	dir := b.TempDir()
	store, err := policy.Open(filepath.Join(dir, "policy.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	cred := credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: ca.Cert.SubjectKeyId, Serial: []byte{0x40, 0x01}}
	if err := store.ApplyFull(context.Background(), oneDoorSnapshot("bench", policy.Entry{Credential: cred, Person: "p"})); err != nil {
		b.Fatal(err)
	}
	outbox, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer outbox.Close()
	v := testIdentifier(b)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		events  EventLog
		metrics TapRecorder
	}{
		{"outbox=bbolt-fsync", outbox, nil},
		{"outbox=none", discardLog{}, nil},
		{"outbox=none,metrics=on", discardLog{}, m},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := &ReaderLoop{Door: "bench", Identifier: v, Decider: store, Lock: nopLock{}, Events: bc.events, Metrics: bc.metrics,
				Log: slog.New(slog.DiscardHandler)}
			for b.Loop() {
				if tap := d.Handle(context.Background(), card); !tap.Decision.Granted {
					b.Fatalf("tap denied: %+v %v", tap.Decision, tap.ReadErr)
				}
			}
		})
	}
}

type discardLog struct{}

func (discardLog) Append(ev proto.Event) (proto.Event, error) { ev.Seq = 1; return ev, nil }

// oneDoorSnapshot is a version-1 snapshot with one door that every person of
// group "staff" may open at any time, and the given entries (their people
// in that group).
func oneDoorSnapshot(doorID string, entries ...policy.Entry) policy.Snapshot {
	snap := policy.Snapshot{Version: 1, Allow: entries,
		Doors:  []policy.Door{{ID: doorID, Groups: []string{"all"}}},
		Levels: []policy.AccessLevel{{ID: "staff-all", Group: "staff", DoorGroup: "all"}}}
	for _, e := range entries {
		snap.People = append(snap.People, policy.Person{ID: e.Person, Groups: []string{"staff"}})
	}
	return snap
}

// BenchmarkRecordTap measures what Metrics adds to one tap.
func BenchmarkRecordTap(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	tap := Tap{Door: "bench", Decision: policy.Decision{Granted: true, Reason: policy.ReasonEnrolled},
		ReadTime: 200 * time.Millisecond, DecideTime: 20 * time.Microsecond}
	for b.Loop() {
		m.RecordTap(tap)
	}
}
