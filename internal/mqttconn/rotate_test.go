package mqttconn

import (
	"errors"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestRotator runs a Rotator through sequences of connections and
// reconnection attempts. Steps: "ok" a connection whose subscription
// succeeded, "refused" one whose subscription failed, "late-ok" the
// success of the connection before the last one arriving late, "dial"
// a reconnection attempt (paho's ReconnectHandler), "move" MoveOn.
func TestRotator(t *testing.T) {
	tests := []struct {
		name    string
		steps   string
		want    string // client ID after the steps
		servers string // broker hosts in order after the steps
	}{
		{"subscribed connections stay", "ok dial ok dial ok dial", "s/d", "a b c"},
		{"one refusal stays", "refused dial", "s/d", "a b c"},
		{"two refusals in a row move", "refused dial refused dial", "s/d/2", "b c a"},
		{"a success in between resets", "refused dial ok dial refused dial", "s/d", "a b c"},
		{"attempts without a connection do not count", "refused dial dial dial ok dial", "s/d", "a b c"},
		{"brokers down between refusals still move", "refused dial dial dial refused dial", "s/d/2", "b c a"},
		{"a late success of an old connection does not count", "refused dial refused late-ok dial", "s/d/2", "b c a"},
		{"keeps moving, and comes round", "refused dial refused dial refused dial refused dial refused dial refused dial", "s/d", "a b c"},
		{"moves on from the moved ID", "refused dial refused dial refused dial refused dial", "s/d/3", "c a b"},
		{"told to move on, moves at the next dial", "ok move dial", "s/d/2", "b c a"},
		{"told to move on, moves once", "ok move dial ok dial", "s/d/2", "b c a"},
		{"a move resets the refusals", "refused move dial refused dial", "s/d/2", "b c a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Settings{ClientID: "s/d"}.Rotator("/", slog.New(slog.NewTextHandler(io.Discard, nil)))
			o := mqtt.NewClientOptions().AddBroker("tcp://a:1").AddBroker("tcp://b:1").AddBroker("tcp://c:1").SetClientID("s/d")
			var prev uint64
			for _, step := range strings.Fields(tt.steps) {
				switch step {
				case "ok", "refused":
					var err error
					if step == "refused" {
						err = errors.New("refused")
					}
					gen := r.Connected()
					r.Subscribed(gen, err)
					prev = gen
				case "late-ok":
					r.Connected()
					r.Subscribed(prev, nil)
				case "move":
					r.MoveOn()
				case "dial":
					r.Reconnecting(nil, o)
				default:
					t.Fatalf("step %q", step)
				}
			}
			if got := r.ClientID(); got != tt.want || o.ClientID != tt.want {
				t.Errorf("client ID %q, options %q; want %q", got, o.ClientID, tt.want)
			}
			if got := hosts(o.Servers); got != tt.servers {
				t.Errorf("brokers %q, want %q", got, tt.servers)
			}
		})
	}
}

// hosts lists the host names of us.
func hosts(us []*url.URL) string {
	var h []string
	for _, u := range us {
		h = append(h, u.Hostname())
	}
	return strings.Join(h, " ")
}
