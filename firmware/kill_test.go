package firmware

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/signed"
)

// TestKill9DuringInstall kills an installing process (kill -9) at random
// points and checks after each kill that the root still starts a
// runnable release, that a switched-to release is always on trial, and
// that installing again completes the update.
func TestKill9DuringInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes; skipped with -short")
	}
	dir := t.TempDir()
	envPath, pubPath := filepath.Join(dir, "release.json"), filepath.Join(dir, "release.pub")
	if err := os.WriteFile(envPath, sign(t, manifestFor(t, "2.0.0", fw["v2"]), testKey("release")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := signed.WriteKeyPair(filepath.Join(dir, "release.key"), pubPath, testKey("release")); err != nil {
		t.Fatal(err)
	}
	setup := func() string {
		root := t.TempDir()
		installFile(t, newUpdater(t, root), "1.0.0", "v1")
		return root
	}
	// The running release (v1) installs v2, as a controller would.
	installer := func(root string) *exec.Cmd {
		return exec.Command(fw["v1"], "install", root, envPath, fw["v2"], pubPath)
	}

	// Kill points are drawn within the shortest of two uninterrupted runs.
	full := time.Duration(1<<63 - 1)
	for range 2 {
		root := setup()
		start := time.Now()
		if out, err := installer(root).CombinedOutput(); err != nil {
			t.Fatalf("uninterrupted install: %v\n%s", err, out)
		}
		full = min(full, time.Since(start))
	}
	t.Logf("an uninterrupted install takes %v", full)

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points drawn with seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	outcomes := map[string]int{}
	for i := range 12 {
		root := setup()
		cmd := installer(root)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int64N(int64(full)))
		time.Sleep(delay) // picks the kill point; not used for synchronisation
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		killed := err != nil && strings.Contains(err.Error(), "killed")

		st, serr := ReadStatus(root)
		if serr != nil {
			t.Fatalf("kill %d after %v: status unreadable: %v", i, delay, serr)
		}
		_, partErr := os.Stat(filepath.Join(root, downloadsDir))
		switch {
		case !killed:
			outcomes["finished before the kill"]++
		case st.Running == "2.0.0":
			outcomes["killed after the switch"]++
		case st.Pending == "2.0.0":
			outcomes["killed between state and switch"]++
		case partErr == nil:
			outcomes["killed while staging"]++
		default:
			outcomes["killed before staging"]++
		}
		if st.Running != "1.0.0" && st.Running != "2.0.0" {
			t.Fatalf("kill %d after %v: current is %q", i, delay, st.Running)
		}
		if st.Running == "2.0.0" && st.Pending != "2.0.0" {
			t.Fatalf("kill %d after %v: switched to 2.0.0 without a trial: %+v", i, delay, st)
		}
		runs := systemd(t, root, true, 5)
		if last := runs[len(runs)-1].out; last != st.Running+" healthy healthy" {
			t.Fatalf("kill %d after %v: the service came up as %q, want %s", i, delay, last, st.Running)
		}
		if st.Running == "1.0.0" {
			if out, err := installer(root).CombinedOutput(); err != nil {
				t.Fatalf("kill %d after %v: install again: %v\n%s", i, delay, err, out)
			}
			systemd(t, root, true, 5)
		}
		if st, err := ReadStatus(root); err != nil || st.Committed != "2.0.0" || st.Running != "2.0.0" {
			t.Fatalf("kill %d after %v: final status %+v, %v; want 2.0.0 committed", i, delay, st, err)
		}
	}
	t.Logf("kill points: %v", outcomes)
}
