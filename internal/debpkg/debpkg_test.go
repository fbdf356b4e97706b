package debpkg

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// oldVersion is the release the upgrade starts from: it sorts before every
// version deploy/debian/version prints.
const oldVersion = "0.0.0~0"

// packages are the packages make package builds, in install order.
var packages = []string{"tobira", "tobira-hq", "tobira-tools"}

// installed is what the packages put in place, with owner, group and mode.
var installed = []struct{ path, stat string }{
	{"/usr/bin/tobira", "root:root 755"},
	{"/usr/bin/tobira-hq", "root:root 755"},
	{"/usr/bin/tobira-cardsim", "root:root 755"},
	{"/usr/bin/tobira-release", "root:root 755"},
	{"/usr/lib/systemd/system/tobira.service", "root:root 644"},
	{"/usr/lib/systemd/system/tobira-updating.service", "root:root 644"},
	{"/usr/lib/systemd/system/tobira-hq.service", "root:root 644"},
	{"/usr/lib/udev/rules.d/60-tobira-gpio.rules", "root:root 644"},
	{"/usr/share/polkit-1/rules.d/50-tobira-pcscd.rules", "root:root 644"},
	{"/usr/share/doc/tobira/DEPLOYMENT.md", "root:root 644"},
	{"/etc/tobira/tobira.toml", "root:root 644"},
	{"/etc/tobira/tobira-hq.toml", "root:root 644"},
	{"/etc/tobira/trust", "root:root 755"},
	{"/etc/tobira/tls", "root:tobira 750"},
	{"/etc/tobira/hq", "root:tobira-hq 750"},
	{"/var/lib/tobira", "tobira:tobira 750"},
	{"/var/lib/tobira-hq", "tobira-hq:tobira-hq 750"},
}

// units are the systemd units of the packages.
var units = []string{"tobira.service", "tobira-updating.service", "tobira-hq.service"}

// enabledLink is what `systemctl enable tobira.service` creates.
const enabledLink = "/etc/systemd/system/multi-user.target.wants/tobira.service"

func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds packages for three architectures and a Debian root: not with -short")
	}
	need(t, os.Geteuid() == 0, "not root (chroot and dpkg in the Debian root need it)")
	needCommands(t, "make", "dpkg-deb", "readelf", "debootstrap", "unshare", "chroot", "tar",
		"aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc", "qemu-aarch64-static", "qemu-arm-static")
	for _, triplet := range []string{"aarch64-linux-gnu", "arm-linux-gnueabihf"} {
		_, err := os.Stat("/usr/lib/" + triplet + "/pkgconfig/libpcsclite.pc")
		need(t, err == nil, "no libpcsclite-dev for "+triplet)
	}
	repo := repoRoot(t)
	dist := t.TempDir()

	start := time.Now()
	makePackages(t, repo, filepath.Join(dist, "old"), oldVersion, "amd64")
	newVersion := makePackages(t, repo, filepath.Join(dist, "new"), "", "amd64", "arm64", "armhf")
	t.Logf("make package: %s (amd64) and %s (amd64, arm64, armhf) in %v",
		oldVersion, newVersion, time.Since(start).Round(time.Second))
	if !versionLess(t, oldVersion, newVersion) {
		t.Fatalf("the new version %s does not sort after %s", newVersion, oldVersion)
	}

	t.Run("amd64 in Debian 12", func(t *testing.T) {
		start := time.Now()
		testLifecycle(t, repo, dist, newVersion)
		t.Logf("install, upgrade, remove, purge in %v", time.Since(start).Round(time.Second))
	})
	for _, arch := range []string{"arm64", "armhf"} {
		t.Run(arch+" under qemu", func(t *testing.T) {
			testForeignBinaries(t, filepath.Join(dist, "new"), newVersion, arch)
		})
	}
}

