package mosquittotest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill mosquitto when the test binary dies
// (a panic or a -timeout skips t.Cleanup). Linux clears the setting when a
// process changes its user, so the config keeps mosquitto from dropping
// root (see config).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
