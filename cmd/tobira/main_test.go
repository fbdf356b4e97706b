package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/cmd/internal/cli/clitest"
	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/reader/jpkitest"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// baseConfig returns a tobira.toml with its data in dataDir, one trust
// anchor, an HQ broker on the loopback, door "front" on relay pin GPIO17 and
// the vpcd reader (pcsctest.Reader) in front of it.
func baseConfig(dataDir, anchor string) string {
	return `site = "s1"
device = "d1"
data_dir = "` + dataDir + `"
[trust]
anchors = ["` + anchor + `"]
[hq]
broker = "tcp://127.0.0.1:1883"
[[door]]
name = "front"
relay_pin = "GPIO17"
[[reader]]
name = "` + pcsctest.Reader + `"
door = "front"
`
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := jpkitest.NewCA("check-config", time.Now().AddDate(-1, 0, 0), time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	anchor := writeFile(t, dir, "ca.der", string(ca.DER))
	base := baseConfig(filepath.Join(dir, "data"), anchor)
	// Keys as both keygens write them (cli.Keygen): an HQ key and a release
	// key in PEM; and a release key in the base64 text of the first releases.
	var keygenOut bytes.Buffer
	for _, prefix := range []string{"hq", "release"} {
		if err := cli.Execute(t.Context(), cli.Keygen("x"), []string{"--out", filepath.Join(dir, prefix)}, &keygenOut, &keygenOut); err != nil {
			t.Fatal(err)
		}
	}
	legacyRelease := writeFile(t, dir, "legacy.pub", "UeKuH+HtIVBkZpUJ9v1a0c0lJwcX9QWKp9m4MDmwqFA=\n")
	withKeys := func(releaseKey string) string {
		return strings.Replace(base, "[hq]\n", "[hq]\nkeys = [\""+filepath.Join(dir, "hq.pub")+"\"]\n", 1) +
			"[firmware]\nroot = \"" + filepath.Join(dir, "fw") + "\"\nrelease_keys = [\"" + releaseKey + "\"]\n"
	}
	tests := []struct {
		name    string
		body    string
		wantErr string
		wantOut string
	}{
		{"valid", base, "", `reader "Virtual PCD 00 00": door "front", direction in, mode serial, no keypad`},
		{"missing anchor file", strings.Replace(base, anchor, filepath.Join(dir, "nope.pem"), 1), "nope.pem", ""},
		{"anchor not a certificate", strings.Replace(base, anchor, writeFile(t, dir, "junk.pem", "hello"), 1), "junk.pem", ""},
		{"bad key", strings.Replace(base, `relay_pin = "GPIO17"`, "relay_pin = \"GPIO17\"\npulse = \"0s\"", 1), "door[0].pulse", ""},
		{"release key not a key", base + "[firmware]\nroot = \"" + filepath.Join(dir, "fw") + "\"\nrelease_keys = [\"" +
			writeFile(t, dir, "bad-release.pub", "not a key") + "\"]\n", "firmware.release_keys[0]", ""},
		{"keys from keygen", withKeys(filepath.Join(dir, "release.pub")), "", ": ok:"},
		{"legacy release key", withKeys(legacyRelease), "", ": ok:"},
		{"secret key pinned as a release key", withKeys(filepath.Join(dir, "hq.key")), "firmware.release_keys[0]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeFile(t, dir, "tobira.toml", tt.body)
			var out bytes.Buffer
			err := run(t.Context(), []string{"check-config", cfg}, &out, &out)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("check-config: %v", err)
				}
				if !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(out.String(), ": ok:") {
					t.Errorf("output %q lacks %q", out.String(), tt.wantOut)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}

	// run: the relay pin is the first thing touched. On a machine without
	// that GPIO line, start-up fails naming the pin, before the data
	// directory is created.
	cfg := writeFile(t, dir, "tobira.toml", strings.Replace(base, "GPIO17", "NO_SUCH_LINE", 1))
	err = run(t.Context(), []string{"run", "--config", cfg}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, door.ErrNoSuchPin) || !strings.Contains(err.Error(), "NO_SUCH_LINE") {
		t.Errorf("run with an unknown pin: %v, want ErrNoSuchPin naming it", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(statErr) {
		t.Errorf("data_dir was created before the relay was secured (stat: %v)", statErr)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"check-config"}, {"run", "--bogus"}, {"run", "-config", "x"},
		{"snapshot"}, {"snapshot", "import"}, {"card", "inspect", "extra"}, {"firmware", "install"}} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, cli.ErrUsage) || cli.ExitCode(err, io.Discard) != 2 {
			t.Errorf("run(%q) = %v, want a usage error (exit status 2)", args, err)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out, &out); err != nil || out.String() != "tobira dev\n" {
			t.Errorf("%v: %q, %v", args, out.String(), err)
		}
	}
}

// TestHelp runs -h, --help and help for every command of the tree.
func TestHelp(t *testing.T) {
	clitest.CheckHelp(t, newRoot(), func(args []string, stdout, stderr io.Writer) error {
		return run(t.Context(), args, stdout, stderr)
	})
}

// TestCommandLine checks the examples on tobira: help exits 0,
// flags go after positional arguments, and errors name the full command.
func TestCommandLine(t *testing.T) {
	var lines []clitest.Line
	for _, l := range []struct {
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{[]string{"run", "-h"}, 0, "tobira run [--config FILE]", ""},
		{[]string{"help", "firmware", "install"}, 0, "tobira firmware install --pub K.pub", ""},
		{[]string{"snapshot", "help", "import"}, 0, "tobira snapshot import [--config FILE] SNAPSHOT.json", ""},
		{[]string{"check-config", "a", "b"}, 2, "", "tobira check-config: accepts 1 arg(s), received 2\nRun 'tobira check-config --help' for usage."},
		{[]string{"snapshot", "import", "--config"}, 2, "", "tobira snapshot import: flag needs an argument: --config"},
		{[]string{"snapshot", "import", "/nonexistent/snap.json", "--config", "/nonexistent/tobira.toml"}, 1, "",
			"tobira snapshot import: bad configuration: read /nonexistent/tobira.toml"},
		{[]string{"firmware", "status", "--root", "/nonexistent/fw"}, 0, "{}", ""},
	} {
		lines = append(lines, clitest.Line{Args: l.args, Code: l.wantCode, Out: l.wantOut, Err: l.wantErr})
	}
	clitest.CheckLines(t, func(args []string, stdout, stderr io.Writer) error {
		return run(t.Context(), args, stdout, stderr)
	}, lines)
}
