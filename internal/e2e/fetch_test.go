package e2e_test

// Fetch on connect on real brokers: a device that was offline while HQ
// published a snapshot, a release offer and a lockdown connects to a
// broker that lost every retained message (mosquitto restarted without
// persistence), or to a RabbitMQ node that never had them (retained
// messages are per node), asks HQ for what is in force (sync-get), and
// gets all three from HQ's spool.

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/rabbittest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

func TestFetchOnConnectAfterBrokerLostRetained(t *testing.T) {
	m := mosquittotest.Start(t)
	// The broker forgets every retained manifest and offer, and HQ's
	// session.
	fetchOnConnect(t, m, m.URL(), m.URL(), func() { m.Restart(t) })
}

// On a RabbitMQ cluster, retained messages are kept per node: HQ publishes
// through node 2, the device connects to node 3, which never saw them.
func TestFetchOnConnectFromAnotherRabbitNode(t *testing.T) {
	c := rabbittest.Start(t, rabbittest.Options{})
	fetchOnConnect(t, nil, c.Nodes[1].MQTTURL(), c.Nodes[2].MQTTURL(), func() {})
}

// fetchOnConnect publishes a snapshot, a lockdown and a release offer to
// gate1 through the broker at hqURL (m, when not nil, is that broker), runs
// lose, then starts gate1 on deviceURL and checks that it gets all three.
func fetchOnConnect(t *testing.T, m *mosquittotest.Mosquitto, hqURL, deviceURL string, lose func()) {
	spool := t.TempDir()
	f := newRelFixtureAt(t, m, hqURL, spool)
	runHQWith(t, hqURL, hq.Config{Spool: spool, Key: f.hqPriv})
	ctx, cancel := context.WithTimeout(t.Context(), 2*linkDeadline)
	defer cancel()

	// Published while the device is away.
	snd, err := hq.DialSender(ctx, hq.Config{Broker: hqURL, Spool: spool, Logger: discardLogger()}, f.hqPriv)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	snap := filepath.Join(t.TempDir(), "snapshot")
	hash := writeFixtureFile(t, snap, 100, 2, "new-")
	if _, err := snd.PublishSnapshot(ctx, hq.SnapshotOffer{Site: relSite, Device: "gate1", Version: 2, Path: snap, ContentHash: hash}); err != nil {
		t.Fatal(err)
	}
	lockdown, err := snd.SendCommand(ctx, proto.Command{Site: relSite, Device: "gate1", Action: proto.ActionLockdown})
	if err != nil {
		t.Fatal(err)
	}
	env, bin := f.release(t, "1.1.0", 100_000, nil, nil)
	if _, err := f.srv.AddRelease(env, bin); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.Publish(ctx, hq.ReleasePublication{Site: relSite, Devices: []string{"gate1"}, Envelope: env}); err != nil {
		t.Fatal(err)
	}
	lose()

	store, ob := fetchEdge(t, deviceURL, "gate1", f.hqPub)
	d := f.device(t, "gate1", deviceURL, nil)
	select {
	case got := <-d.activated:
		if got.Version != "1.1.0" {
			t.Fatalf("activated %s, want 1.1.0", got.Version)
		}
	case <-ctx.Done():
		t.Fatalf("release offer not fetched: %v", ctx.Err())
	}
	waitFor(t, "the snapshot fetched and applied", func() bool {
		v, err := store.Version()
		return err == nil && v == 2
	})
	if got, err := store.ContentHash(); err != nil || got != hash {
		t.Fatalf("content hash %x, %v; want %x", got, err, hash)
	}
	waitFor(t, "the lockdown fetched and applied", func() bool {
		modes, err := ob.SavedModes()
		return err == nil && modes["front"] == tsync.SavedMode{Mode: "locked_down", Command: lockdown.ID}
	})
}

// fetchEdge runs an Edge for device that applies snapshots to a fresh
// policy store and records lockdowns as the mode of its one door "front",
// until the test ends.
func fetchEdge(t *testing.T, url, device string, key ed25519.PublicKey) (*policy.Store, *tsync.Outbox) {
	t.Helper()
	return policyEdge(t, url, device, "", key, func(cfg *tsync.EdgeConfig, ob *tsync.Outbox) {
		cfg.Commands = tsync.CommandFunc(func(_ context.Context, c proto.Command) error {
			if c.Action == proto.ActionLockdown {
				return ob.SaveMode("front", "locked_down", c.ID)
			}
			return nil
		})
		cfg.AckTimeout, cfg.Logger = 500*time.Millisecond, testLogger(t)
	})
}

// A device that was away while HQ published a snapshot once for its whole
// site, on a broker that lost the retained manifest, gets the group's
// manifest in HQ's sync answer and its chunks by asking HQ (need), which
// answers on the device's own chunk topic.
func TestFetchOnConnectGroupTransfer(t *testing.T) {
	m := mosquittotest.Start(t)
	spool := t.TempDir()
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	h := runHQWith(t, m.URL(), hq.Config{Spool: spool, Key: priv})
	ctx, cancel := context.WithTimeout(t.Context(), 2*linkDeadline)
	defer cancel()
	snd, err := hq.DialSender(ctx, hq.Config{Broker: m.URL(), Spool: spool, Logger: discardLogger()}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	snap := filepath.Join(t.TempDir(), "snapshot")
	hash := writeFixtureFile(t, snap, 100, 2, "new-")
	man, err := snd.PublishSnapshot(ctx, hq.SnapshotOffer{Site: "s1", Group: proto.SiteGroup, Version: 2, Path: snap, ContentHash: hash, ChunkSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	m.Restart(t)

	store, _ := policyEdge(t, m.URL(), "late", "", pub, func(cfg *tsync.EdgeConfig, _ *tsync.Outbox) {
		cfg.AckTimeout, cfg.Logger = 500*time.Millisecond, testLogger(t)
	})
	// The Sender subscribes again after the broker's restart; HQ holds
	// the result too.
	res, err := snd.WaitResults(ctx, man.Transfer, []string{"late"})
	if err != nil {
		t.Fatal(err)
	}
	if r := res["late"]; r.Status != proto.ResultDone || r.Version != 2 {
		t.Fatalf("result %+v, want done at version 2", r)
	}
	waitFor(t, "the device's result at HQ", func() bool {
		r, ok, err := h.Result(man.Transfer)
		return err == nil && ok && r.Device == "late" && r.Status == proto.ResultDone && r.Version == 2
	})
	if got, err := store.ContentHash(); err != nil || got != hash {
		t.Fatalf("content hash %x, %v; want %x", got, err, hash)
	}
	waitVersion(t, h, 2, 1)
	fl, err := h.Fleet()
	if err != nil {
		t.Fatal(err)
	}
	if len(fl) != 1 || fl[0].ExpectedVersion != 2 || fl[0].Drift {
		t.Fatalf("fleet %+v, want the device at the site's expected version 2 without drift", fl)
	}
	t.Logf("group transfer of %d chunks fetched by a late device", man.Chunks)
}
