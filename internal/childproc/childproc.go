// Package childproc starts the servers the tests run (PostgreSQL,
// RabbitMQ nodes, mosquitto) as children that the kernel kills when the
// test binary dies, cleanups or not (a panic, a -timeout).
//
// Linux sends the parent-death signal when the thread that forked the
// child ends, not when its process does, and Go ends a thread whose
// goroutine exits while locked to it (runtime.LockOSThread): a test may
// do that, and would take every server it happened to start on that
// thread with it. So Start forks from a goroutine locked to its own
// thread that lives as long as the child: it waits for the child to exit
// and only then ends, taking the thread with it.
package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Options says how to start a child.
type Options struct {
	// Group puts the child in a process group of its own, so that the
	// caller can signal its children too (syscall.Kill(-pid, ...)).
	Group bool
	// Cred, when set, runs the child as that user. Go sets the
	// parent-death signal after changing the credentials, which would
	// clear it; a wrapper such as runuser would fork, and the signal
	// would kill the wrapper only.
	Cred *syscall.Credential
}

// Process is a started child.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts cmd as a child the kernel SIGKILLs when the test binary
// dies (on Linux; elsewhere the caller's cleanups must stop it). It sets
// cmd.SysProcAttr.
func Start(cmd *exec.Cmd, o Options) (*Process, error) {
	cmd.SysProcAttr = sysProcAttr(o)
	p := &Process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see the package comment
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

// Pid is the child's process ID (and its group's, with Options.Group).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the child has exited and been waited for.
func (p *Process) Done() <-chan struct{} { return p.done }