// makePackages runs make package into dist and returns the version built
// (version, or the one make derived from git when version is empty).
func makePackages(t *testing.T, repo, dist, version string, archs ...string) string {
	t.Helper()
	args := []string{"--no-print-directory", "-C", repo, "package",
		"DIST=" + dist, "PKG_ARCHS=" + strings.Join(archs, " ")}
	if version != "" {
		args = append(args, "PKG_VERSION="+version)
	}
	runHost(t, "", "make", args...)
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	if len(debs) != len(packages)*len(archs) {
		t.Fatalf("make package wrote %d packages, want %d: %v", len(debs), len(packages)*len(archs), debs)
	}
	got := strings.TrimSpace(runHost(t, "", "dpkg-deb", "-f", debs[0], "Version"))
	if version != "" && got != version {
		t.Fatalf("packages have version %s, want %s", got, version)
	}
	return got
}

// testLifecycle installs the old amd64 packages in a Debian 12 root,
// configures them as an installer would, upgrades to the new ones, checks
// the units, removes and purges.
func testLifecycle(t *testing.T, repo, dist, newVersion string) {
	r := newRoot(t)
	r.fakeRunningSystemd(t)
	for _, v := range []string{"old", "new"} {
		debs, _ := filepath.Glob(filepath.Join(dist, v, "*_amd64.deb"))
		if err := os.MkdirAll(r.path("/tmp/debs/"+v), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, d := range debs {
			runHost(t, "", "cp", d, r.path("/tmp/debs/"+v))
		}
	}

	dpkgInstall(t, r, "old", oldVersion)
	checkFreshInstall(t, r, repo)
	configure(t, r)
	uid := r.must(t, "id", "-u", "tobira")

	dpkgInstall(t, r, "new", newVersion)
	checkUpgrade(t, r, uid)
	verifyUnits(t, r)

	r.must(t, "dpkg", "--remove", "tobira", "tobira-hq", "tobira-tools")
	checkRemoved(t, r)
	r.must(t, "dpkg", "--purge", "tobira", "tobira-hq", "tobira-tools")
	checkPurged(t, r)
}

// dpkgInstall installs the packages of one version (old or new) with plain
// dpkg -i and no terminal: a question would fail it.
func dpkgInstall(t *testing.T, r debianRoot, which, version string) {
	t.Helper()
	args := []string{"dpkg", "--install"}
	for _, p := range packages {
		args = append(args, "/tmp/debs/"+which+"/"+p+"_"+version+"_amd64.deb")
	}
	out := r.must(t, args...)
	if strings.Contains(out, "Configuration file") {
		t.Errorf("dpkg asked about a configuration file:\n%s", out)
	}
	for _, p := range packages {
		if got := r.must(t, "dpkg-query", "-W", "-f=${Status} ${Version}", p); got != "install ok installed "+version {
			t.Errorf("%s: dpkg-query says %q, want installed %s", p, got, version)
		}
	}
	for _, c := range [][]string{{"tobira", "version"}, {"tobira-hq", "version"}} {
		if out := r.must(t, c...); !strings.Contains(out, version) {
			t.Errorf("%s: %q lacks %s", strings.Join(c, " "), out, version)
		}
	}
}

// checkFreshInstall checks files, users, groups, directories, the conffile
// and the units right after the first install.
func checkFreshInstall(t *testing.T, r debianRoot, repo string) {
	t.Helper()
	for _, f := range installed {
		if got := strings.TrimSpace(r.must(t, "stat", "-c", "%U:%G %a", f.path)); got != f.stat {
			t.Errorf("%s: %s, want %s", f.path, got, f.stat)
		}
	}
	example, err := os.ReadFile(filepath.Join(repo, "deploy/tobira.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(r.path("/etc/tobira/tobira.toml")); string(got) != string(example) {
		t.Errorf("/etc/tobira/tobira.toml is not deploy/tobira.example.toml")
	}
	for pkg, conffile := range map[string]string{"tobira": "/etc/tobira/tobira.toml", "tobira-hq": "/etc/tobira/tobira-hq.toml"} {
		if out := r.must(t, "dpkg-query", "-W", "-f=${Conffiles}", pkg); !strings.Contains(out, conffile+" ") {
			t.Errorf("%s: conffiles %q lack %s", pkg, out, conffile)
		}
	}
	checkUser(t, r, "tobira", "/var/lib/tobira", "gpio", "input")
	checkUser(t, r, "tobira-hq", "/var/lib/tobira-hq")
	checkUnitFiles(t, r)
	if _, err := os.Lstat(r.path(enabledLink)); err == nil {
		t.Errorf("a fresh install enabled tobira.service (the example configuration cannot run a door)")
	}
	calls := r.systemctlCalls(t)
	if !strings.Contains(calls, "daemon-reload") || strings.Contains(calls, "start") {
		t.Errorf("a fresh install called systemctl as\n%s\nwant daemon-reload and no start", calls)
	}
	// A fresh install is not configured yet: check-config names the first
	// file the installer has to add.
	out, err := r.exec("tobira", "check-config", "/etc/tobira/tobira.toml")
	if err == nil || !strings.Contains(out, "/etc/tobira/trust/jpki-auth-ca.pem") {
		t.Errorf("check-config of the fresh example: %v\n%s\nwant a failure naming the JPKI CA file", err, out)
	}
}

// checkUser checks a system user: its home, shell and groups.
func checkUser(t *testing.T, r debianRoot, user, home string, groups ...string) {
	t.Helper()
	ent := strings.Split(strings.TrimSpace(r.must(t, "getent", "passwd", user)), ":")
	if len(ent) != 7 || ent[5] != home || ent[6] != "/usr/sbin/nologin" || len(ent[2]) > 3 {
		t.Errorf("user %s: %q, want a system user with home %s and no login", user, ent, home)
	}
	have := strings.Fields(r.must(t, "id", "-nG", user))
	for _, g := range append([]string{user}, groups...) {
		if !slices.Contains(have, g) {
			t.Errorf("user %s is in %v, not in %s", user, have, g)
		}
	}
}

// checkUnitFiles checks that the installed units run the package's binaries.
func checkUnitFiles(t *testing.T, r debianRoot) {
	t.Helper()
	want := map[string]string{
		"tobira.service":          "ExecStart=/usr/bin/tobira run --config /etc/tobira/tobira.toml",
		"tobira-updating.service": "ExecStartPre=/usr/bin/tobira firmware guard --root /var/lib/tobira/firmware",
		"tobira-hq.service":       "ExecStart=/usr/bin/tobira-hq serve --config /etc/tobira/tobira-hq.toml",
	}
	for _, u := range units {
		b, err := os.ReadFile(r.path("/usr/lib/systemd/system/" + u))
		if err != nil {
			t.Error(err)
			continue
		}
		if strings.Contains(string(b), "/usr/local/") || !strings.Contains(string(b), want[u]) {
			t.Errorf("%s: want %q and no /usr/local/ path:\n%s", u, want[u], b)
		}
	}
}

// configure does what an installer does after the install: adds the
// certificates and key the example names, edits the configuration, enables
// the service, and the service writes its data.
func configure(t *testing.T, r debianRoot) {
	t.Helper()
	writeStandIns(t, r.dir)
	r.must(t, "chown", "root:tobira", "/etc/tobira/tls/device.key")
	conf := r.path("/etc/tobira/tobira.toml")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `device = "ctl-3f-east"`, `device = "ctl-test-1"`, 1)
	if edited == string(b) {
		t.Fatal(`the example has no device = "ctl-3f-east" line to edit`)
	}
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r.must(t, "/usr/bin/systemctl", "--root=/", "enable", "tobira.service")
	for _, f := range []struct{ path, owner string }{
		{"/var/lib/tobira/policy.db", "tobira:tobira"},
		{"/var/lib/tobira-hq/hq.db", "tobira-hq:tobira-hq"},
	} {
		if err := os.WriteFile(r.path(f.path), []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		r.must(t, "chown", f.owner, f.path)
	}
	checkConfigAsService(t, r)
	r.systemctlCalls(t)
}

// checkConfigAsService runs check-config of the installed configuration as
// the service user, which must be able to read every file it names.
func checkConfigAsService(t *testing.T, r debianRoot) {
	t.Helper()
	out, err := r.execAs(t, "tobira", "tobira", "check-config", "/etc/tobira/tobira.toml")
	if err != nil || !strings.Contains(out, ": ok:") || !strings.Contains(out, "device ctl-test-1") {
		t.Errorf("check-config as tobira: %v\n%s", err, out)
	}
}

// checkUpgrade checks that the upgrade kept configuration, data, user and
// enablement, and restarted the enabled unit only.
func checkUpgrade(t *testing.T, r debianRoot, uid string) {
	t.Helper()
	if b, _ := os.ReadFile(r.path("/etc/tobira/tobira.toml")); !strings.Contains(string(b), "ctl-test-1") {
		t.Errorf("the upgrade lost the edit of /etc/tobira/tobira.toml")
	}
	if leftovers, _ := filepath.Glob(r.path("/etc/tobira/*.dpkg-*")); len(leftovers) > 0 {
		t.Errorf("the upgrade left %v", leftovers)
	}
	for _, f := range []string{"/var/lib/tobira/policy.db", "/var/lib/tobira-hq/hq.db", "/etc/tobira/tls/device.key", enabledLink} {
		if _, err := os.Lstat(r.path(f)); err != nil {
			t.Errorf("the upgrade lost %s: %v", f, err)
		}
	}
	if got := r.must(t, "id", "-u", "tobira"); got != uid {
		t.Errorf("user tobira is uid %s after the upgrade, was %s", got, uid)
	}
	if got := strings.TrimSpace(r.must(t, "stat", "-c", "%U:%G %a", "/etc/tobira/tls")); got != "root:tobira 750" {
		t.Errorf("/etc/tobira/tls: %s after the upgrade, want root:tobira 750", got)
	}
	calls := r.systemctlCalls(t)
	if !strings.Contains(calls, "restart tobira.service\n") {
		t.Errorf("the upgrade did not restart the enabled tobira.service; systemctl calls:\n%s", calls)
	}
	for _, line := range strings.Split(calls, "\n") {
		if strings.Contains(line, "restart") && (strings.Contains(line, "tobira-updating") || strings.Contains(line, "tobira-hq")) {
			t.Errorf("the upgrade restarted a unit that was neither enabled nor running: %s", line)
		}
	}
	checkConfigAsService(t, r)
}

// verifyUnits runs systemd-analyze verify on each unit. The self-updating
// unit's ExecStart is the installed release, which a fresh root has not:
// that one finding is expected (docs/FIRMWARE.md bootstraps it).
func verifyUnits(t *testing.T, r debianRoot) {
	t.Helper()
	for _, u := range units {
		out, err := r.exec("systemd-analyze", "verify", "/usr/lib/systemd/system/"+u)
		var findings []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "" && !(u == "tobira-updating.service" &&
				strings.Contains(line, "/var/lib/tobira/firmware/current/tobira is not executable")) {
				findings = append(findings, line)
			}
		}
		if len(findings) > 0 || (err != nil && u != "tobira-updating.service") {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, strings.Join(findings, "\n"))
		}
	}
}

