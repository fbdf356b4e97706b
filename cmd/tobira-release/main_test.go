package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

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
		{"release keygen -out " + dir + " -name hq2026", nil, "key "},
		{"release keygen -out " + dir + " -name hq2026", errAny, ""},
		{"release keygen -out " + dir + " -name other", nil, "key "},
		{"release sign -key " + p("hq2026.key") + " -version 1.0.0 -arch " + arch + " -binary " + p("bin1") + " -out " + p("r1.json"), nil, "signed 1.0.0"},
		{"release sign -key " + p("hq2026.key") + " -version 1.1.0 -floor 1.0.0 -arch " + arch + " -binary " + p("bin2") + " -out " + p("r2.json"), nil, "signed 1.1.0"},
		{"release sign -key " + p("other.key") + " -version 1.2.0 -arch " + arch + " -binary " + p("bin2") + " -out " + p("r3.json"), nil, "signed 1.2.0"},
		{"release verify -pub " + p("hq2026.pub") + " " + p("r2.json") + " " + p("bin2"), nil, `"version": "1.1.0"`},
		{"release verify -pub " + p("hq2026.pub") + " " + p("r2.json") + " " + p("evil"), firmware.ErrHashMismatch, ""},
		{"release verify -pub " + p("hq2026.pub") + " " + p("r3.json"), firmware.ErrBadSignature, ""},
		{"release publish -store " + p("store") + " -pub " + p("hq2026.pub") + " " + p("r2.json") + " " + p("bin2"), nil, "published 1.1.0"},
		{"firmware install -root " + p("root") + " -pub " + p("hq2026.pub") + " " + p("r1.json") + " " + p("bin1"), nil, "activated 1.0.0"},
		{"firmware install -root " + p("root") + " -pub " + p("hq2026.pub") + " " + p("r3.json") + " " + p("bin2"), firmware.ErrBadSignature, ""},
		{"firmware install -root " + p("root") + " -pub " + p("hq2026.pub") + " " + p("r2.json") + " " + p("bin2"), nil, "activated 1.1.0"},
		{"firmware status -root " + p("root"), nil, `"pending": "1.1.0"`},
		{"firmware guard -root " + p("root") + " -max-attempts 1", nil, ""},
		{"firmware guard -root " + p("root") + " -max-attempts 1", nil, `"outcome": "rolled_back"`},
		{"firmware status -root " + p("root"), nil, `"running": "1.0.0"`},
		{"firmware rollback -root " + p("root"), firmware.ErrNotInstalled, ""},
		{"release devices -reports " + p("reports"), nil, "door-2  1.0.0    1.0.0      -        1.1.0 rolled_back crash_loop"},
		{"release rollout -reports " + p("reports") + " -version 1.1.0", nil, "1 committed, 1 on trial, 1 rolled back, 0 not yet"},
		{"release frobnicate", firmware.ErrUsage, ""},
		{"", firmware.ErrUsage, ""},
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
