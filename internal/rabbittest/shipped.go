package rabbittest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/internal/mosquittotest"
)

// shippedDir is deploy/rabbitmq of this source tree.
func shippedDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("rabbittest: cannot locate the source tree")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "rabbitmq")
}

// notShipped matches the lines of the shipped rabbitmq.conf a test cluster
// replaces: the plain listeners it turns off (the harness keeps its own on
// loopback) and the cluster's node names.
var notShipped = regexp.MustCompile(`(?m)^(listeners\.tcp|mqtt\.listeners\.tcp|cluster_formation\.)[^\n]*\n`)

// StartShipped runs a cluster of opts.Nodes nodes with deploy/rabbitmq's
// rabbitmq.conf: TLS listeners with client certificates issued by ca on
// each node's MQTTSPort and AMQPSPort, a server certificate for 127.0.0.1,
// certificate login. Add users with ImportDefinitions. Connect with
// MQTTSURL.
func StartShipped(t testing.TB, ca *mosquittotest.CA, opts Options) *Cluster {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(shippedDir(t), "rabbitmq.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := ca.Issue(t, mosquittotest.Leaf{CN: "127.0.0.1", Serial: 2, Server: true})
	for name, b := range map[string][]byte{"ca.crt": ca.PEM(), "server.crt": crt, "server.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := notShipped.ReplaceAllString(string(raw), "")
	text = strings.ReplaceAll(text, "/etc/rabbitmq/tobira/", dir+"/")
	for _, l := range []string{"\nmqtt.listeners.ssl.default = 8883\n", "\nlisteners.ssl.default = 5671\n"} {
		if !strings.Contains(text, l) {
			t.Fatalf("shipped rabbitmq.conf has no line %q", strings.TrimSpace(l))
		}
	}
	opts.Config = func(n *Node) string {
		s := strings.Replace(text, "\nmqtt.listeners.ssl.default = 8883\n", fmt.Sprintf("\nmqtt.listeners.ssl.default = 127.0.0.1:%d\n", n.MQTTSPort), 1)
		return strings.Replace(s, "\nlisteners.ssl.default = 5671\n", fmt.Sprintf("\nlisteners.ssl.default = 127.0.0.1:%d\n", n.AMQPSPort), 1)
	}
	return Start(t, opts)
}

// MQTTSURL returns the node's TLS MQTT URL, e.g. "ssl://127.0.0.1:48883",
// for a cluster started by StartShipped.
func (n *Node) MQTTSURL() string {
	return "ssl://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.MQTTSPort))
}

// AMQPSURL returns the node's TLS AMQP URL, e.g. "amqps://127.0.0.1:45671/",
// for a cluster started by StartShipped.
func (n *Node) AMQPSURL() string {
	return "amqps://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.AMQPSPort)) + "/"
}

// ImportDefinitions runs deploy/rabbitmq/tobira-rabbitmq-definitions for
// the devices ("{site}/{device}") and the default HQ user tobira-hq, and
// imports the result into the cluster through node n, as an operator
// would.
func (n *Node) ImportDefinitions(t testing.TB, devices ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(shippedDir(t), "tobira-rabbitmq-definitions"))
	cmd.Stdin = strings.NewReader(strings.Join(devices, "\n") + "\n")
	cmd.Stderr = os.Stderr
	defs, err := cmd.Output()
	if err != nil {
		t.Fatalf("tobira-rabbitmq-definitions: %v", err)
	}
	file := filepath.Join(t.TempDir(), "defs.json")
	if err := os.WriteFile(file, defs, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ctl(t.Context(), "import_definitions", file); err != nil {
		t.Fatal(err)
	}
}
