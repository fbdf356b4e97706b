//go:build linux

package childproc_test

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/childproc"
)

// A child started from a goroutine that ends locked to its thread (which
// Go then ends) lives on: the parent-death signal follows the thread
// that forked, and Start forks from a thread of its own.
func TestChildOutlivesStartingThread(t *testing.T) {
	var (
		p   *childproc.Process
		err error
	)
	childproc.OnEndingThread(func() {
		p, err = childproc.Start(exec.Command("sleep", "60"), childproc.Options{Group: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.Done()
	}()
	// A SIGKILL is delivered before the thread's exit completes; the
	// child is reaped by Start's own goroutine, so a dead one shows as
	// Done.
	select {
	case <-p.Done():
		t.Fatal("the child died with the thread that started it")
	case <-time.After(200 * time.Millisecond):
	}
	if err := syscall.Kill(p.Pid(), 0); err != nil {
		t.Fatalf("the child died with the thread that started it: %v", err)
	}
}

// A child that cannot start is an error, and nothing waits on it.
func TestStartError(t *testing.T) {
	if _, err := childproc.Start(exec.Command("/nonexistent/tobira-child"), childproc.Options{}); err == nil {
		t.Fatal("started a command that does not exist")
	}
}
