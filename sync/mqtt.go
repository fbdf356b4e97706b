package sync

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

// Link defaults shared by Edge and HQ.
const (
	// DefaultConnectRetry is the pause between attempts of the first
	// connection.
	DefaultConnectRetry = 2 * time.Second
	// DefaultMaxReconnect caps paho's back-off between reconnection attempts.
	DefaultMaxReconnect = 10 * time.Second
	// DefaultTokenTimeout bounds the wait for a broker's answer to a
	// subscribe or a QoS 1 publish.
	DefaultTokenTimeout = 10 * time.Second
	// disconnectQuiesce is how long a clean disconnect waits for work in
	// flight, in milliseconds (paho's unit).
	disconnectQuiesce = 250
)

// link holds what Edge and HQ share about their broker connection.
type link struct {
	broker       string
	clientID     string
	tls          *tls.Config
	username     string
	password     string
	connectRetry time.Duration
	maxReconnect time.Duration
}

// checkBrokerURL reports whether s is a broker URL paho can dial.
func checkBrokerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: broker URL %q: %w", ErrConfig, s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return fmt.Errorf("%w: broker URL %q: scheme %q, want tcp, ssl, mqtt, mqtts, tls, ws or wss", ErrConfig, s, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: broker URL %q has no host", ErrConfig, s)
	}
	return nil
}

// options returns paho options for l: MQTT 3.1.1, automatic reconnection,
// retry of the first connection, and message handlers run in their own
// goroutines (OrderMatters false) so that a slow handler never stalls paho's
// router.
func (l link) options() *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker(l.broker).
		SetClientID(l.clientID).
		SetProtocolVersion(4).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(l.connectRetry).
		SetMaxReconnectInterval(l.maxReconnect).
		SetConnectTimeout(DefaultTokenTimeout).
		SetWriteTimeout(DefaultTokenTimeout).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(false)
	if l.tls != nil {
		o.SetTLSConfig(l.tls)
	}
	if l.username != "" {
		o.SetUsername(l.username)
	}
	if l.password != "" {
		o.SetPassword(l.password)
	}
	return o
}

// waitToken waits for tok to complete, at most d by clk, or until ctx ends.
func waitToken(ctx context.Context, clk clock.Clock, tok mqtt.Token, d time.Duration) error {
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

// handlerGroup tracks paho callbacks in flight so that Run can wait for them
// before returning: after Run, nothing touches the Outbox or the HQ file.
type handlerGroup struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// enter registers a callback; false means Run is ending and the callback
// must do nothing.
func (g *handlerGroup) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// leave ends a callback registered by enter.
func (g *handlerGroup) leave() { g.wg.Done() }

// closeAndWait refuses further callbacks and waits for those in flight.
func (g *handlerGroup) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
