package sdnotify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
)

// listen opens a unixgram socket at addr and returns a function that
// reads the next datagram.
func listen(t *testing.T, addr string) (recv func() string, quiet func() bool) {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	recv = func() string {
		t.Helper()
		if err := conn.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read datagram: %v", err)
		}
		return string(buf[:n])
	}
	// quiet reports whether no datagram is queued (datagrams are queued
	// synchronously by the sender's write).
	quiet = func() bool {
		t.Helper()
		if err := conn.SetReadDeadline(time.Now()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		_, err := conn.Read(buf)
		return errors.Is(err, os.ErrDeadlineExceeded)
	}
	return recv, quiet
}

func TestNotify(t *testing.T) {
	abstract := "@tobira-sdnotify-test-" + strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name, socket string
		states       []string
		want         string
	}{
		{"path ready", filepath.Join(t.TempDir(), "notify.sock"), []string{Ready}, "READY=1"},
		{"abstract ready and status", abstract, []string{Ready, Status("2 doors\nok")}, "READY=1\nSTATUS=2 doors ok"},
		{"watchdog", abstract + "-wd", []string{Watchdog}, "WATCHDOG=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv, _ := listen(t, tc.socket)
			t.Setenv("NOTIFY_SOCKET", tc.socket)
			n, err := New()
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Notify(tc.states...); err != nil {
				t.Fatal(err)
			}
			if got := recv(); got != tc.want {
				t.Errorf("datagram %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		socket string
		want   error
	}{{"", ErrNoSocket}, {"relative/sock", ErrBadEnv}} {
		if _, err := NewAt(tc.socket); !errors.Is(err, tc.want) {
			t.Errorf("NewAt(%q) = %v, want %v", tc.socket, err, tc.want)
		}
	}
	n, err := NewAt(filepath.Join(t.TempDir(), "nobody-listens"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil {
		t.Error("Notify to a socket nobody listens on succeeded")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
		ok, wantErr     bool
	}{
		{"unset", "", "", 0, false, false},
		{"30s", "30000000", "", 30 * time.Second, true, false},
		{"for this pid", "1000000", strconv.Itoa(os.Getpid()), time.Second, true, false},
		{"for another pid", "1000000", "1", 0, false, false},
		{"garbage", "soon", "", 0, false, true},
		{"zero", "0", "", 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			got, ok, err := WatchdogInterval()
			if (err != nil) != tc.wantErr || got != tc.want || ok != tc.ok {
				t.Errorf("WatchdogInterval() = %v, %v, %v; want %v, %v, error %v", got, ok, err, tc.want, tc.ok, tc.wantErr)
			}
		})
	}
}

func TestRunWatchdog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "wd.sock")
	recv, quiet := listen(t, sock)
	n, err := NewAt(sock)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(time.Unix(0, 0))
	var healthy atomic.Bool
	healthy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		n.RunWatchdog(ctx, clk, 10*time.Second, healthy.Load, func(err error) { t.Error(err) })
		close(done)
	}()
	waitTimer := func() {
		for clk.Pending() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if got := recv(); got != Watchdog {
		t.Fatalf("first ping %q", got)
	}
	waitTimer()
	clk.Advance(5 * time.Second)
	if got := recv(); got != Watchdog {
		t.Fatalf("second ping %q", got)
	}
	// Unhealthy: the loop keeps running but sends nothing, then pings
	// again once healthy.
	healthy.Store(false)
	waitTimer()
	clk.Advance(5 * time.Second)
	waitTimer()
	if !quiet() {
		t.Fatal("pinged while unhealthy")
	}
	healthy.Store(true)
	clk.Advance(5 * time.Second)
	if got := recv(); got != Watchdog {
		t.Fatalf("ping after recovery %q", got)
	}
	cancel()
	<-done
}
