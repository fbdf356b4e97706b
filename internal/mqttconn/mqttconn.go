// Package mqttconn holds what the edge's link (sync) and HQ (hq) share
// about a paho connection to the broker: the settings and paho options,
// the broker URL check, waiting for a token, and the group of message
// handlers in flight.
package mqttconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/internal/clock"
)

// Connection defaults.
const (
	// DefaultConnectRetry is the pause between attempts of the first
	// connection.
	DefaultConnectRetry = 2 * time.Second
	// DefaultMaxReconnect caps paho's back-off between reconnection attempts.
	DefaultMaxReconnect = 10 * time.Second
	// DefaultTokenTimeout bounds the wait for a broker's answer to a
	// subscribe or a QoS 1 publish.
	DefaultTokenTimeout = 10 * time.Second
	// DisconnectQuiesce is how long a clean disconnect waits for work in
	// flight, in milliseconds (paho's unit).
	DisconnectQuiesce = 250
)

// Settings says how to reach and log in to the broker.
type Settings struct {
	// Broker is the paho broker URL (see CheckBrokerURL).
	Broker string
	// Fallbacks are further broker URLs, e.g. the other nodes of a
	// broker cluster. paho tries Broker, then each of them in order, on
	// every connection attempt and stays on the first that answers.
	Fallbacks []string
	// ClientID is the MQTT client ID, unique per broker.
	ClientID string
	// TLS, when set, is used for ssl:// and wss:// brokers.
	TLS *tls.Config
	// Username is the optional MQTT user name.
	Username string
	// Password is the optional MQTT password.
	Password string
	// ConnectRetry is the pause between attempts of the first connection.
	ConnectRetry time.Duration
	// MaxReconnect caps paho's back-off between reconnection attempts.
	MaxReconnect time.Duration
}

// CheckBrokerURL reports whether s is a broker URL paho can dial. The
// error names s; callers wrap it in their configuration error.
func CheckBrokerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("broker URL %q: %w", s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return fmt.Errorf("broker URL %q: scheme %q, want tcp, ssl, mqtt, mqtts, tls, ws or wss", s, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("broker URL %q has no host", s)
	}
	return nil
}

// Options returns paho options for l: MQTT 3.1.1, automatic reconnection,
// retry of the first connection, and message handlers run in their own
// goroutines (OrderMatters false) so that a slow handler never stalls
// paho's router. Callers add the session, will and handlers.
func (l Settings) Options() *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker(l.Broker).
		SetClientID(l.ClientID).
		SetProtocolVersion(4).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(l.ConnectRetry).
		SetMaxReconnectInterval(l.MaxReconnect).
		SetConnectTimeout(DefaultTokenTimeout).
		SetWriteTimeout(DefaultTokenTimeout).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(false)
	for _, b := range l.Fallbacks {
		o.AddBroker(b)
	}
	if l.TLS != nil {
		o.SetTLSConfig(l.TLS)
	}
	if l.Username != "" {
		o.SetUsername(l.Username)
	}
	if l.Password != "" {
		o.SetPassword(l.Password)
	}
	return o
}

// WaitToken waits for tok to complete, at most d by clk, or until ctx
// ends.
func WaitToken(ctx context.Context, clk clock.Clock, tok mqtt.Token, d time.Duration) error {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C():
		return fmt.Errorf("no answer from the broker within %v", d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HandlerGroup tracks paho callbacks in flight so that a Run can wait for
// them before returning: after Run, nothing touches the files it guards
// (the edge's outbox, HQ's store). The zero value is ready to use.
type HandlerGroup struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Enter registers a callback; false means Run is ending and the callback
// must do nothing.
func (g *HandlerGroup) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// Leave ends a callback registered by Enter.
func (g *HandlerGroup) Leave() { g.wg.Done() }

// CloseAndWait refuses further callbacks and waits for those in flight.
func (g *HandlerGroup) CloseAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
