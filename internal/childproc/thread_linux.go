package childproc

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
)

// OnEndingThread runs fn on a thread other than the main one, locked to
// it, ends that thread when fn returns and returns once it is gone (any
// parent-death signal is then sent): for tests that a child outlives the
// thread that started it.
func OnEndingThread(fn func()) {
	var tid int
	for tid == 0 { // the main thread never ends (Go parks it): use another
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
			if syscall.Gettid() == os.Getpid() {
				runtime.UnlockOSThread()
				return
			}
			tid = syscall.Gettid()
			fn()
		}()
		<-ran
	}
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
