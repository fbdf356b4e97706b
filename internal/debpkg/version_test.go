package debpkg

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/internal/testenv"
)

// need fails the test under CI=true and skips it otherwise: in CI a
// missing tool is a failure, never a silent skip.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	testenv.Missing(t, "%s (scripts/install-deps test installs what is missing)", what)
}

// needCommands calls need for each command that is not on PATH.
func needCommands(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		_, err := exec.LookPath(n)
		need(t, err == nil, "no "+n+" on PATH")
	}
}

// repoRoot returns the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return dir
}

// debVersion runs deploy/debian/version on describe at a fixed commit date.
func debVersion(t *testing.T, repo, describe string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repo, "deploy/debian/version"), describe)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1747733400") // 2025-05-20 09:30:00 UTC
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// versionLess reports whether Debian version a sorts before b.
func versionLess(t *testing.T, a, b string) bool {
	t.Helper()
	return exec.Command("dpkg", "--compare-versions", a, "lt", b).Run() == nil
}

func TestVersion(t *testing.T) {
	needCommands(t, "bash", "dpkg")
	repo := repoRoot(t)
	tests := []struct {
		describe string
		want     string // "" for an error
	}{
		{"v1.2.0", "1.2.0"},
		{"v1.2.0-rc1", "1.2.0~rc1"},
		{"v1.2.0-3-gabc1234", "1.2.0+git20250520093000.abc1234"},
		{"v1.2.0-3-gabc1234-dirty", "1.2.0+git20250520093000.abc1234.dirty"},
		{"v1.2.0-rc1-3-gabc1234", "1.2.0~rc1+git20250520093000.abc1234"},
		{"abc1234", "0.0.0~git20250520093000.abc1234"},
		{"abc1234-dirty", "0.0.0~git20250520093000.abc1234.dirty"},
		{"1.3.0", "1.3.0"},
		{"dev", "0.0.0~dev"},
		{"v1.2.0 beta", ""},
		{"release_1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.describe, func(t *testing.T) {
			got, err := debVersion(t, repo, tt.describe)
			if tt.want == "" {
				if err == nil {
					t.Errorf("version %q = %q, want an error", tt.describe, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("version %q = %q, %v; want %q", tt.describe, got, err, tt.want)
			}
		})
	}

	// Versions sort as releases do: a release candidate before its
	// release, a build after a tag before the next release, and every
	// untagged build after the upgrade test's old version.
	order := []string{oldVersion, "0.0.0~git20250520093000.abc1234", "0.1.0", "1.2.0~rc1",
		"1.2.0", "1.2.0+git20250520093000.abc1234", "1.2.0+git20250521000000.0123abc", "1.2.1"}
	for i := 1; i < len(order); i++ {
		if !versionLess(t, order[i-1], order[i]) {
			t.Errorf("%s does not sort before %s", order[i-1], order[i])
		}
	}
}
