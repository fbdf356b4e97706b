package hq_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/sync/proto"
)

// spools are the Spool implementations: a directory and PostgreSQL.
var spools = []struct {
	name string
	open func(t *testing.T) hq.Spool
}{
	{"file", func(t *testing.T) hq.Spool {
		s, err := hq.NewFileSpool(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"postgres", func(t *testing.T) hq.Spool {
		url := backends[1].newStore(t)
		st, err := pgstore.Open(context.Background(), url, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st.Spool()
	}},
}

func TestSpoolTransfers(t *testing.T) {
	for _, sp := range spools {
		t.Run(sp.name, func(t *testing.T) {
			s := sp.open(t)
			ctx := t.Context()
			if _, err := s.Latest(ctx, "s1", "d1"); !errors.Is(err, hq.ErrNotSpooled) {
				t.Fatalf("Latest of an empty spool: %v, want ErrNotSpooled", err)
			}
			if _, err := s.Transfer(ctx, proto.NewCommandID()); !errors.Is(err, hq.ErrNotSpooled) {
				t.Fatalf("Transfer of an empty spool: %v, want ErrNotSpooled", err)
			}
			payload := make([]byte, 2500)
			_, _ = rand.Read(payload)
			sum := sha256.Sum256(payload)
			m := proto.Manifest{Transfer: proto.NewCommandID(), Site: "s1", Device: "d1", Type: proto.SnapshotFull, Version: 3,
				Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:]), ChunkSize: 1000, Chunks: 3, Issued: time.Now().UTC().Truncate(time.Second)}
			env := []byte("signed manifest")
			if err := s.PutTransfer(ctx, m, env, bytes.NewReader(payload)); err != nil {
				t.Fatal(err)
			}
			l, err := s.Latest(ctx, "s1", "d1")
			if err != nil || l.Value.Transfer != m.Transfer || l.Value.Version != 3 || !bytes.Equal(l.Envelope, env) {
				t.Fatalf("Latest = %+v, %v; want transfer %s with its envelope", l, err, m.Transfer)
			}
			got, err := s.Transfer(ctx, m.Transfer)
			if err != nil || got.Chunks != 3 {
				t.Fatalf("Transfer = %+v, %v", got, err)
			}
			var all []byte
			for i := range got.Chunks {
				c, err := s.Chunk(ctx, got, i)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, c...)
			}
			if !bytes.Equal(all, payload) {
				t.Fatalf("chunks give %d bytes other than the payload's %d", len(all), len(payload))
			}
		})
	}
}

// modeCmd returns a signed-looking command of s1/d1.
func modeCmd(action, door, mode string) hq.SpooledEnvelope[proto.Command] {
	c := proto.Command{ID: proto.NewCommandID(), Site: "s1", Device: "d1", Action: action, Door: door, Mode: mode,
		Issued: time.Now().UTC().Truncate(time.Second)}
	c.Expires = c.Issued.Add(time.Minute)
	return hq.SpooledEnvelope[proto.Command]{Value: c, Envelope: []byte("env " + c.ID)}
}

func TestSpoolCommandsInForce(t *testing.T) {
	lockAll := modeCmd(proto.ActionLockdown, "", "")
	setA := modeCmd(proto.ActionSetMode, "a", "unlocked")
	setB := modeCmd(proto.ActionSetMode, "b", "unlocked")
	setA2 := modeCmd(proto.ActionSetMode, "a", "normal")
	unlock := modeCmd(proto.ActionUnlock, "a", "")
	releaseAll := modeCmd(proto.ActionRelease, "", "")
	for _, sp := range spools {
		t.Run(sp.name, func(t *testing.T) {
			s := sp.open(t)
			ctx := t.Context()
			for _, step := range []struct {
				put  hq.SpooledEnvelope[proto.Command]
				want []hq.SpooledEnvelope[proto.Command]
			}{
				{lockAll, []hq.SpooledEnvelope[proto.Command]{lockAll}},
				{setA, []hq.SpooledEnvelope[proto.Command]{lockAll, setA}},
				{setB, []hq.SpooledEnvelope[proto.Command]{lockAll, setA, setB}},
				{unlock, []hq.SpooledEnvelope[proto.Command]{lockAll, setA, setB}},
				{setA2, []hq.SpooledEnvelope[proto.Command]{lockAll, setB, setA2}},
				{releaseAll, []hq.SpooledEnvelope[proto.Command]{releaseAll}},
			} {
				if err := s.PutCommand(ctx, step.put); err != nil {
					t.Fatal(err)
				}
				got, err := s.Commands(ctx, "s1", "d1")
				if err != nil {
					t.Fatal(err)
				}
				if !slices.EqualFunc(got, step.want, func(a, b hq.SpooledEnvelope[proto.Command]) bool {
					return a.Value.ID == b.Value.ID && a.Value.Issued.Equal(b.Value.Issued) && bytes.Equal(a.Envelope, b.Envelope)
				}) {
					t.Fatalf("after %s %q: %d commands in force %v, want %v", step.put.Value.Action, step.put.Value.Door, len(got), ids(got), ids(step.want))
				}
			}
			if got, err := s.Commands(ctx, "s1", "other"); err != nil || len(got) != 0 {
				t.Fatalf("commands of another device: %v, %v", got, err)
			}
		})
	}
}

// ids returns the IDs of cs.
func ids(cs []hq.SpooledEnvelope[proto.Command]) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Value.ID[:6]
	}
	return out
}

func TestSpoolOffers(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	offer := func(device, group string) hq.SpooledEnvelope[proto.ReleaseOffer] {
		o := proto.ReleaseOffer{ID: proto.NewCommandID(), Site: "s1", Device: device, Group: group, Issued: now, Expires: now.Add(time.Hour),
			ChunkSize: 1000, Manifest: []byte("m")}
		return hq.SpooledEnvelope[proto.ReleaseOffer]{Value: o, Envelope: []byte("env " + o.ID)}
	}
	for _, sp := range spools {
		t.Run(sp.name, func(t *testing.T) {
			s := sp.open(t)
			ctx := t.Context()
			dev, old, grp, other := offer("d1", ""), offer("", "gates"), offer("", "gates"), offer("", "doors")
			for _, o := range []hq.SpooledEnvelope[proto.ReleaseOffer]{dev, old, grp, other} {
				if err := s.PutOffer(ctx, o); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Offers(ctx, "s1", "d1", []string{"gates"})
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for _, o := range got {
				gotIDs = append(gotIDs, o.Value.ID)
			}
			slices.Sort(gotIDs)
			want := []string{dev.Value.ID, grp.Value.ID}
			slices.Sort(want)
			if !slices.Equal(gotIDs, want) {
				t.Fatalf("offers %v, want the device's and the last of its group %v", gotIDs, want)
			}
			if got, err := s.Offers(ctx, "s1", "d2", nil); err != nil || len(got) != 0 {
				t.Fatalf("offers of another device without groups: %v, %v", got, err)
			}
		})
	}
}