// checkRemoved checks that remove stopped the units and kept
// configuration, data and users.
func checkRemoved(t *testing.T, r debianRoot) {
	t.Helper()
	calls := r.systemctlCalls(t)
	for _, want := range []string{"stop tobira.service tobira-updating.service", "stop tobira-hq.service"} {
		if !strings.Contains(calls, want) {
			t.Errorf("remove did not call systemctl %s; calls:\n%s", want, calls)
		}
	}
	for _, gone := range []string{"/usr/bin/tobira", "/usr/bin/tobira-hq", "/usr/bin/tobira-release",
		"/usr/lib/systemd/system/tobira.service"} {
		if _, err := os.Lstat(r.path(gone)); err == nil {
			t.Errorf("remove left %s", gone)
		}
	}
	for _, kept := range []string{"/etc/tobira/tobira.toml", "/etc/tobira/tobira-hq.toml",
		"/etc/tobira/tls/device.key", "/var/lib/tobira/policy.db", "/var/lib/tobira-hq/hq.db"} {
		if _, err := os.Lstat(r.path(kept)); err != nil {
			t.Errorf("remove deleted %s: %v", kept, err)
		}
	}
	for _, user := range []string{"tobira", "tobira-hq"} {
		if _, err := r.exec("getent", "passwd", user); err != nil {
			t.Errorf("remove deleted user %s", user)
		}
	}
}

