package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tobira-ac/tobira/policy"
)

// Thresholds of the data_dir check.
const (
	// freeWarn and freeFail bound data_dir's free space. The outbox holds
	// every event HQ has not acknowledged (about 300 bytes each in bbolt: a
	// busy gate offline for a week is a few hundred MB), and a full
	// snapshot is staged and then built aside next to policy.db (twice its
	// size, tens of MB for a large site). Under 1 GiB that margin is
	// thin; under 256 MiB a long outage can fill the disk.
	freeWarn = 1 << 30
	freeFail = 256 << 20
	// fsyncWarn and fsyncFail bound the slowest of fsyncProbes write+fsync
	// of a 4 KiB block. Every tap's event is fsync'd before the lock moves:
	// a healthy SD card or SSD does it in 1-20 ms; above 100 ms a person
	// notices the door lag, above 1 s the card is failing.
	fsyncWarn   = 100 * time.Millisecond
	fsyncFail   = time.Second
	fsyncProbes = 5
	// snapshotAgeWarn is when stale revocation data is near: a quarter of
	// the site's maximum age left.
	snapshotAgeWarn = 0.75
)

// freshness reads the policy store's freshness once (for the clock and
// snapshot checks). ok false means there is no policy.db yet.
func (d *doctor) freshness(ctx context.Context) (f policy.Freshness, ok bool, err error) {
	if !d.freshRead {
		d.freshRead = true
		d.fresh, d.freshErr = readFreshness(ctx, filepath.Join(d.cfg.DataDir, "policy.db"))
	}
	if d.fresh == nil {
		return policy.Freshness{}, false, d.freshErr
	}
	return *d.fresh, true, nil
}

// readFreshness opens the policy store at path and reads its freshness;
// nil without an error when there is no store yet. The store is opened as
// `tobira run` opens it, without its recovery: an unusable file is
// reported, not moved aside.
func readFreshness(ctx context.Context, path string) (*policy.Freshness, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return withContext(ctx, func() (*policy.Freshness, error) {
		s, err := policy.Open(path, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		defer s.Close()
		f, err := s.Freshness()
		if err != nil {
			return nil, err
		}
		return &f, nil
	})
}

// storeFix is the fix for a policy.db the doctor cannot read.
func storeFix(err error) string {
	if errors.Is(err, policy.ErrLocked) {
		return "tobira is running and holds policy.db: sudo systemctl stop tobira, then run tobira doctor again"
	}
	return "tobira run moves an unusable policy.db aside and waits for HQ's next snapshot: start it, then resend a snapshot from HQ (tobira-hq snapshot publish)"
}

// checkClock: the clock is not behind the last trusted time the store
// holds (the rule every decision of `tobira run` applies, see
// policy.Store.TrustTime), and the kernel says NTP synchronised it.
func (d *doctor) checkClock(ctx context.Context) bool {
	now := d.env.Clock.Now()
	good := true
	f, ok, err := d.freshness(ctx)
	switch {
	case err != nil:
		good = d.fail("clock", storeFix(err), "cannot read the trusted time from policy.db: %v", err)
	case ok && now.Before(f.TrustedTime):
		good = d.fail("clock", "set the time: sudo timedatectl set-ntp true (and check the network reaches an NTP server); a Pi has no RTC",
			"the clock (%s) is %s behind the last trusted time (%s): doors with on_untrusted_clock = \"deny\" refuse every certificate",
			now.Format(time.DateTime), f.TrustedTime.Sub(now).Round(time.Second), f.TrustedTime.Format(time.DateTime))
	case ok && !f.TrustedTime.IsZero():
		d.ok("clock", "%s is not behind the last trusted time (%s)", now.Format(time.DateTime), f.TrustedTime.Format(time.DateTime))
	default:
		d.ok("clock", "%s (no trusted time recorded yet)", now.Format(time.DateTime))
	}
	synced, err := d.env.ClockSynced()
	switch {
	case err != nil:
		d.warn("clock", "check timedatectl", "cannot ask the kernel whether the clock is synchronised: %v", err)
	case !synced:
		d.warn("clock", "sudo timedatectl set-ntp true; `timedatectl timesync-status` shows the server",
			"the kernel reports the clock as not synchronised (no NTP yet)")
	}
	return good
}

// checkDataDir: data_dir exists, this user can write it, it has room, and
// fsync is fast enough for the outbox.
func (d *doctor) checkDataDir(context.Context) bool {
	dir := d.cfg.DataDir
	owner := "sudo install -d -o tobira -g tobira -m 0750 " + dir
	st, err := os.Stat(dir)
	if err != nil {
		return d.fail("data_dir", owner+" (the package creates /var/lib/tobira), or correct data_dir", "%s: %v", dir, err)
	}
	if !st.IsDir() {
		return d.fail("data_dir", "set data_dir to a directory", "%s is not a directory", dir)
	}
	worst, err := fsyncLatency(dir)
	if err != nil {
		return d.fail("data_dir", owner+" (tobira runs as user tobira), and check the file system is not read-only", "%s is not writable: %v", dir, err)
	}
	good := true
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		d.warn("data_dir", "check the file system", "statfs %s: %v", dir, err)
	} else {
		free := fs.Bavail * uint64(fs.Bsize)
		switch {
		case free < freeFail:
			good = d.fail("data_dir", "free space on that file system, or move data_dir to a larger one", "%s has %d MiB free (under %d MiB)", dir, free>>20, freeFail>>20)
		case free < freeWarn:
			d.warn("data_dir", "free space on that file system, or move data_dir to a larger one", "%s has %d MiB free (under 1 GiB)", dir, free>>20)
		default:
			d.ok("data_dir", "%s writable, %.1f GiB free", dir, float64(free)/(1<<30))
		}
	}
	switch {
	case worst > fsyncFail:
		good = d.fail("data_dir", "replace the SD card (or use a USB SSD for data_dir)", "fsync of a 4 KiB write in %s took up to %s (over %s)", dir, worst.Round(time.Millisecond), fsyncFail)
	case worst > fsyncWarn:
		d.warn("data_dir", "use an A1/A2-rated SD card or a USB SSD; check dmesg for I/O errors", "fsync of a 4 KiB write in %s took up to %s (over %s): taps wait for it", dir, worst.Round(time.Millisecond), fsyncWarn)
	default:
		d.ok("data_dir", "fsync of a 4 KiB write takes up to %s", worst.Round(time.Microsecond))
	}
	return good
}

