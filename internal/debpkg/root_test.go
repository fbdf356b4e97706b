package debpkg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rootPackages are what the Debian root holds besides minbase: what the
// packages depend on, and systemd for `systemd-analyze verify`.
var rootPackages = []string{"systemd", "pcscd", "libpcsclite1"}

// rootPath is PATH inside the root: /usr/local/sbin first, where the test
// puts its systemctl stand-in.
const rootPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// debianRoot is an unpacked Debian 12 root. Commands run in it through
// chroot, each in a private mount namespace with its own /proc, so nothing
// stays mounted when a command ends or the test is killed.
type debianRoot struct {
	dir string
}

// path returns the host path of p inside the root.
func (r debianRoot) path(p string) string { return filepath.Join(r.dir, p) }

// exec runs argv in the root as root and returns its combined output.
func (r debianRoot) exec(argv ...string) (string, error) {
	return r.execOpts(nil, argv...)
}

// execOpts runs argv in the root with extra chroot options (--userspec ...).
func (r debianRoot) execOpts(chrootOpts []string, argv ...string) (string, error) {
	args := []string{"--mount", "--propagation", "private", "--", "sh", "-c",
		`mount -t proc proc "$0/proc" && exec chroot "$@"`, r.dir}
	args = append(args, chrootOpts...)
	args = append(args, r.dir, "env", "-i", rootPath, "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive")
	args = append(args, argv...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "unshare", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in the root: %s: %w", strings.Join(argv, " "), err)
	}
	return string(out), nil
}

// must runs argv in the root as root and fails the test if it fails.
func (r debianRoot) must(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := r.exec(argv...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// execAs runs argv in the root as user, with the user's groups.
func (r debianRoot) execAs(t *testing.T, user string, argv ...string) (string, error) {
	t.Helper()
	uid := strings.TrimSpace(r.must(t, "id", "-u", user))
	gid := strings.TrimSpace(r.must(t, "id", "-g", user))
	groups := strings.Join(strings.Fields(r.must(t, "id", "-G", user)), ",")
	return r.execOpts([]string{"--userspec=" + uid + ":" + gid, "--groups=" + groups}, argv...)
}

// newRoot unpacks the cached Debian 12 root (made on first use) into a
// temporary directory.
func newRoot(t *testing.T) debianRoot {
	t.Helper()
	tarball := cachedRootTarball(t)
	r := debianRoot{dir: filepath.Join(t.TempDir(), "root")}
	if err := os.Mkdir(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	runHost(t, "", "tar", "--numeric-owner", "-xpf", tarball, "-C", r.dir)
	return r
}

// cachedRootTarball returns the tarball of a debootstrapped Debian 12 root,
// making it first if the cache has none for this mirror and package list.
func cachedRootTarball(t *testing.T) string {
	t.Helper()
	mirror := os.Getenv("TOBIRA_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	include := strings.Join(rootPackages, ",")
	sum := sha256.Sum256([]byte("bookworm minbase " + mirror + " " + include))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir() // no HOME: $TMPDIR
	}
	cache = filepath.Join(cache, "tobira")
	removeStaleWork(cache)
	tarball := filepath.Join(cache, "debian-bookworm-"+hex.EncodeToString(sum[:6])+".tar")
	if _, err := os.Stat(tarball); err == nil {
		return tarball
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(cache, "debootstrap-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	start := time.Now()
	runHost(t, "", "debootstrap", "--variant=minbase", "--include="+include,
		"bookworm", filepath.Join(work, "root"), mirror)
	// A second test run on the same machine may race us: each writes its
	// own file and renames it into place.
	runHost(t, "", "tar", "--numeric-owner", "-cf", filepath.Join(work, "root.tar"), "-C", filepath.Join(work, "root"), ".")
	if err := os.Rename(filepath.Join(work, "root.tar"), tarball); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrapped Debian 12 from %s in %v, cached as %s", mirror, time.Since(start).Round(time.Second), tarball)
	return tarball
}

// removeStaleWork deletes debootstrap work directories of runs that were
// killed (a run that ends removes its own) once they are an hour old.
func removeStaleWork(cache string) {
	stale, _ := filepath.Glob(filepath.Join(cache, "debootstrap-*"))
	for _, dir := range stale {
		if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(dir)
		}
	}
}

// systemctlStub stands in for systemctl in the root, which runs no
// systemd: it logs how the maintainer scripts call it, answers is-enabled
// from the unit files, and says every unit is inactive.
const systemctlStub = `#!/bin/sh
echo "systemctl $*" >> /var/log/systemctl-stub.log
for a in "$@"; do
  case "$a" in
    --version) exec /usr/bin/systemctl --version ;;
    is-enabled) exec /usr/bin/systemctl --root=/ "$@" ;;
    is-active) exit 3 ;;
  esac
done
exit 0
`

// fakeRunningSystemd makes the maintainer scripts believe systemd runs
// (they test /run/systemd/system) and routes their systemctl calls to
// systemctlStub.
func (r debianRoot) fakeRunningSystemd(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(r.path("/run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.path("/usr/local/sbin/systemctl"), []byte(systemctlStub), 0o755); err != nil {
		t.Fatal(err)
	}
}

// systemctlCalls returns the systemctl calls logged since the last call.
func (r debianRoot) systemctlCalls(t *testing.T) string {
	t.Helper()
	log := r.path("/var/log/systemctl-stub.log")
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runHost runs a command on the host in dir and fails the test if it fails.
func runHost(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
