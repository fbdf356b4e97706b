package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/cmd/internal/cli/clitest"
	"github.com/tobira-ac/tobira/firmware"
)

// TestAdminAndDeviceCommands walks an admin's and a device's commands in
// order: keys, signing, verifying, publishing, installing, status,
// rollback, fleet views.
func TestAdminAndDeviceCommands(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	arch := runtime.GOOS + "/" + runtime.GOARCH
	for _, f := range []struct{ name, body string }{{"bin1", "release one"}, {"bin2", "release two"}, {"evil", "release tw0"}} {
		if err := os.WriteFile(p(f.name), []byte(f.body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	report := func(device string, st firmware.Status) {
		data, _ := json.Marshal(firmware.Report{Device: device, Status: st, Reported: time.Now()})
		if err := os.MkdirAll(p("reports"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p("reports"), device+".json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	report("door-1", firmware.Status{Running: "1.1.0", Committed: "1.1.0"})
	report("door-2", firmware.Status{Running: "1.0.0", Committed: "1.0.0", Last: &firmware.Result{Version: "1.1.0", Outcome: firmware.OutcomeRolledBack, Reason: firmware.ReasonCrashLoop}})
	report("gate-1", firmware.Status{Running: "1.1.0", Committed: "1.0.0", Pending: "1.1.0"})

	for _, tc := range []struct {
		args    string
		wantErr error // nil: success
		wantOut string
	}{
		{"release keygen --out " + p("hq2026"), nil, "key id "},
		{"release keygen --out " + p("hq2026"), os.ErrExist, ""},
		{"release keygen --out " + p("other"), nil, "key id "},
		{"release sign --key " + p("hq2026.key") + " --version 1.0.0 --arch " + arch + " --binary " + p("bin1") + " --out " + p("r1.json"), nil, "signed 1.0.0"},
		{"release sign --key " + p("hq2026.key") + " --version 1.1.0 --floor 1.0.0 --arch " + arch + " --binary " + p("bin2") + " --out " + p("r2.json"), nil, "signed 1.1.0"},
		{"release sign --key " + p("other.key") + " --version 1.2.0 --arch " + arch + " --binary " + p("bin2") + " --out " + p("r3.json"), nil, "signed 1.2.0"},
		{"release verify --pub " + p("hq2026.pub") + " " + p("r2.json") + " " + p("bin2"), nil, `"version": "1.1.0"`},
		{"release verify --pub " + p("hq2026.pub") + " " + p("r2.json") + " " + p("evil"), firmware.ErrHashMismatch, ""},
		{"release verify --pub " + p("hq2026.pub") + " " + p("r3.json"), firmware.ErrBadSignature, ""},
		{"release publish --store " + p("store") + " --pub " + p("hq2026.pub") + " " + p("r2.json") + " " + p("bin2"), nil, "published 1.1.0"},
		{"firmware install --root " + p("root") + " --pub " + p("hq2026.pub") + " " + p("r1.json") + " " + p("bin1"), nil, "activated 1.0.0"},
		{"firmware install --root " + p("root") + " --pub " + p("hq2026.pub") + " " + p("r3.json") + " " + p("bin2"), firmware.ErrBadSignature, ""},
		{"firmware install --root " + p("root") + " --pub " + p("hq2026.pub") + " " + p("r2.json") + " " + p("bin2"), nil, "activated 1.1.0"},
		{"firmware status --root " + p("root"), nil, `"pending": "1.1.0"`},
		{"firmware guard --root " + p("root") + " --max-attempts 1", nil, ""},
		{"firmware guard --root " + p("root") + " --max-attempts 1", nil, `"outcome": "rolled_back"`},
		{"firmware status --root " + p("root"), nil, `"running": "1.0.0"`},
		{"firmware rollback --root " + p("root"), firmware.ErrNotInstalled, ""},
		{"release devices --reports " + p("reports"), nil, "door-2  1.0.0    1.0.0      -        1.1.0 rolled_back crash_loop"},
		{"release rollout --reports " + p("reports") + " --version 1.1.0", nil, "1 committed, 1 on trial, 1 rolled back, 0 not yet"},
		{"release frobnicate", cli.ErrUsage, ""},
		{"", cli.ErrUsage, ""},
	} {
		t.Run(tc.args, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), strings.Fields(tc.args), &stdout, &stderr)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("error %v\n%s", err, stderr.String())
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(stdout.String(), tc.wantOut) {
				t.Errorf("output\n%s\nwant it to contain %q", stdout.String(), tc.wantOut)
			}
		})
	}
	if got, err := os.ReadFile(filepath.Join(p("store"), "1.1.0", "tobira")); err != nil || string(got) != "release two" {
		t.Errorf("published binary %q, %v", got, err)
	}
	if fi, err := os.Stat(p("hq2026.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret key file mode: %v, %v", fi, err)
	}
}

var errAny = errors.New("any error")

// TestHelp runs -h, --help and help for every command of the tree.
func TestHelp(t *testing.T) {
	clitest.CheckHelp(t, newRoot(), func(args []string, stdout, stderr io.Writer) error {
		return run(t.Context(), args, stdout, stderr)
	})
}

// TestCommandLine checks the conventions on tobira-release's own
// commands: help at the top, flags after positional arguments, and usage
// errors that exit 2 naming the full command.
func TestCommandLine(t *testing.T) {
	var lines []clitest.Line
	for _, tc := range []struct {
		args     string
		wantCode int
		wantOut  string // on stdout
		wantErr  string // on stderr
	}{
		{"-h", 0, "Usage:\n  tobira-release [flags]", ""},
		{"--help", 0, "release", ""},
		{"help release sign", 0, "tobira-release release sign --key K.key", ""},
		{"release help", 0, "tobira-release release [command]", ""},
		{"--version", 0, "tobira-release dev", ""},
		{"", 2, "", "tobira-release: missing command: want firmware, release"},
		{"release verify", 2, "", "tobira-release release verify: accepts between 1 and 2 arg(s)"},
		{"release verify --pub", 2, "", "tobira-release release verify: flag needs an argument: --pub"},
		{"release verify -pub k.pub r.json", 2, "", "tobira-release release verify: unknown shorthand flag: 'p' in -pub"},
		{"release sign --key k", 2, "", `tobira-release release sign: required flag(s) "binary", "out", "version" not set`},
		{"release publsh", 2, "", `tobira-release release: unknown command "publsh": want devices, keygen, publish, rollout, sign, verify (did you mean publish?)`},
		{"firmware status --root /nonexistent/x extra", 2, "", `tobira-release firmware status: unknown command "extra" for "tobira-release firmware status"`},
		{"release keygen", 2, "", "tobira-release release keygen: --out PREFIX is required\nRun 'tobira-release release keygen --help' for usage."},
	} {
		lines = append(lines, clitest.Line{Args: strings.Fields(tc.args), Code: tc.wantCode, Out: tc.wantOut, Err: tc.wantErr})
	}
	clitest.CheckLines(t, func(args []string, stdout, stderr io.Writer) error {
		return run(t.Context(), args, stdout, stderr)
	}, lines)
}

// TestFlagsAnywhereAndLegacyKeys signs with a release key in the base64
// text of the first releases and verifies with its public half, flags
// after the positional arguments: old key files keep working.
func TestFlagsAnywhereAndLegacyKeys(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"old.key": base64.StdEncoding.EncodeToString(priv.Seed()) + "\n",
		"old.pub": base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)) + "\n",
		"bin":     "a binary",
	} {
		if err := os.WriteFile(p(name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"release", "sign", "--key", p("old.key"), "--version", "2.0.0", "--binary", p("bin"), "--out", p("r.json")},
		{"release", "verify", p("r.json"), p("bin"), "--pub", p("old.pub")},
		{"release", "publish", p("r.json"), "--store", p("store"), p("bin"), "--pub", p("old.pub")},
	} {
		var out bytes.Buffer
		if err := run(t.Context(), args, &out, &out); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, &out)
		}
	}
}