// checkPurged checks that purge left nothing of the packages but the
// shared groups gpio and input.
func checkPurged(t *testing.T, r debianRoot) {
	t.Helper()
	for _, gone := range []string{"/etc/tobira", "/var/lib/tobira", "/var/lib/tobira-hq", enabledLink,
		"/etc/systemd/system/tobira.service", "/var/lib/systemd/deb-systemd-helper-enabled/tobira.service.dsh-also"} {
		if _, err := os.Lstat(r.path(gone)); err == nil {
			t.Errorf("purge left %s", gone)
		}
	}
	for _, name := range []string{"tobira", "tobira-hq"} {
		if out, err := r.exec("getent", "passwd", name); err == nil {
			t.Errorf("purge left user %s", out)
		}
		if out, err := r.exec("getent", "group", name); err == nil {
			t.Errorf("purge left group %s", out)
		}
		if out, _ := r.exec("dpkg-query", "-W", "-f=${Status}", name); strings.Contains(out, "ok installed") || strings.Contains(out, "config-files") {
			t.Errorf("%s after purge: %s", name, out)
		}
	}
	if out, _ := r.exec("dpkg-statoverride", "--list"); strings.Contains(out, "tobira") { // exit 1 when empty
		t.Errorf("purge left statoverrides:\n%s", out)
	}
	for _, g := range []string{"gpio", "input"} {
		if _, err := r.exec("getent", "group", g); err != nil {
			t.Errorf("purge deleted the shared group %s", g)
		}
	}
}

