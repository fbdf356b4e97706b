package mqttconn

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/internal/clock"
)

// DefaultRefusedBeforeMove is how many connections in a row may end
// without their subscription before a Rotator moves the client on.
const DefaultRefusedBeforeMove = 2

// Rotator moves a client to another client ID and another broker when
// the broker keeps refusing its subscription. With a clean session the
// subscription is all a connection needs from the broker's memory, and
// one broker is known to lose it for good: RabbitMQ 3.10 names a client's
// subscription queue after its client ID
// (mqtt-subscription-{client ID}qos1), and after a node is killed it may
// keep that queue's record with a dead process. Every later subscription
// under that client ID is refused ("home node ... is down or
// inaccessible") and the connection closed, on every node, until an
// operator deletes the queue. Under the next client ID the queue is new
// and lives on the node connected to.
//
// Wire it into a connection with SetReconnectingHandler(r.Reconnecting);
// on every connection call Connected, then Subscribed with the
// subscription's outcome (Subscribe does both steps for a subscribe). A
// Rotator is safe for concurrent use.
type Rotator struct {
	ids   []string
	after int
	log   *slog.Logger

	mu         sync.Mutex
	at         int    // index in ids of the client ID in use
	gen        uint64 // connections so far
	connected  bool   // a connection was made since the last reconnection attempt
	subscribed bool   // ... and its subscription succeeded
	refused    int    // connections in a row that ended without their subscription
	moveOn     bool   // MoveOn was called: move at the next reconnection
}

// NewRotator returns a Rotator cycling through ids (the first is the
// client ID in use; every ID must be one the broker accepts for this
// client) after DefaultRefusedBeforeMove refused connections in a row.
func NewRotator(ids []string, log *slog.Logger) *Rotator {
	return &Rotator{ids: slices.Clone(ids), after: DefaultRefusedBeforeMove, log: log}
}

// ClientID returns the client ID in use.
func (r *Rotator) ClientID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[r.at]
}

// Connected records a new connection and returns its number, for
// Subscribed.
func (r *Rotator) Connected() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.connected, r.subscribed = true, false
	return r.gen
}

// Subscribed records the outcome of connection gen's subscription (nil:
// it succeeded). An outcome of an earlier connection is ignored.
func (r *Rotator) Subscribed(gen uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen {
		return
	}
	r.subscribed = err == nil
	if r.subscribed {
		r.refused = 0
	}
}

// MoveOn makes the next reconnection move to the next client ID and
// broker whatever the subscriptions did: the connection delivers
// nothing though its subscription succeeded (see Dropper).
func (r *Rotator) MoveOn() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.moveOn = true
}

// Reconnecting is a paho ReconnectHandler: paho calls it before every
// attempt to reconnect, with the options it will dial with. When the
// connections that ended without their subscription reach the limit,
// it sets the next client ID and moves the broker tried first to the
// end of the list.
func (r *Rotator) Reconnecting(_ mqtt.Client, o *mqtt.ClientOptions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.connected && !r.subscribed {
		r.refused++
	}
	r.connected, r.subscribed = false, false
	if (r.refused < r.after && !r.moveOn) || len(r.ids) < 2 {
		return
	}
	from, why := r.ids[r.at], "the broker refused the subscription of connections in a row"
	if r.moveOn {
		why = "the connection delivered nothing"
	}
	r.at = (r.at + 1) % len(r.ids)
	r.refused, r.moveOn = 0, false
	o.SetClientID(r.ids[r.at])
	if len(o.Servers) > 1 {
		o.Servers = append(o.Servers[1:], o.Servers[0])
	}
	r.log.Warn("moving to another client ID and broker", "why", why,
		"from_client_id", from, "client_id", r.ids[r.at], "first_broker", o.Servers[0].String())
}

// Rotator returns a Rotator for l's client ID and two more: the client
// ID followed by sep and 2, then 3 (the shipped brokers accept a
// device's "{site}/{device}" followed by "/..." and HQ's "tobira-hq"
// followed by "-...").
func (l Settings) Rotator(sep string, log *slog.Logger) *Rotator {
	return NewRotator([]string{l.ClientID, l.ClientID + sep + "2", l.ClientID + sep + "3"}, log)
}

// Subscribe subscribes c to filters with handler, waiting at most
// DefaultTokenTimeout, and records the outcome for r (nil: no Rotator).
// A SUBACK that refuses a filter (0x80) is an error naming the filter.
func Subscribe(ctx context.Context, clk clock.Clock, r *Rotator, c mqtt.Client, filters map[string]byte, handler mqtt.MessageHandler) error {
	var gen uint64
	if r != nil {
		gen = r.Connected()
	}
	err := subscribe(ctx, clk, c, filters, handler)
	if r != nil {
		r.Subscribed(gen, err)
	}
	return err
}

// subscribe subscribes c to filters and checks the broker's answer for
// each.
func subscribe(ctx context.Context, clk clock.Clock, c mqtt.Client, filters map[string]byte, handler mqtt.MessageHandler) error {
	tok := c.SubscribeMultiple(filters, handler)
	if err := WaitToken(ctx, clk, tok, DefaultTokenTimeout); err != nil {
		return err
	}
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	granted := st.Result()
	for _, f := range slices.Sorted(maps.Keys(granted)) {
		if granted[f] == 0x80 {
			return fmt.Errorf("the broker refused the subscription to %q", f)
		}
	}
	return nil
}
