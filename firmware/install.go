package firmware

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// BusyChecker tells whether the controller may restart now. The controller
// answers true while a door is open or unlocked, or a card transaction is
// in progress, with a short reason for the log ("door lobby open").
type BusyChecker interface {
	Busy() (busy bool, reason string)
}

// Device is what a manifest's architecture and targets are checked
// against.
type Device struct {
	// ID is the device's name as HQ knows it ("device:<ID>" targets it).
	ID string
	// Groups are the groups the device belongs to ("group:<name>").
	Groups []string
	// Arch is GOOS/GOARCH; "" means the running binary's.
	Arch string
}

func (d Device) arch() string { return cmp.Or(d.Arch, runtime.GOOS+"/"+runtime.GOARCH) }

func (d Device) targeted(targets []string) bool {
	if len(targets) == 0 {
		return true
	}
	for _, t := range targets {
		kind, name, _ := strings.Cut(t, ":")
		if (kind == "device" && name == d.ID) || (kind == "group" && slices.Contains(d.Groups, name)) {
			return true
		}
	}
	return false
}

// Defaults of an Updater.
const (
	DefaultChunkSize  = 64 << 10
	DefaultRetryDelay = 2 * time.Second
	DefaultMaxStalls  = 10
)

// Updater checks, downloads and activates releases in one update root.
// The zero value is not usable: Root and Verifier are required.
type Updater struct {
	// Root is the update root (see the package documentation).
	Root string
	// Verifier holds the pinned release keys.
	Verifier *Verifier
	// Device is this device's identity and architecture.
	Device Device
	// Busy, if set, is asked before switching; nil means never busy.
	Busy BusyChecker
	// Window, if set, limits switching to a maintenance window.
	Window Window
	// Clock tells the time; nil means the system clock.
	Clock clock.Clock
	// Logger receives the update's logs; nil means slog.Default().
	Logger *slog.Logger
	// RateLimit bounds download bytes per second; 0 means unlimited.
	RateLimit int64
	// ChunkSize is the size of one fetch; 0 means DefaultChunkSize.
	ChunkSize int
	// RetryDelay is the pause after a failed fetch; 0 means
	// DefaultRetryDelay.
	RetryDelay time.Duration
	// MaxStalls is how many fetches in a row may fail without progress
	// before Stage gives up (the partial download is kept for the next
	// attempt); 0 means DefaultMaxStalls.
	MaxStalls int
}

func (u *Updater) clock() clock.Clock {
	if u.Clock == nil {
		return clock.System{}
	}
	return u.Clock
}

func (u *Updater) log() *slog.Logger { return cmp.Or(u.Logger, slog.Default()) }

func (u *Updater) layout() layout { return layout{u.Root} }

// Check verifies a signed envelope against the pinned keys and applies the
// device's policy: architecture, expiry, targets, anti-rollback floor,
// minimum from-version, releases rolled back before, already installed.
func (u *Updater) Check(ctx context.Context, envelope []byte) (Manifest, error) {
	if u.Verifier == nil {
		return Manifest{}, fmt.Errorf("check release: %w: no verifier", ErrMalformed)
	}
	m, err := u.Verifier.Verify(envelope)
	if err != nil {
		return Manifest{}, fmt.Errorf("check release: %w", err)
	}
	l := u.layout()
	st, running, err := l.load()
	if err != nil {
		return Manifest{}, err
	}
	if err := u.policy(m, st, running); err != nil {
		return Manifest{}, fmt.Errorf("check release %s: %w", m.Version, err)
	}
	return m, nil
}

