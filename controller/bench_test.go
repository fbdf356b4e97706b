package controller

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
)

type nopLock struct{}

func (nopLock) Grant(context.Context) error { return nil }

// BenchmarkHandle measures one whole tap in-process: the card simulator's
// answers, certificate verification, Decide on a real bbolt snapshot, and
// the event appended to a real fsync'd outbox (the lock is a no-op). The
// sub-benchmark without the outbox shows tobira's own decision work.
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
	if err := store.ApplyFull(context.Background(), policy.Snapshot{Version: 1, Allow: []policy.Entry{{Credential: cred, Person: "p"}}}); err != nil {
		b.Fatal(err)
	}
	outbox, err := tsync.OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer outbox.Close()
	v := testIdentifier(b)
	for _, bc := range []struct {
		name   string
		events EventLog
	}{
		{"outbox=bbolt-fsync", outbox},
		{"outbox=none", discardLog{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := &ReaderLoop{Door: "bench", Identifier: v, Decider: store, Lock: nopLock{}, Events: bc.events, Log: slog.New(slog.DiscardHandler)}
			for b.Loop() {
				if tap := d.Handle(context.Background(), card); !tap.Decision.Granted {
					b.Fatalf("tap denied: %+v %v", tap.Decision, tap.ReadErr)
				}
			}
		})
	}
}

type discardLog struct{}

func (discardLog) Append(ev tsync.Event) (tsync.Event, error) { ev.Seq = 1; return ev, nil }
