package firmware

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tobira-ac/tobira/internal/atomicfile"
	"github.com/tobira-ac/tobira/internal/clock"
)

// BinaryName is the file name of the edge binary inside a release slot.
const BinaryName = "tobira"

// Names inside an update root.
const (
	releasesDir  = "releases"
	downloadsDir = "downloads"
	currentLink  = "current"
	previousLink = "previous"
	stateFile    = "state.json"
	lockFile     = ".lock"
)

// layout names the files of one update root.
type layout struct{ root string }

func (l layout) path(elem ...string) string {
	return filepath.Join(append([]string{l.root}, elem...)...)
}
func (l layout) state() string              { return l.path(stateFile) }
func (l layout) slot(v string) string       { return l.path(releasesDir, v) }
func (l layout) binary(v string) string     { return l.path(releasesDir, v, BinaryName) }
func (l layout) partial(sha string) string  { return l.path(downloadsDir, sha+".part") }
func (l layout) linkTarget(v string) string { return filepath.Join(releasesDir, v) }

// linkVersion returns the version a link (current or previous) points at,
// "" if the link does not exist.
func (l layout) linkVersion(name string) (string, error) {
	target, err := os.Readlink(l.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read link %s: %w", l.path(name), err)
	}
	dir, v := filepath.Split(filepath.Clean(target))
	if filepath.Clean(dir) != releasesDir {
		return "", fmt.Errorf("%w: link %s points at %q, not into %s/", ErrMalformed, l.path(name), target, releasesDir)
	}
	if _, err := ParseVersion(v); err != nil {
		return "", fmt.Errorf("link %s: %w", l.path(name), err)
	}
	return v, nil
}

// switchLink points link name at releases/<v> atomically: a symlink is made
// under a temporary name and renamed over the old one, then the root
// directory is fsync'd. A crash leaves the old or the new link.
func (l layout) switchLink(name, v string) error {
	tmp := l.path("." + name + ".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale link %s: %w", tmp, err)
	}
	if err := os.Symlink(l.linkTarget(v), tmp); err != nil {
		return fmt.Errorf("make link %s -> %s: %w", tmp, l.linkTarget(v), err)
	}
	if err := os.Rename(tmp, l.path(name)); err != nil {
		return fmt.Errorf("switch link %s to %s: %w", name, v, err)
	}
	return syncDir(l.root)
}

// writeFileAtomic replaces the file at path durably (atomicfile.Write).
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// syncDir fsyncs a directory so that renames and new entries in it survive
// a power cut.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// lockPoll is how often a waiting lock is retried.
const lockPoll = 20 * time.Millisecond

// lock takes the root's exclusive lock (flock on .lock), waiting until ctx
// is done. The lock is released when the process dies, so a kill -9 never
// leaves the root locked.
func (l layout) lock(ctx context.Context, clk clock.Clock) (unlock func(), err error) {
	if err := os.MkdirAll(l.root, 0o755); err != nil {
		return nil, fmt.Errorf("create update root %s: %w", l.root, err)
	}
	f, err := os.OpenFile(l.path(lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", l.path(lockFile), err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", l.path(lockFile), err)
		}
		t := clk.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", l.path(lockFile), ctx.Err())
		case <-t.C():
		}
	}
}
