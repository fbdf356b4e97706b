package mqttconn_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/mqttconn"
)

// A client wired with a Rotator and a Dropper, on a real mosquitto: a
// dropped connection comes back under the same client ID, and under the
// next one after MoveOn.
func TestDropperReconnects(t *testing.T) {
	m := mosquittotest.Start(t)
	l := mqttconn.Settings{Broker: m.URL(), ClientID: "s/d", ConnectRetry: 100 * time.Millisecond, MaxReconnect: 500 * time.Millisecond}
	rot := l.Rotator("/", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var d mqttconn.Dropper
	ids := make(chan string, 8)
	c := mqtt.NewClient(l.Options().
		SetReconnectingHandler(rot.Reconnecting).
		SetCustomOpenConnectionFn(d.Open).
		SetOnConnectHandler(func(c mqtt.Client) {
			r := c.OptionsReader()
			ids <- r.ClientID()
		}))
	c.Connect()
	defer c.Disconnect(0)
	for _, step := range []struct {
		what string
		do   func()
		want string
	}{
		{"first connection", func() {}, "s/d"},
		{"dropped", d.Drop, "s/d"},
		{"moved on and dropped", func() { rot.MoveOn(); d.Drop() }, "s/d/2"},
		{"dropped again", d.Drop, "s/d/2"},
	} {
		step.do()
		select {
		case got := <-ids:
			if got != step.want {
				t.Fatalf("%s: connected as %q, want %q", step.what, got, step.want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no connection within 30 s", step.what)
		}
	}
}
