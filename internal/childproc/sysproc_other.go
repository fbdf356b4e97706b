//go:build !linux

package childproc

import "syscall"

// sysProcAttr returns the attributes of a child started with o; the
// kernel has no parent-death signal here.
func sysProcAttr(o Options) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: o.Group, Credential: o.Cred}
}