// policy applies the device's rules to a verified manifest.
func (u *Updater) policy(m Manifest, st State, running string) error {
	v := m.version()
	now := u.clock().Now()
	switch {
	case m.Arch != u.Device.arch():
		return fmt.Errorf("%w: built for %s, device is %s", ErrWrongArch, m.Arch, u.Device.arch())
	case !now.Before(m.Expires):
		return fmt.Errorf("%w: expired at %s, now %s", ErrExpired, m.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case !u.Device.targeted(m.Targets):
		return fmt.Errorf("%w: device %q, groups %v", ErrNotTargeted, u.Device.ID, u.Device.Groups)
	case m.Version == running || m.Version == st.Pending:
		return fmt.Errorf("%w: %s is running or on trial", ErrAlreadyInstalled, m.Version)
	case st.isBad(m.Version):
		return fmt.Errorf("%w: %s", ErrKnownBad, m.Version)
	}
	floor, _ := optVersion("floor", st.Floor)
	if v.Compare(floor) < 0 {
		return fmt.Errorf("%w: %s below floor %s", ErrBelowFloor, m.Version, st.Floor)
	}
	if m.MinFromVersion != "" && running != "" {
		minFrom, _ := ParseVersion(m.MinFromVersion)
		run, _ := ParseVersion(running)
		if run.Compare(minFrom) < 0 {
			return fmt.Errorf("%w: running %s, release needs at least %s", ErrBelowMinFrom, running, m.MinFromVersion)
		}
	}
	return nil
}

// Stage downloads the release binary through f (resuming a partial
// download left by an earlier attempt), checks its size and SHA-256 against
// the manifest and installs it as releases/<version>/tobira: the data is
// fsync'd, renamed into the slot and the directories are fsync'd. Stage
// does not switch anything and may run while the doors are busy.
func (u *Updater) Stage(ctx context.Context, m Manifest, f ChunkFetcher) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("stage release: %w", err)
	}
	l := u.layout()
	if ok, err := slotHolds(l.binary(m.Version), m); err != nil || ok {
		return err
	}
	for _, d := range []string{l.path(downloadsDir), l.path(releasesDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	part := l.partial(m.SHA256)
	if err := u.download(ctx, m, f, part); err != nil {
		return err
	}
	if err := os.MkdirAll(l.slot(m.Version), 0o755); err != nil {
		return fmt.Errorf("create release slot %s: %w", l.slot(m.Version), err)
	}
	if err := syncDir(l.path(releasesDir)); err != nil {
		return err
	}
	if err := os.Rename(part, l.binary(m.Version)); err != nil {
		return fmt.Errorf("install %s as %s: %w", part, l.binary(m.Version), err)
	}
	if err := syncDir(l.slot(m.Version)); err != nil {
		return err
	}
	if err := syncDir(l.path(downloadsDir)); err != nil {
		return err
	}
	u.log().Info("release staged", "version", m.Version, "size", m.Size, "sha256", m.SHA256)
	return nil
}

// slotHolds reports whether path already holds the manifest's binary.
func slotHolds(path string, m Manifest) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat release slot %s: %w", path, err)
	}
	if fi.Size() != m.Size {
		return false, nil
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return false, err
	}
	return sum == m.SHA256, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// download fills part up to m.Size through f, resuming at part's length,
// then fsyncs it and checks its digest.
func (u *Updater) download(ctx context.Context, m Manifest, f ChunkFetcher, part string) error {
	file, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o755)
	if err != nil {
		return fmt.Errorf("open partial download %s: %w", part, err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return fmt.Errorf("stat partial download %s: %w", part, err)
	}
	off := fi.Size()
	if off > m.Size {
		if err := file.Truncate(0); err != nil {
			return fmt.Errorf("truncate oversized partial download %s: %w", part, err)
		}
		off = 0
	}
	if off > 0 {
		u.log().Info("resuming release download", "version", m.Version, "offset", off, "size", m.Size)
	}
	chunk := cmp.Or(u.ChunkSize, DefaultChunkSize)
	limiter := NewRateLimiter(u.clock(), u.RateLimit, max(u.RateLimit, int64(chunk)))
	stalls := 0
	for off < m.Size {
		n := int(min(int64(chunk), m.Size-off))
		if err := limiter.Wait(ctx, n); err != nil {
			return err
		}
		data, ferr := f.Fetch(ctx, off, n)
		if len(data) > n {
			data = data[:n]
		}
		if len(data) > 0 {
			if _, err := file.WriteAt(data, off); err != nil {
				return fmt.Errorf("write partial download %s at offset %d: %w", part, off, err)
			}
			off += int64(len(data))
			stalls = 0
		}
		if ferr == nil && len(data) > 0 {
			continue
		}
		if errors.Is(ferr, io.EOF) {
			return u.discard(part, fmt.Errorf("%w: %s: source ends at %d bytes, manifest says %d", ErrHashMismatch, m.Version, off, m.Size))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("download %s at offset %d: %w", m.Version, off, ctx.Err())
		}
		if ferr == nil {
			ferr = errors.New("empty chunk")
		}
		if len(data) == 0 {
			stalls++
		}
		if stalls > cmp.Or(u.MaxStalls, DefaultMaxStalls) {
			return fmt.Errorf("download %s: %d fetches failed at offset %d: %w", m.Version, stalls, off, ferr)
		}
		u.log().Warn("release download interrupted; resuming", "version", m.Version, "offset", off, "err", ferr)
		t := u.clock().NewTimer(cmp.Or(u.RetryDelay, DefaultRetryDelay))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("download %s at offset %d: %w", m.Version, off, ctx.Err())
		case <-t.C():
		}
	}
	if err := file.Sync(); err != nil {
		return fmt.Errorf("fsync partial download %s: %w", part, err)
	}
	sum, err := fileSHA256(part)
	if err != nil {
		return err
	}
	if sum != m.SHA256 {
		return u.discard(part, fmt.Errorf("%w: %s: sha256 %s, manifest says %s", ErrHashMismatch, m.Version, sum, m.SHA256))
	}
	return nil
}

