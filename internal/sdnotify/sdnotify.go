// Package sdnotify speaks systemd's sd_notify protocol without cgo: it
// sends datagrams such as "READY=1" or "WATCHDOG=1" to the unix socket
// named by $NOTIFY_SOCKET (a leading '@' names an abstract socket), and
// reads the watchdog interval from $WATCHDOG_USEC.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// States a service sends (see sd_notify(3)).
const (
	// Ready tells systemd that start-up finished (Type=notify).
	Ready = "READY=1"
	// Stopping tells systemd that the service is shutting down.
	Stopping = "STOPPING=1"
	// Watchdog is the keep-alive ping for WatchdogSec=.
	Watchdog = "WATCHDOG=1"
)

// ErrNoSocket means $NOTIFY_SOCKET is not set: the process does not run
// under systemd (or NotifyAccess= excludes it). Callers usually ignore it.
var ErrNoSocket = errors.New("NOTIFY_SOCKET not set")

// ErrBadEnv means $NOTIFY_SOCKET or $WATCHDOG_USEC holds a value that is
// not a socket address or a positive number of microseconds.
var ErrBadEnv = errors.New("bad sd_notify environment")

// Notifier sends states to one notification socket.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns a Notifier for the socket named by $NOTIFY_SOCKET; it wraps
// ErrNoSocket when the variable is unset.
func New() (*Notifier, error) { return NewAt(os.Getenv("NOTIFY_SOCKET")) }

// NewAt returns a Notifier for socket (a path, or "@name" for an abstract
// socket).
func NewAt(socket string) (*Notifier, error) {
	switch {
	case socket == "":
		return nil, ErrNoSocket
	case socket[0] != '/' && socket[0] != '@':
		return nil, fmt.Errorf("%w: NOTIFY_SOCKET %q: want an absolute path or @name", ErrBadEnv, socket)
	}
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
}

// Notify sends one datagram holding the given states, one per line
// ("READY=1", "STATUS=serving 2 doors").
func (n *Notifier) Notify(states ...string) error {
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: dial %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sd_notify: send %q to %s: %w", states, n.addr.Name, err)
	}
	return nil
}

// Status formats a STATUS= state; new lines are replaced by spaces.
func Status(s string) string { return "STATUS=" + strings.ReplaceAll(s, "\n", " ") }

// WatchdogInterval returns the watchdog timeout systemd expects pings
// within ($WATCHDOG_USEC), and false when no watchdog is set for this
// process ($WATCHDOG_PID names another process, or the variable is
// unset).
func WatchdogInterval() (time.Duration, bool, error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, false, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || n <= 0 {
		return 0, false, fmt.Errorf("%w: WATCHDOG_USEC %q", ErrBadEnv, usec)
	}
	return time.Duration(n) * time.Microsecond, true, nil
}

// RunWatchdog pings WATCHDOG=1 every timeout/2 for as long as healthy
// returns true, until ctx is done. When healthy returns false it stops
// pinging, so systemd kills and restarts the service after the timeout:
// a hung loop is thereby detected. Send errors are returned to onError (may
// be nil) and do not stop the loop.
func (n *Notifier) RunWatchdog(ctx context.Context, clk clock.Clock, timeout time.Duration, healthy func() bool, onError func(error)) {
	every := timeout / 2
	for {
		if healthy == nil || healthy() {
			if err := n.Notify(Watchdog); err != nil && onError != nil {
				onError(err)
			}
		}
		t := clk.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
