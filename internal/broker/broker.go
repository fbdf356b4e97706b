// Package broker runs an embedded MQTT 3.1.1 broker (mochi-mqtt) for the
// demo and small single-machine setups, so that one process can hold the
// edge, the broker and HQ.
//
// DEMO ONLY: the broker lets every client connect and read or write every
// topic (mochi's allow-all hook), listens without TLS and keeps nothing
// across restarts. Real sites use mosquitto with TLS client certificates
// and an ACL that confines each device to its own topics.
package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Broker is a running embedded broker.
type Broker struct {
	srv       *mqtt.Server
	addr      string
	done      chan struct{} // closed once the broker has stopped
	closeOnce sync.Once
	closeErr  error
}

// Start runs an embedded MQTT 3.1.1 broker listening on addr (e.g.
// "127.0.0.1:0" for a free port); Addr reports the bound address. The
// broker stops when ctx ends or Close is called. log receives the broker's
// logs; nil discards them.
func Start(ctx context.Context, addr string, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", addr, err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: log})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		ln.Close()
		return nil, fmt.Errorf("start embedded broker on %s: add allow-all hook: %w", addr, err)
	}
	// mochi's TCP listener binds a fixed address itself; handing it our
	// listener lets addr be ":0".
	if err := srv.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("start embedded broker on %s: add listener: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("start embedded broker on %s: %w", addr, err)
	}
	b := &Broker{srv: srv, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
			b.Close()
		case <-b.done:
		}
	}()
	log.Info("embedded MQTT broker listening (demo only: no TLS, no authentication)", "addr", b.addr)
	return b, nil
}

// Addr returns the bound address, e.g. "127.0.0.1:41883".
func (b *Broker) Addr() string { return b.addr }

// URL returns the broker's URL for paho, e.g. "tcp://127.0.0.1:41883".
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Done returns a channel that is closed once the broker has stopped, by
// Close or because Start's context ended.
func (b *Broker) Done() <-chan struct{} { return b.done }

// Close stops the broker and disconnects its clients. It is safe to call
// more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		if err := b.srv.Close(); err != nil {
			b.closeErr = fmt.Errorf("stop embedded broker on %s: %w", b.addr, err)
		}
		close(b.done)
	})
	return b.closeErr
}
