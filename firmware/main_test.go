package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// fw holds the paths of the fake edge binaries TestMain builds, by name.
var fw = map[string]string{}

// fwBuilds lists the fake releases: name -> version, mode.
var fwBuilds = map[string][2]string{
	"v1":              {"1.0.0", "healthy"},
	"v2":              {"2.0.0", "healthy"},
	"v2-exit":         {"2.0.0", "exit-at-start"},
	"v2-crash":        {"2.0.0", "crash"},
	"v2-neverhealthy": {"2.0.0", "never-healthy"},
}

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fakefw-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for name, b := range fwBuilds {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out,
			"-ldflags", fmt.Sprintf("-X main.version=%s -X main.mode=%s", b[0], b[1]), "./testdata/fakefw")
		if msg, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build fake release %s: %v\n%s", name, err, msg)
			return 1
		}
		fw[name] = out
	}
	return m.Run()
}

// testKey derives a deterministic release key from a name.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("tobira test release key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// testNow anchors manifests; it is the real time because child processes
// check expiry with the system clock.
var testNow = time.Now().UTC().Truncate(time.Second)

func hostArch() string { return runtime.GOOS + "/" + runtime.GOARCH }

// manifestFor returns a valid manifest of version v for the file at path.
func manifestFor(t *testing.T, v, path string) Manifest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return manifestForBytes(v, data)
}

func manifestForBytes(v string, data []byte) Manifest {
	sum := sha256.Sum256(data)
	return Manifest{
		Version: v, Arch: hostArch(), Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Issued: testNow.Add(-time.Hour), Expires: testNow.Add(30 * 24 * time.Hour),
	}
}

func sign(t *testing.T, m Manifest, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	env, err := Sign(m, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// newUpdater returns an Updater on root pinned to the "release" key.
func newUpdater(t *testing.T, root string) *Updater {
	t.Helper()
	v, err := NewVerifier(pub(testKey("release")))
	if err != nil {
		t.Fatal(err)
	}
	return &Updater{Root: root, Verifier: v, Device: Device{ID: "door-1", Groups: []string{"lobby"}},
		ChunkSize: 16 << 10, RetryDelay: time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
}

// installFile signs and installs the fake release name as version v.
func installFile(t *testing.T, u *Updater, v, name string) Manifest {
	t.Helper()
	m := manifestFor(t, v, fw[name])
	if _, err := u.Install(context.Background(), sign(t, m, testKey("release")), FileFetcher{Path: fw[name]}); err != nil {
		t.Fatalf("install %s as %s: %v", name, v, err)
	}
	return m
}

// run is one start of the service in the systemd simulation.
type run struct {
	out  string // the line the fake printed
	code int    // exit status
}

// systemd simulates Restart=always: up to maxStarts times it runs Guard
// (ExecStartPre, if guard is set) and then root/current/tobira, until a
// start exits 0 (a healthy service that stays up).
func systemd(t *testing.T, root string, guard bool, maxStarts int, env ...string) []run {
	t.Helper()
	var runs []run
	for i := range maxStarts {
		inv := fmt.Sprintf("invocation-%d", i)
		if guard {
			if _, err := Guard(context.Background(), GateOptions{Root: root, InvocationID: inv}); err != nil {
				t.Fatalf("start %d: guard: %v", i, err)
			}
		}
		cmd := exec.Command(filepath.Join(root, currentLink, BinaryName))
		cmd.Env = append(os.Environ(), append([]string{"FW_ROOT=" + root, "INVOCATION_ID=" + inv}, env...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := run{out: string(bytes.TrimSpace(stdout.Bytes())), code: cmd.ProcessState.ExitCode()}
		if err != nil && r.code < 0 {
			t.Fatalf("start %d: %v\n%s", i, err, stderr.Bytes())
		}
		runs = append(runs, r)
		if r.code == 0 {
			return runs
		}
	}
	t.Fatalf("service never came up healthy in %d starts: %v", maxStarts, runs)
	return nil
}
