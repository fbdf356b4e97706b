// Package pcsctest gives integration tests a real PC/SC stack: pcscd with
// the vsmartcard vpcd driver, and simulated cards inserted through vpcd.
// When pcscd or the driver is missing, tests are skipped, or failed when the
// environment has CI=true.
//
// vpcd listens on fixed ports, so tests using it must not overlap. Start
// takes a machine-wide file lock that it holds until the test ends, which
// serialises such tests across packages (go test runs packages in
// parallel).
package pcsctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/testenv"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/pcsc"
)

// Well-known names of the vpcd stack.
const (
	// Reader is the PC/SC name of vpcd slot 0.
	Reader = "Virtual PCD 00 00"
	// VPCDAddr is where vpcd slot 0 listens for a virtual card.
	VPCDAddr = cardsim.DefaultVPCDAddr
	// DriverPath is the vpcd driver pcscd must load.
	DriverPath = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
	// SocketPath is pcscd's client socket.
	SocketPath = "/run/pcscd/pcscd.comm"
)

// readyTimeout bounds the wait for pcscd to list the vpcd reader.
const readyTimeout = 20 * time.Second

// LockPath is the file locked while a test uses vpcd.
var LockPath = filepath.Join(os.TempDir(), "tobira-vpcd.lock")

// Start makes sure pcscd is running with the vpcd reader listed, starting
// `pcscd --foreground` when no pcscd is running (and stopping it when the
// test ends), and holds the vpcd lock until the test ends.
func Start(t testing.TB) {
	t.Helper()
	pcscd, err := exec.LookPath("pcscd")
	if err != nil {
		pcscd = "/usr/sbin/pcscd"
	}
	if _, err := os.Stat(pcscd); err != nil {
		skipOrFail(t, fmt.Sprintf("pcscd not installed: %v", err))
	}
	if _, err := os.Stat(DriverPath); err != nil {
		skipOrFail(t, fmt.Sprintf("vpcd driver (vsmartcard-vpcd) not installed: %v", err))
	}
	lock(t)
	var out *syncBuffer
	if !running() {
		owned = &ownedPCSCD{path: pcscd}
		t.Cleanup(func() { owned = nil })
		out = startPCSCD(t, pcscd)
		owned.out = out
	}
	if err := waitReader(t.Context(), out); err != nil {
		if out != nil {
			t.Logf("pcscd output:\n%s", out.String())
		}
		t.Fatalf("pcsctest: %v", err)
	}
}

// ownedPCSCD is the pcscd Start started for the running test, nil when
// pcscd was already running. Guarded by the vpcd lock (one test at a time).
var owned *ownedPCSCD

type ownedPCSCD struct {
	path string
	out  *syncBuffer
	stop func()
}

// StopPCSCD stops the pcscd that Start started (the reader and the PC/SC
// service disappear, as when a reader is unplugged and pcscd restarts) and
// returns a function that starts it again and waits for the reader. The
// test is skipped when pcscd was not started by Start.
func StopPCSCD(t testing.TB) (restart func()) {
	t.Helper()
	if owned == nil || owned.stop == nil {
		t.Skip("pcsctest: pcscd was already running, not started by this test: cannot restart it")
	}
	owned.stop()
	return func() {
		t.Helper()
		out := startPCSCD(t, owned.path)
		owned.out = out
		if err := waitReader(t.Context(), out); err != nil {
			t.Logf("pcscd output:\n%s", out.String())
			t.Fatalf("pcsctest: %v", err)
		}
	}
}

// Open starts the stack (Start) and opens a pcsc.Conn on it that logs to
// the test's output at level and is closed, its error checked, when the
// test ends. The context it returns ends after timeout, which bounds a test
// that a hung PC/SC call would otherwise stall.
func Open(t testing.TB, level slog.Level, timeout time.Duration) (*pcsc.Conn, context.Context) {
	t.Helper()
	Start(t)
	p, err := pcsc.Open(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return p, ctx
}

// Insert connects c to vpcd slot 0 and returns the bridge; the card is
// removed when the test ends. Call Start first.
func Insert(t testing.TB, c *cardsim.Card) *cardsim.Bridge {
	t.Helper()
	b := cardsim.NewBridge(VPCDAddr, cardsim.VPCD{Retry: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	if err := b.Insert(ctx, c); err != nil {
		t.Fatalf("pcsctest: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("pcsctest: %v", err)
		}
	})
	return b
}

// WaitCard waits until pcscd reports a card in Reader (present true) or an
// empty Reader (present false). pcscd polls vpcd, so a card removed and
// inserted again in quick succession may go unseen: tests that need pcscd
// to see a removal wait for it here.
func WaitCard(t testing.TB, present bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	if err := pcsc.WaitCard(ctx, Reader, present); err != nil {
		t.Fatalf("pcsctest: %v", err)
	}
}

func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	testenv.Missing(t, "pcsctest: %s", msg)
}

// lock takes the machine-wide vpcd lock until the test ends.
func lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("pcsctest: open lock: %v", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		t.Logf("pcsctest: waiting for another test to release %s", LockPath)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		f.Close()
		t.Fatalf("pcsctest: lock %s: %v", LockPath, err)
	}
	t.Cleanup(func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// running reports whether a pcscd answers on its socket.
func running() bool {
	c, err := net.Dial("unix", SocketPath)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startPCSCD starts pcscd in the foreground and stops it when the test
// ends. Its output is collected for failure reports.
func startPCSCD(t testing.TB, path string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(path, "--foreground")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("pcsctest: start pcscd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Logf("pcsctest: pcscd did not stop on SIGTERM, killing it")
				cmd.Process.Kill()
				<-exited
			}
		})
	}
	if owned != nil {
		owned.stop = stop
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("pcscd output:\n%s", out.String())
		}
	})
	return out
}

// waitReader polls pcscd until it lists Reader, within readyTimeout.
func waitReader(ctx context.Context, out *syncBuffer) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = readerListed()
		if last == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("pcscd did not list reader %q: %w (last: %w)", Reader, ctx.Err(), last)
		}
	}
}

// readerListed reports why pcscd does not list Reader, nil when it does.
func readerListed() error {
	p, err := pcsc.Open(slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer p.Close()
	names, err := p.Readers()
	if err != nil {
		return err
	}
	if !slices.Contains(names, Reader) {
		return fmt.Errorf("readers %q", names)
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
