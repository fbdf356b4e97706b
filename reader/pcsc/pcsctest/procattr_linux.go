package pcsctest

import "syscall"

// procAttr makes pcscd die with the test binary, so a killed test run
// leaves no daemon behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
