// Package archtest holds the tests that keep the dependency graph honest:
// each product package may import only what docs/ARCHITECTURE.md allows.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/tobira-ac/tobira/"

// rules lists, for each package, the import paths (prefixes) it must not
// depend on, directly or through other packages.
var rules = []struct {
	pkg       string
	forbidden []string
}{
	{"policy", []string{mod + "reader", mod + "door", mod + "sync", "periph.io/", "github.com/ebfe/scard",
		"github.com/eclipse/paho.mqtt.golang", "github.com/mochi-mqtt/", "net/http"}},
	{"door", []string{mod + "reader", mod + "policy", mod + "sync", "github.com/ebfe/scard", "github.com/eclipse/paho.mqtt.golang"}},
	{"reader", []string{mod + "policy", mod + "door", mod + "sync", "periph.io/", "github.com/eclipse/paho.mqtt.golang"}},
	{"sync", []string{mod + "door", mod + "reader", "periph.io/", "github.com/ebfe/scard"}},
	{"firmware", []string{mod + "door", mod + "reader", "periph.io/", "github.com/ebfe/scard"}},
}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestDependencyRules(t *testing.T) {
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			for _, d := range deps(t, r.pkg) {
				for _, f := range r.forbidden {
					if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") {
						t.Errorf("%s depends on %s (forbidden: %s)", r.pkg, d, f)
					}
				}
			}
		})
	}
}

// TestRulesCanFail proves the matcher sees a real dependency: controller is
// the wiring and must depend on all the parts.
func TestRulesCanFail(t *testing.T) {
	all := strings.Join(deps(t, "controller"), "\n")
	for _, want := range []string{mod + "reader", mod + "policy", mod + "sync"} {
		if !strings.Contains(all, want+"\n") {
			t.Errorf("controller does not depend on %s: the dependency listing is broken", want)
		}
	}
}
