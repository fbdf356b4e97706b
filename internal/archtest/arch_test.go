// Package archtest holds the tests that keep the dependency graph honest:
// each product package may depend only on what docs/ARCHITECTURE.md
// allows, and each binary links only what it needs. (tailscale's
// tstest/deptest is the model.)
package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mod = "github.com/tobira-ac/tobira/"

// Module paths the rules name.
const (
	paho   = "github.com/eclipse/paho.mqtt.golang"
	mochi  = "github.com/mochi-mqtt/server"
	bbolt  = "go.etcd.io/bbolt"
	scard  = "github.com/ebfe/scard"
	periph = "periph.io/x"
	prom   = "github.com/prometheus"
)

// amqp are the AMQP clients a broker-agnostic HQ might reach for.
var amqp = []string{"github.com/rabbitmq/amqp091-go", "github.com/streadway/amqp"}

// rule says what a package (or binary) must not depend on, directly or
// through other packages, and why.
type rule struct {
	pkg string
	// subtrees are forbidden with every package below them.
	subtrees []string
	// exact are forbidden as themselves only (a parent of pkg, say).
	exact []string
	why   string
}

var rules = []rule{
	{
		pkg: "policy",
		subtrees: []string{mod + "reader", mod + "door", mod + "sync", mod + "hq", periph, scard,
			paho, mochi, "net/http"},
		why: "policy decides from the local snapshot only: the tap path never waits on hardware or the network, " +
			"and every rule is testable without either",
	},
	{
		pkg:      "door",
		subtrees: []string{mod + "reader", mod + "policy", mod + "sync", mod + "hq", scard, paho},
		why:      "a door is driven by decisions, it does not make them or talk to HQ",
	},
	{
		pkg:      "reader",
		subtrees: []string{mod + "policy", mod + "door", mod + "sync", mod + "hq", periph, paho},
		why:      "the reader only turns a card into a Credential; deciding and opening are others' jobs",
	},
	{
		pkg:      "sync/proto",
		subtrees: append([]string{paho, mochi, bbolt, mod + "hq", mod + "door", mod + "reader", mod + "policy"}, amqp...),
		exact:    []string{mod + "sync"},
		why: "the wire contract is shared by both ends and read next to docs/PROTOCOL.md: types and " +
			"validation only, no MQTT client, no storage, no end of the link",
	},
	{
		pkg:      "sync",
		subtrees: []string{mod + "hq", mochi, mod + "door", mod + "reader", periph, scard},
		why: "sync is the device's end of the link: it runs on the edge, which links no HQ code and no " +
			"embedded broker, and reaches doors and readers only through the controller",
	},
	{
		pkg:      "hq",
		subtrees: []string{mod + "door", mod + "reader/pcsc", periph, scard, mochi},
		exact:    []string{mod + "sync"},
		why: "HQ runs on servers (built with CGO disabled): no hardware; it speaks sync/proto, not the " +
			"edge's end of the link",
	},
	{
		pkg:      "firmware",
		subtrees: []string{mod + "door", mod + "reader", mod + "hq", periph, scard},
		why:      "updates must work whatever state the door and reader code is in",
	},
	{
		pkg:      "policy",
		subtrees: []string{prom},
		why: "metrics are read from policy through plain accessors (Store.Freshness) by the controller: " +
			"client_golang pulls in net/http and protobuf, which the decision code has no use for",
	},
	{
		pkg:      "door",
		subtrees: []string{prom},
		why:      "door states and alarms are read at scrape time by the controller's collector (Door.Status); the lock code stays free of monitoring",
	},
	{
		pkg:      "reader",
		subtrees: []string{prom},
		why:      "card errors and read latency are counted by the controller from each Tap; the card protocol stays pure",
	},
	{
		pkg:      "sync/proto",
		subtrees: []string{prom},
		why:      "the wire contract is types and validation only; each end exposes its own metrics (sync, hq)",
	},
	{
		pkg:      "cmd/tobira",
		subtrees: []string{mod + "hq", mochi},
		why:      "the edge binary carries no HQ code and no embedded broker (the demo is cmd/tobira-demo)",
	},
	{
		pkg:      "cmd/tobira-hq",
		subtrees: []string{scard, periph, mod + "door", mod + "reader/pcsc"},
		why:      "tobira-hq is a pure-Go server binary: no PC/SC (libpcsclite) and no GPIO",
	},
}

// deps returns what pkg depends on, itself included (go list -deps).
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

// violations returns the dependencies of pkg (its go list -deps) that r
// forbids.
func (r rule) violations(pkgDeps []string) []string {
	var bad []string
	for _, d := range pkgDeps {
		for _, f := range r.subtrees {
			if d == f || strings.HasPrefix(d, f+"/") {
				bad = append(bad, d+" (forbidden: "+f+")")
			}
		}
		for _, f := range r.exact {
			if d == f {
				bad = append(bad, d)
			}
		}
	}
	return bad
}

func TestDependencyRules(t *testing.T) {
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			for _, v := range r.violations(deps(t, r.pkg)) {
				t.Errorf("%s depends on %s: %s", r.pkg, v, r.why)
			}
		})
	}
}

// TestRulesCanFail proves the matcher sees real dependencies: controller is
// the wiring and must depend on all the parts, and the demo links what the
// edge binary must not.
func TestRulesCanFail(t *testing.T) {
	tests := []struct {
		pkg  string
		want []string
	}{
		{"controller", []string{mod + "reader", mod + "policy", mod + "sync", prom + "/client_golang/prometheus"}},
		{"cmd/tobira-demo", []string{mod + "hq", mochi + "/v2"}},
	}
	for _, tt := range tests {
		d := deps(t, tt.pkg)
		for _, want := range tt.want {
			if v := (rule{subtrees: []string{want}}).violations(d); len(v) == 0 {
				t.Errorf("%s does not depend on %s: the dependency listing or the matcher is broken", tt.pkg, want)
			}
		}
	}
	if v := (rule{exact: []string{mod + "sync"}}).violations([]string{mod + "sync/proto"}); len(v) != 0 {
		t.Errorf("an exact rule matched a subpackage: %v", v)
	}
}

// TestTobiraHQBuildsWithoutCgo: tobira-hq must build with CGO disabled, so
// that it runs from a static binary on any server (a cgo dependency such as
// libpcsclite sneaking in breaks that).
func TestTobiraHQBuildsWithoutCgo(t *testing.T) {
	cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "tobira-hq"), mod+"cmd/tobira-hq")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/tobira-hq: %v\n%s", err, out)
	}
}
