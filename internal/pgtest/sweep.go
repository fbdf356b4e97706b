package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// tempPattern names the temporary directory of a throw-away cluster.
const tempPattern = "tobira-pgtest-"

// ownerFile, in a throw-away cluster's directory, is locked (flock) by the
// test binary that runs the cluster for as long as it runs it. The kernel
// drops the lock when that process dies, whichever way.
const ownerFile = "owner"

// lockOwner locks a new ownerFile in dir and returns it, to be closed
// when the cluster is gone. The file is locked under another name and
// then renamed, so that no sweep ever finds it unlocked.
func lockOwner(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ownerFile+"-")
	if err != nil {
		return nil, fmt.Errorf("create owner lock in %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, ownerFile)); err != nil {
		f.Close()
		return nil, fmt.Errorf("rename %s: %w", f.Name(), err)
	}
	return f, nil
}

// sweep removes what test binaries that died without stopping their
// clusters left in tmp: each throw-away cluster directory whose owner lock
// nobody holds and whose postmaster is gone, and that postmaster's System
// V shared memory segment. Directories without an owner file (being made,
// or left by an older pgtest) stay. It logs what it removes and what it
// cannot.
func sweep(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, tempPattern+"*"))
	for _, dir := range dirs {
		removed, err := sweepDir(dir)
		if err != nil {
			slog.Warn("pgtest: cannot remove a dead test cluster", "dir", dir, "err", err)
		} else if removed {
			slog.Debug("pgtest: removed a dead test cluster", "dir", dir)
		}
	}
}

// sweepDir removes dir, and its postmaster's shared memory segment, when
// the test binary that ran its cluster is dead.
func sweepDir(dir string) (bool, error) {
	f, err := os.Open(filepath.Join(dir, ownerFile))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOTDIR) {
		return false, nil // being made, an older pgtest's, another user's, not ours
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil // its test binary runs
	} else if err != nil {
		return false, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	pid, shmKey, shmID, err := readPostmasterPID(filepath.Join(dir, "data", "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return true, os.RemoveAll(dir) // no server was running
	}
	if err != nil {
		return false, err
	}
	if running(pid) {
		return false, fmt.Errorf("its test binary is gone but its postmaster (pid %d) runs", pid)
	}
	if err := removeShm(shmKey, shmID); err != nil {
		return false, err
	}
	return true, os.RemoveAll(dir)
}

// readPostmasterPID reads the postmaster's pid (line 1) and its System V
// shared memory key and id (line 7) from a postmaster.pid file.
func readPostmasterPID(path string) (pid, shmKey, shmID int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return 0, 0, 0, fmt.Errorf("%s: %d lines, want 7 or more", path, len(lines))
	}
	shm := strings.Fields(lines[6])
	if len(shm) != 2 {
		return 0, 0, 0, fmt.Errorf("%s: line 7 is %q, want a shared memory key and id", path, lines[6])
	}
	if pid, err = strconv.Atoi(strings.TrimSpace(lines[0])); err == nil {
		if shmKey, err = strconv.Atoi(shm[0]); err == nil {
			shmID, err = strconv.Atoi(shm[1])
		}
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return pid, shmKey, shmID, nil
}

// running reports whether process pid exists and is not a zombie (which a
// PID 1 that reaps nothing may keep).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	stat := string(b)
	rest := stat[strings.LastIndexByte(stat, ')')+1:]
	state, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	return state != "Z" && state != "X"
}

// removeShm removes System V shared memory segment id if it still has key
// and nobody is attached to it: a dead postmaster's.
func removeShm(key, id int) error {
	var desc unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &desc); errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EIDRM) {
		return nil // gone
	} else if err != nil {
		return fmt.Errorf("shared memory segment %d: %w", id, err)
	}
	if int(desc.Perm.Key) != key || desc.Nattch != 0 {
		return nil // another one now
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
		return fmt.Errorf("remove shared memory segment %d: %w", id, err)
	}
	return nil
}
