package hq_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// TestSyncGetCommandsInForce: HQ answers a device's sync-get with the
// commands in force it has not applied, signed again with a fresh
// validity: a lockdown of every door it lacks with its own ID (its replay
// check refuses a second delivery), and the later set_mode of one door it
// applied already with a new ID, so that it comes after the lockdown
// again. Once the device reports both applied, nothing is re-sent.
func TestSyncGetCommandsInForce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		m := mosquittotest.Start(t)
		pubKey, key, err := signed.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		spool := t.TempDir()
		runLimitedHQ(t, b, m, hq.Config{Logger: testLog(t), Key: key, Spool: spool})
		snd, err := hq.DialSender(t.Context(), hq.Config{Broker: m.URL(), ClientID: "sender", Spool: spool}, key)
		if err != nil {
			t.Fatal(err)
		}
		defer snd.Close()
		lock, err := snd.SendCommand(t.Context(), proto.Command{Site: "s1", Device: "d1", Action: proto.ActionLockdown})
		if err != nil {
			t.Fatal(err)
		}
		set, err := snd.SendCommand(t.Context(), proto.Command{Site: "s1", Device: "d1", Action: proto.ActionSetMode, Door: "a", Mode: "unlocked"})
		if err != nil {
			t.Fatal(err)
		}
		v, err := signed.NewVerifier(pubKey)
		if err != nil {
			t.Fatal(err)
		}
		c := device(t, m, "d1")
		answers := make(chan proto.SyncAnswer, 4)
		if tok := c.Subscribe(proto.SyncTopic("s1", "d1"), 1, func(_ mqtt.Client, msg mqtt.Message) {
			a, err := proto.DecodeSyncAnswer(msg.Payload())
			if err != nil {
				t.Errorf("sync answer: %v", err)
			}
			answers <- a
		}); !tok.WaitTimeout(limitsDeadline) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		ask := func(applied ...string) []proto.Command {
			t.Helper()
			g := proto.SyncGet{ID: proto.NewCommandID(), Want: []string{proto.WantCommands, proto.WantSnapshot}, Applied: applied}
			b, err := json.Marshal(g)
			if err != nil {
				t.Fatal(err)
			}
			pub(t, c, proto.SyncGetTopic("s1", "d1"), b)
			select {
			case a := <-answers:
				if a.ID != g.ID || len(a.Snapshot) != 0 {
					t.Fatalf("answer %s with a snapshot of %d bytes, want %s without", a.ID, len(a.Snapshot), g.ID)
				}
				var out []proto.Command
				for _, env := range a.Commands {
					cmd, err := proto.OpenCommand(v, env)
					if err != nil {
						t.Fatal(err)
					}
					if !time.Now().Before(cmd.Expires) {
						t.Fatalf("command %s re-sent expired (%v)", cmd.ID, cmd.Expires)
					}
					out = append(out, cmd)
				}
				return out
			case <-time.After(limitsDeadline):
				t.Fatal("no sync answer")
				return nil
			}
		}
		got := ask(set.ID)
		if len(got) != 2 || got[0].ID != lock.ID || got[0].Action != proto.ActionLockdown ||
			got[1].ID == set.ID || got[1].Action != proto.ActionSetMode || got[1].Door != "a" || got[1].Mode != "unlocked" {
			t.Fatalf("re-sent %+v, want the lockdown %s then the set_mode of door a under a new ID", got, lock.ID)
		}
		if again := ask(lock.ID, got[1].ID); len(again) != 0 {
			t.Fatalf("re-sent %+v to a device that applied every command in force", again)
		}
		if all := ask(); len(all) != 2 || !slices.ContainsFunc(all, func(c proto.Command) bool { return c.ID == got[1].ID }) {
			t.Fatalf("re-sent %+v to a device that applied none, want the lockdown and the set_mode %s", all, got[1].ID)
		}
	})
}
