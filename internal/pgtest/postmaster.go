package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// readyTimeout bounds how long a started server may take to accept
// connections (pg_ctl -w waits as long by default). One starts in well
// under a second; crash recovery of a kept cluster takes longer.
const readyTimeout = 60 * time.Second

// stopTimeout bounds how long a server may take to shut down after its
// signal before it is SIGKILLed.
const stopTimeout = 30 * time.Second

// postmaster is a running PostgreSQL server process, a child of the test
// binary in a process group of its own. The kernel SIGKILLs it when the
// test binary dies, cleanups or not; its backends end on their own when
// they see it gone.
type postmaster struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// launch starts cmd (a postgres command) as a postmaster.
//
// Linux sends the parent-death signal when the thread that forked the
// child ends, not when its process does, and Go ends a thread whose
// goroutine exits while locked to it (runtime.LockOSThread) - a test may
// do that. So the fork is done from a goroutine locked to its thread that
// lives as long as the server: it waits for the process to exit and only
// then ends, taking the thread with it.
//
// With cred, the server runs as that user (Go sets the parent-death
// signal after changing the credentials, which would clear it); a
// wrapper such as runuser would fork, and the signal would kill the
// wrapper only.
func launch(cmd *exec.Cmd, cred *syscall.Credential) (*postmaster, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	p := &postmaster{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// waitReady polls url until the server accepts a connection to it, the
// server exits, ctx ends or readyTimeout passes.
func (p *postmaster) waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ping(ctx, url)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited before accepting connections (%v)", p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("postgres does not accept connections after %v: %w", readyTimeout, err)
		case <-tick.C:
		}
	}
}

// ping connects to url once.
func ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

// stop sends the server sig (SIGINT: fast shutdown, SIGQUIT: immediate)
// and waits until it has exited; after stopTimeout it SIGKILLs it and
// says so. Then it SIGKILLs the process group, in case. Stopping a server
// that has exited does nothing.
func (p *postmaster) stop(sig syscall.Signal) error {
	pid := p.cmd.Process.Pid
	defer syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); errors.Is(err, os.ErrProcessDone) {
		<-p.done
		return nil
	} else if err != nil {
		return fmt.Errorf("signal postgres (pid %d): %w", pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("postgres (pid %d) did not stop within %v of %v: killed", pid, stopTimeout, sig)
}
