// Package mosquittotest runs a real mosquitto broker on loopback for tests.
//
// Each Mosquitto listens on a free 127.0.0.1 port with anonymous access and
// no persistence, logs to the test's output when the test fails, and is
// stopped by t.Cleanup. A missing mosquitto binary skips the test, or fails
// it when the environment variable CI is "true".
package mosquittotest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/childproc"
	"github.com/tobira-ac/tobira/internal/testenv"
)

// startTimeout bounds how long Start waits for mosquitto to accept
// connections. It is an integration deadline on an external process.
const startTimeout = 10 * time.Second

// startAttempts is how often Start picks a new port when another process
// took the free port between picking and binding.
const startAttempts = 3

// Mosquitto is a mosquitto process run for one test.
type Mosquitto struct {
	bin    string
	dir    string
	port   int
	opts   Options
	scheme string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan struct{} // closed when cmd has exited
	log  *bytes.Buffer   // combined output of every run
}

// Start runs a real mosquitto on a free 127.0.0.1 port with a config in
// t.TempDir(), waits until it accepts connections, and stops it in
// t.Cleanup. Missing mosquitto binary: t.Skip, or t.Fatal when CI=true.
func Start(t testing.TB) *Mosquitto {
	t.Helper()
	return StartWith(t, Options{})
}

// Options change the broker StartWith runs.
type Options struct {
	// Config, when set, returns the whole mosquitto configuration for a
	// listener on 127.0.0.1:port instead of the default (anonymous, no
	// TLS). Start adds "user root" when running as root.
	Config func(port int) string
	// Scheme is the URL scheme URL reports, e.g. "ssl" for a TLS
	// listener; default "tcp".
	Scheme string
}

// StartWith is Start with options, e.g. a TLS listener with an ACL.
func StartWith(t testing.TB, opts Options) *Mosquitto {
	t.Helper()
	bin, err := lookMosquitto()
	if err != nil {
		testenv.Missing(t, "mosquitto not installed: %v", err)
	}
	m := &Mosquitto{bin: bin, dir: t.TempDir(), log: new(bytes.Buffer), opts: opts, scheme: opts.Scheme}
	if m.scheme == "" {
		m.scheme = "tcp"
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			m.mu.Lock()
			t.Logf("mosquitto output:\n%s", m.log.String())
			m.mu.Unlock()
		}
	})
	for attempt := 1; ; attempt++ {
		m.port, err = testenv.FreePort()
		if err != nil {
			t.Fatalf("mosquittotest: %v", err)
		}
		err = m.start()
		if err == nil {
			return m
		}
		if attempt == startAttempts {
			t.Fatalf("mosquittotest: %v", err)
		}
		t.Logf("mosquittotest: attempt %d: %v; trying another port", attempt, err)
	}
}

// URL returns the broker's URL for paho, e.g. "tcp://127.0.0.1:41883"
// (or "ssl://..." with Options.Scheme "ssl").
func (m *Mosquitto) URL() string { return m.scheme + "://" + m.Addr() }

// Addr returns the broker's address, e.g. "127.0.0.1:41883".
func (m *Mosquitto) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// Stop kills mosquitto (as a crash or power cut would) and waits until it
// has exited. It does nothing when mosquitto is not running.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart stops mosquitto if it runs and starts it again on the same port.
func (m *Mosquitto) Restart(t testing.TB) {
	t.Helper()
	m.Stop()
	if err := m.start(); err != nil {
		t.Fatalf("mosquittotest: restart: %v", err)
	}
}

// start writes the config and runs mosquitto until it accepts connections.
func (m *Mosquitto) start() error {
	conf := filepath.Join(m.dir, "mosquitto.conf")
	text := config(m.port, os.Geteuid() == 0)
	if m.opts.Config != nil {
		text = m.opts.Config(m.port) + "\nlog_dest stderr\nlog_type all\n"
		if os.Geteuid() == 0 {
			text += "user root\n"
		}
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", conf, err)
	}
	cmd := exec.Command(m.bin, "-c", conf)
	m.mu.Lock()
	fmt.Fprintf(m.log, "--- start on port %d\n", m.port)
	m.mu.Unlock()
	out := lockedWriter{mu: &m.mu, w: m.log}
	cmd.Stdout, cmd.Stderr = out, out
	// Killed by the kernel when the test binary dies (a panic or a
	// -timeout skips t.Cleanup). Linux clears that when a process changes
	// its user, so the config keeps mosquitto from dropping root.
	p, err := childproc.Start(cmd, childproc.Options{})
	if err != nil {
		return fmt.Errorf("run %s -c %s: %w", m.bin, conf, err)
	}
	done := p.Done()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
	if err := waitListening(m.Addr(), done); err != nil {
		m.Stop()
		return fmt.Errorf("mosquitto on %s: %w", m.Addr(), err)
	}
	return nil
}

// config returns mosquitto's configuration: a loopback listener on port,
// anonymous access (tests only), no persistence, logs to stderr. Run as
// root, mosquitto would switch to its own user, which would also clear the
// parent-death signal; "user root" keeps it.
func config(port int, root bool) string {
	c := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n", port)
	if root {
		c += "user root\n"
	}
	return c
}

// waitListening polls addr until it accepts a connection, the process exits
// (done closes) or startTimeout passes.
func waitListening(addr string, done <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after %v: %w", startTimeout, err)
		}
		select {
		case <-done:
			return errors.New("exited before accepting connections (port taken?)")
		case <-tick.C:
		}
	}
}

// lookMosquitto finds the mosquitto binary on PATH or in /usr/sbin, where
// Debian installs it.
func lookMosquitto() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	const sbin = "/usr/sbin/mosquitto"
	if _, err := os.Stat(sbin); err != nil {
		return "", fmt.Errorf("mosquitto not on PATH and %s: %w", sbin, err)
	}
	return sbin, nil
}

// lockedWriter serialises writes of mosquitto's stdout and stderr into one
// buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

// Write implements io.Writer.
func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