// discard removes a bad partial download and returns err.
func (u *Updater) discard(part string, err error) error {
	if rerr := os.Remove(part); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		u.log().Error("cannot remove bad download", "path", part, "err", rerr)
	}
	return err
}

// Activate switches current to a staged release and starts its trial: the
// state file records the release as pending first, then previous and
// current are switched atomically. It refuses while the controller is busy
// (ErrBusy), outside the maintenance window (ErrOutsideWindow) or while
// another release is on trial (ErrTrialPending). On success the caller must
// stop the controller and exit with status 0 so that systemd starts the new
// release; the release then has to pass the health gate (Boot,
// Trial.ReportHealthy). The very first install of a root has nothing to
// roll back to and is committed at once.
func (u *Updater) Activate(ctx context.Context, m Manifest) error {
	l := u.layout()
	unlock, err := l.lock(ctx, u.clock())
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(l.state())
	if err != nil {
		return err
	}
	if st.Pending != "" {
		return fmt.Errorf("activate %s: %w: %s", m.Version, ErrTrialPending, st.Pending)
	}
	running, err := l.linkVersion(currentLink)
	if err != nil {
		return err
	}
	if err := u.policy(m, st, running); err != nil {
		return fmt.Errorf("activate %s: %w", m.Version, err)
	}
	if fi, err := os.Stat(l.binary(m.Version)); err != nil || fi.Size() != m.Size {
		return fmt.Errorf("activate %s: %w at %s (stat: %v)", m.Version, ErrNotStaged, l.binary(m.Version), err)
	}
	now := u.clock().Now()
	if !u.Window.Contains(now) {
		return fmt.Errorf("activate %s: %w %s (now %s)", m.Version, ErrOutsideWindow, u.Window, now.Format("15:04 MST"))
	}
	if u.Busy != nil {
		if busy, why := u.Busy.Busy(); busy {
			return fmt.Errorf("activate %s: %w: %s", m.Version, ErrBusy, why)
		}
	}
	if running == "" {
		if err := l.switchLink(currentLink, m.Version); err != nil {
			return err
		}
		st.Committed = m.Version
		st.Floor = maxVersion(st.Floor, m.Floor)
		st.Last = &Result{Version: m.Version, Outcome: OutcomeCommitted, Reason: "first install", At: now}
		u.log().Info("first release installed", "version", m.Version)
		return saveState(l.state(), st)
	}
	st.Pending, st.PendingFloor, st.PendingSince = m.Version, m.Floor, now
	st.Previous, st.BootAttempts, st.LastInvocation, st.RollingBack = running, 0, "", ""
	if err := saveState(l.state(), st); err != nil {
		return err
	}
	if err := l.switchLink(previousLink, running); err != nil {
		return err
	}
	if err := l.switchLink(currentLink, m.Version); err != nil {
		return err
	}
	u.log().Info("release activated; restart to run it", "version", m.Version, "from", running)
	return nil
}

// Install is Check, Stage and Activate in a row. If f is nil the binary is
// fetched from the manifest's URL.
func (u *Updater) Install(ctx context.Context, envelope []byte, f ChunkFetcher) (Manifest, error) {
	m, err := u.Check(ctx, envelope)
	if err != nil {
		return Manifest{}, err
	}
	if f == nil {
		if m.URL == "" {
			return m, fmt.Errorf("install %s: no fetcher and no URL in the manifest", m.Version)
		}
		f = HTTPFetcher{URL: m.URL}
	}
	if err := u.Stage(ctx, m, f); err != nil {
		return m, err
	}
	return m, u.Activate(ctx, m)
}

// maxVersion returns the newer of two optional versions ("" is oldest).
func maxVersion(a, b string) string {
	va, erra := optVersion("", a)
	vb, errb := optVersion("", b)
	if erra != nil || errb != nil || va.Compare(vb) >= 0 {
		return a
	}
	return b
}
