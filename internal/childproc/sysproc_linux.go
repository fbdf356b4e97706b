package childproc

import "syscall"

// sysProcAttr returns the attributes of a child started with o: the
// parent-death signal SIGKILL.
func sysProcAttr(o Options) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: o.Group, Pdeathsig: syscall.SIGKILL, Credential: o.Cred}
}
