package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/internal/childproc"
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
// test binary dies, cleanups or not (internal/childproc); its backends end
// on their own when they see it gone.
type postmaster struct {
	cmd  *exec.Cmd
	done <-chan struct{} // closed when the process has exited
}

// launch starts cmd (a postgres command) as a postmaster, as the user
// cred when set.
func launch(cmd *exec.Cmd, cred *syscall.Credential) (*postmaster, error) {
	p, err := childproc.Start(cmd, childproc.Options{Group: true, Cred: cred})
	if err != nil {
		return nil, err
	}
	return &postmaster{cmd: cmd, done: p.Done()}, nil
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
