package e2e_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// A command's result published while no HQ service is subscribed (HQ
// restarting: it has a clean session, so the broker keeps nothing for it)
// reaches HQ's store with the device's next status.
func TestResultPublishedWhileHQAwayReachesHQ(t *testing.T) {
	m := mosquittotest.Start(t)
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	e, err := tsync.NewEdge(tsync.EdgeConfig{
		Broker: m.URL(), Site: "s1", Device: "d1", Keys: []ed25519.PublicKey{pub},
		Commands:       tsync.CommandFunc(func(context.Context, proto.Command) error { return nil }),
		StatusInterval: 200 * time.Millisecond, ConnectRetry: 100 * time.Millisecond, Logger: discardLogger(),
	}, newOutbox(t))
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, e.Run, func(error) {})
	// The command goes out once: the device must be subscribed first (a
	// clean session keeps nothing for a device not yet connected).
	waitFor(t, "the device to connect and subscribe", e.Connected)

	// No HQ service yet: only the admin CLI's sender hears the result.
	ctx, cancel := context.WithTimeout(t.Context(), linkDeadline)
	defer cancel()
	s, err := hq.DialSender(ctx, hq.Config{Broker: m.URL(), Logger: discardLogger()}, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := unlockDone(ctx, t, s)

	h := runHQWith(t, m.URL(), hq.Config{})
	waitFor(t, "HQ to store the result from the device's status", func() bool {
		r, ok, err := h.Result(c.ID)
		return err == nil && ok && r.Status == proto.ResultDone
	})
}