// testForeignBinaries checks that an arch's packages hold binaries for it,
// and runs its tobira version and check-config of the shipped example
// under qemu-user-static, with the host's multiarch libraries.
func testForeignBinaries(t *testing.T, dist, version, arch string) {
	machine, qemu := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "armhf": elf.EM_ARM}[arch],
		map[string]string{"arm64": "qemu-aarch64-static", "armhf": "qemu-arm-static"}[arch]
	dir := t.TempDir()
	for _, p := range packages {
		runHost(t, "", "dpkg-deb", "-x", filepath.Join(dist, p+"_"+version+"_"+arch+".deb"), dir)
	}
	for _, b := range []string{"tobira", "tobira-hq", "tobira-cardsim", "tobira-release"} {
		f, err := elf.Open(filepath.Join(dir, "usr/bin", b))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Errorf("%s in the %s package is for %v", b, arch, f.Machine)
		}
		f.Close()
	}
	tobira := filepath.Join(dir, "usr/bin/tobira")
	if out := runHost(t, "", qemu, tobira, "version"); !strings.Contains(out, version) {
		t.Errorf("%s tobira version: %q, want %s", arch, out, version)
	}
	// The shipped example, its /etc/tobira paths moved into dir.
	example, err := os.ReadFile(filepath.Join(dir, "etc/tobira/tobira.toml"))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "tobira.toml")
	moved := strings.ReplaceAll(string(example), "/etc/tobira/", filepath.Join(dir, "etc/tobira")+"/")
	if err := os.WriteFile(conf, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	writeStandIns(t, dir)
	cmd := exec.Command(qemu, tobira, "check-config", conf)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), ": ok:") {
		t.Errorf("%s tobira check-config of the example: %v\n%s", arch, err, out)
	}
}
