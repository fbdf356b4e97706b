package mosquittotest_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/mosquittotest"
)

// dialable reports whether addr accepts a TCP connection.
func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestStartStopRestart(t *testing.T) {
	m := mosquittotest.Start(t)
	if !strings.HasPrefix(m.URL(), "tcp://127.0.0.1:") || m.URL() != "tcp://"+m.Addr() {
		t.Fatalf("URL() = %q, Addr() = %q; want tcp://127.0.0.1:PORT", m.URL(), m.Addr())
	}
	if !dialable(m.Addr()) {
		t.Fatalf("mosquitto at %s does not accept connections after Start", m.Addr())
	}
	addr := m.Addr()

	m.Stop()
	if dialable(addr) {
		t.Fatalf("%s still accepts connections after Stop", addr)
	}
	m.Stop() // a second Stop is harmless

	m.Restart(t)
	if m.Addr() != addr {
		t.Fatalf("Restart moved the broker from %s to %s", addr, m.Addr())
	}
	if !dialable(addr) {
		t.Fatalf("mosquitto at %s does not accept connections after Restart", addr)
	}
}

func TestTwoBrokersGetDifferentPorts(t *testing.T) {
	a, b := mosquittotest.Start(t), mosquittotest.Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("both brokers on %s", a.Addr())
	}
}

// TestMosquittoDiesWithTestBinary checks that a test binary that dies
// without running its cleanups (a panic, a -timeout) leaves no mosquitto
// behind: the test runs itself as a child that starts mosquitto and exits.
func TestMosquittoDiesWithTestBinary(t *testing.T) {
	if os.Getenv("MOSQUITTOTEST_CHILD") == "1" {
		m := mosquittotest.Start(t)
		fmt.Println("ADDR", m.Addr())
		os.Exit(0) // skips t.Cleanup, like a crash
	}
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMosquittoDiesWithTestBinary$")
	// The child's temporary files go below ours, so our cleanup removes them.
	cmd.Env = append(os.Environ(), "MOSQUITTOTEST_CHILD=1", "TMPDIR="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var addr string
	for _, line := range strings.Split(string(out), "\n") {
		if a, ok := strings.CutPrefix(line, "ADDR "); ok {
			addr = a
		}
	}
	if addr == "" {
		t.Skipf("child started no mosquitto (not installed?):\n%s", out)
	}
	// The kernel kills mosquitto asynchronously; wait for it, within a
	// deadline, as for any external process.
	deadline := time.Now().Add(10 * time.Second)
	for dialable(addr) {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto at %s outlived its test binary", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
