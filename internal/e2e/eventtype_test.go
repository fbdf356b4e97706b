package e2e_test

import (
	"testing"

	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// TestHQRefusesUndefinedEventTypes: a device (here a raw MQTT client)
// sends events whose type docs/PROTOCOL.md does not define; HQ, through a
// real mosquitto, neither acknowledges nor stores them, and still takes the
// device's next valid batch.
func TestHQRefusesUndefinedEventTypes(t *testing.T) {
	m := mosquittotest.Start(t)
	h := runHQ(t, m.URL(), nil)
	c := rawClient(t, m.URL(), "rogue-device")
	waitHQSubscribed(t, c)
	acks := subscribeAcks(t, c, "s1", "d1")
	topic := proto.EventsTopic("s1", "d1")
	for _, typ := range []string{"admin_override", "Decision", "door ", "mark_conflict"} {
		publish(t, c, topic, []byte(`{"device":"d1","site":"s1","events":[{"seq":1,"time":"2026-04-01T09:00:00Z","type":"`+typ+`"}]}`))
	}
	publish(t, c, topic, []byte(`{"device":"d1","site":"s1","events":[{"seq":1,"time":"2026-04-01T09:00:00Z","type":"door","reason":"opened"}]}`))
	if a := nextAck(t, acks); a != `{"seq":1}` {
		t.Fatalf("first ack = %s, want {\"seq\":1} for the valid batch", a)
	}
	evs, err := h.Events("s1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Type != proto.TypeDoor || evs[0].Reason != "opened" {
		t.Fatalf("HQ stored %+v, want only the door event", evs)
	}
}