// fsyncLatency writes and fsyncs a 4 KiB block fsyncProbes times in a
// temporary file in dir and returns the slowest.
func fsyncLatency(dir string) (time.Duration, error) {
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	var worst time.Duration
	for i := range fsyncProbes {
		start := time.Now()
		if _, err := f.WriteAt(block, int64(i)*int64(len(block))); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		worst = max(worst, time.Since(start))
	}
	return worst, nil
}

// checkSnapshot: a snapshot is in force and its revocation data (and any
// imported CRL) is not stale, judged against the doors' fallbacks.
func (d *doctor) checkSnapshot(ctx context.Context) bool {
	f, ok, err := d.freshness(ctx)
	if err != nil {
		return d.fail("snapshot", storeFix(err), "policy.db: %v", err)
	}
	publish := "send a snapshot from HQ (tobira-hq snapshot publish) and check the HQ link, or load one: tobira snapshot import FILE"
	if !ok || f.Version == 0 {
		d.warn("snapshot", publish, "no snapshot yet: only break-glass credentials open doors")
		return true
	}
	now := d.env.Clock.Now()
	staleAt := time.Time{}
	if f.MaxRevocationAge > 0 && !f.RevocationsAt.IsZero() {
		staleAt = f.RevocationsAt.Add(f.MaxRevocationAge)
	}
	good := true
	switch {
	case f.RevocationsStale(now):
		good = d.staleRevocations(fmt.Sprintf("snapshot %d's revocation data (from %s) is older than the site allows (%s)",
			f.Version, f.RevocationsAt.Format(time.DateTime), f.MaxRevocationAge), publish)
	case !staleAt.IsZero() && now.Sub(f.RevocationsAt) > time.Duration(snapshotAgeWarn*float64(f.MaxRevocationAge)):
		d.warn("snapshot", publish, "snapshot %d's revocation data goes stale in %s", f.Version, staleAt.Sub(now).Round(time.Minute))
	case staleAt.IsZero():
		d.ok("snapshot", "snapshot %d in force; its revocation data never goes stale by age", f.Version)
	default:
		d.ok("snapshot", "snapshot %d in force; revocation data %s old, stale after %s", f.Version,
			now.Sub(f.RevocationsAt).Round(time.Minute), f.MaxRevocationAge)
	}
	for _, c := range f.CRLs {
		if now.After(c.NextUpdate) {
			good = d.staleRevocations(fmt.Sprintf("the CRL of CA key %x is past its nextUpdate (%s)", c.IssuerKeyID, c.NextUpdate.Format(time.DateTime)),
				"import the CA's current CRL at HQ (tobira-hq crl import), then publish a snapshot") && good
		}
	}
	return good
}

// staleRevocations reports stale revocation data: a failure when a door
// denies on stale revocations (the default), a warning when every door
// grants with a flag.
func (d *doctor) staleRevocations(what, fix string) bool {
	denying := slices.ContainsFunc(d.cfg.Doors, func(dc DoorConfig) bool { return dc.OnStaleRevocations != "grant_flag" })
	if denying {
		return d.fail("snapshot", fix, "%s: doors with on_stale_revocations = \"deny\" refuse every certificate", what)
	}
	d.warn("snapshot", fix, "%s: every door grants with a flag (on_stale_revocations = \"grant_flag\")", what)
	return true
}
