package mqttconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// Dropper opens a client's network connections and can drop the current
// one, so that paho notices the loss and reconnects (calling its
// ReconnectHandler first: a Rotator moved on by MoveOn picks the next
// client ID there). paho has no call of its own for that. A client
// whose connection publishes but whose subscription delivers nothing (a
// RabbitMQ 3.10 subscription queue left without its consumer after a
// node restart) is dropped this way. Wire it with
// SetCustomOpenConnectionFn(d.Open). A Dropper is safe for concurrent
// use.
type Dropper struct {
	mu   sync.Mutex
	conn *droppable
}

// ErrDropped is what the reads of a dropped connection return.
var ErrDropped = errors.New("connection dropped: it delivered nothing")

// droppable is a connection whose reads fail with ErrDropped once it is
// dropped. paho takes a read error for a lost connection and reconnects,
// except the error of a connection closed under it, which it ignores:
// so Drop interrupts the read instead of closing.
type droppable struct {
	net.Conn
	dropped atomic.Bool
}

// Read implements net.Conn.
func (c *droppable) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.dropped.Load() {
		return 0, ErrDropped
	}
	return n, err
}

// Open is a paho OpenConnectionFunc: it opens the connection to uri as
// paho's own does (tcp and mqtt through a proxy from the environment,
// ssl, tls and mqtts with o.TLSConfig, ws and wss) and keeps it for
// Drop.
func (d *Dropper) Open(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	conn, err := open(uri, o)
	if err != nil {
		return nil, err
	}
	dc := &droppable{Conn: conn}
	d.mu.Lock()
	d.conn = dc
	d.mu.Unlock()
	return dc, nil
}

// Drop makes the connection opened last fail its reads; paho then
// closes it and reconnects. It does nothing before the first connection.
func (d *Dropper) Drop() {
	d.mu.Lock()
	conn := d.conn
	d.mu.Unlock()
	if conn == nil {
		return
	}
	conn.dropped.Store(true)
	if err := conn.SetReadDeadline(time.Now()); err != nil { // wakes the read in progress
		conn.Close() // no deadline: paho notices at its next keepalive
	}
}

// open dials uri the way paho 1.5's openConnection does.
func open(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	dialer := o.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	switch uri.Scheme {
	case "ws", "wss":
		var tlsc *tls.Config
		if uri.Scheme == "wss" {
			tlsc = o.TLSConfig
		}
		u := *uri
		u.User = nil
		return mqtt.NewWebsocket(u.String(), tlsc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	case "tcp", "mqtt":
		return proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		if os.Getenv("all_proxy") == "" {
			return tls.DialWithDialer(dialer, "tcp", uri.Host, o.TLSConfig)
		}
		conn, err := proxy.FromEnvironment().Dial("tcp", uri.Host)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(conn, o.TLSConfig)
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
	return nil, fmt.Errorf("broker URL %q: scheme %q cannot be dialed", uri, uri.Scheme)
}
