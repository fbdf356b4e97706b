// Package rabbittest runs a real RabbitMQ cluster (3.10, Debian's
// rabbitmq-server) with the MQTT plugin on 127.0.0.1 for tests.
//
// Every node of a Cluster gets its own name (rabbit1@localhost, ...), AMQP,
// distribution and MQTT ports picked free, and its own database, log and
// config under the test's temporary directory. The nodes share one Erlang
// cookie ($HOME/.erlang.cookie, HOME being the cluster's directory: Erlang
// and the rabbitmqctl CLI read the cookie there and refuse a file other
// users can read) and one epmd, which the cluster starts on a free port
// (ERL_EPMD_PORT) so that clusters of several test binaries never see each
// other's node names. Node 1 boots alone; the others join it on their first
// boot through classic-config peer discovery, so no CLI round trip is needed.
// Durable MQTT subscriptions (clean_session=false) get quorum queues.
//
// A node can be SIGKILLed (its whole process group, as a crash would) and
// restarted with its data. Everything is killed in t.Cleanup, epmd
// included, and the kernel kills the nodes if the test binary dies first.
//
// The server scripts are looked up in $TOBIRA_RABBITMQ_BIN, else
// /usr/lib/rabbitmq/bin (those run the node as the calling user, unlike
// the /usr/sbin wrappers). Without them a test is skipped with the reason,
// or fails when $CI is "true" (scripts/install-deps test installs them).
package rabbittest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/childproc"
	"github.com/tobira-ac/tobira/internal/testenv"
)

// DefaultBin is where Debian's rabbitmq-server package puts the scripts
// that run a node as the calling user.
const DefaultBin = "/usr/lib/rabbitmq/bin"

// bootTimeout bounds how long one node may take to accept MQTT
// connections. A node on a busy 2-core machine boots in 5-15 s.
const bootTimeout = 120 * time.Second

// cookie is the Erlang cookie every node of a test cluster shares.
const cookie = "TOBIRARABBITTESTCOOKIE"

// Options change the cluster Start runs.
type Options struct {
	// Nodes is the number of nodes; default 3.
	Nodes int
	// Config, when set, returns extra rabbitmq.conf lines for node n
	// (e.g. a TLS MQTT listener on n.MQTTSPort); appended after the
	// harness's own lines.
	Config func(n *Node) string
}

// Cluster is a running RabbitMQ cluster of one test.
type Cluster struct {
	t        testing.TB
	bin      string
	dir      string
	epmdPort int
	epmd     *process
	// Nodes are the cluster's nodes; Nodes[0] is rabbit1@localhost.
	Nodes []*Node
	// StartTime is how long the whole cluster took to start, from the
	// first node's launch to the last node accepting MQTT connections.
	StartTime time.Duration
}

// Node is one RabbitMQ node of a Cluster.
type Node struct {
	c *Cluster
	// Name is the Erlang node name, e.g. "rabbit1@localhost".
	Name string
	// Index is the node's number, 1 for the first.
	Index int
	// AMQPPort, DistPort, MQTTPort are the node's listeners on 127.0.0.1.
	AMQPPort, DistPort, MQTTPort int
	// MQTTSPort and AMQPSPort are free ports reserved for TLS listeners
	// that Options.Config may declare; the harness does not use them.
	MQTTSPort, AMQPSPort int
	dir                  string
	opts                 Options

	mu   sync.Mutex
	proc *process
	log  *bytes.Buffer // output of every run of this node
}

// Start runs a RabbitMQ cluster for t and stops it in t.Cleanup. Missing
// RabbitMQ: t.Skip with the reason, or t.Fatal under CI=true.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bin := os.Getenv("TOBIRA_RABBITMQ_BIN")
	if bin == "" {
		bin = DefaultBin
	}
	if err := lookTools(bin); err != nil {
		testenv.Missing(t, "no RabbitMQ for this test: %v", err)
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	c := &Cluster{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(func() { c.stop(t.Failed()) })
	if err := c.start(opts); err != nil {
		t.Fatalf("rabbittest: %v", err)
	}
	return c
}

// lookTools checks that the RabbitMQ scripts and Erlang's epmd are there.
func lookTools(bin string) error {
	if _, err := os.Stat(filepath.Join(bin, "rabbitmq-server")); err != nil {
		return fmt.Errorf("RabbitMQ server scripts in %s: %w (scripts/install-deps test installs rabbitmq-server)", bin, err)
	}
	if _, err := exec.LookPath("epmd"); err != nil {
		return fmt.Errorf("epmd (Erlang) not on PATH: %w", err)
	}
	return nil
}

// start writes the shared files, starts epmd and the nodes: node 1 first,
// then the others in parallel, each joining node 1.
func (c *Cluster) start(opts Options) error {
	began := time.Now()
	cookieFile := filepath.Join(c.dir, ".erlang.cookie")
	if err := os.WriteFile(cookieFile, []byte(cookie), 0o400); err != nil {
		return fmt.Errorf("write Erlang cookie %s: %w", cookieFile, err)
	}
	if err := os.WriteFile(c.pluginsFile(), []byte("[rabbitmq_mqtt,rabbitmq_auth_mechanism_ssl].\n"), 0o644); err != nil {
		return fmt.Errorf("write enabled plugins file: %w", err)
	}
	if err := c.startEpmd(); err != nil {
		return err
	}
	for i := 1; i <= opts.Nodes; i++ {
		n, err := c.newNode(i, opts)
		if err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, n)
	}
	if err := c.Nodes[0].launch(); err != nil {
		return err
	}
	errs := make(chan error, len(c.Nodes))
	for _, n := range c.Nodes[1:] {
		go func() { errs <- n.launch() }()
	}
	var all []error
	for range c.Nodes[1:] {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	c.StartTime = time.Since(began)
	c.t.Logf("rabbittest: %d-node cluster started in %v", len(c.Nodes), c.StartTime.Round(time.Millisecond))
	return nil
}

// pluginsFile is the enabled-plugins file every node reads: the same as
// `rabbitmq-plugins enable rabbitmq_mqtt rabbitmq_auth_mechanism_ssl
// --offline` writes, without a second of Erlang start-up per node. The
// second plugin is the certificate login (SASL EXTERNAL) of AMQP clients.
func (c *Cluster) pluginsFile() string { return filepath.Join(c.dir, "enabled_plugins") }

// startEpmd runs the cluster's own epmd on a free port.
func (c *Cluster) startEpmd() error {
	port, err := testenv.FreePort()
	if err != nil {
		return err
	}
	c.epmdPort = port
	cmd := exec.Command("epmd", "-port", strconv.Itoa(port))
	cmd.Env = c.env()
	p, err := startProcess(cmd, newOutput(new(bytes.Buffer), nil))
	if err != nil {
		return fmt.Errorf("run epmd on port %d: %w", port, err)
	}
	c.epmd = p
	if err := waitListening(context.Background(), net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), p.done, 10*time.Second); err != nil {
		return fmt.Errorf("epmd on port %d: %w", port, err)
	}
	return nil
}

// env is the environment shared by every node and CLI call of the
// cluster.
func (c *Cluster) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + c.dir,
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8",
		"ERL_EPMD_PORT=" + strconv.Itoa(c.epmdPort),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + c.pluginsFile(),
		// No /etc/rabbitmq: neither the host's rabbitmq-env.conf nor its
		// advanced.config may leak into a test.
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(c.dir, "no-rabbitmq-env.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(c.dir, "no-advanced.config"),
		// The CLI's own distribution port: any free one. Its default range
		// 35672-35682 lies among the ephemeral ports the nodes are given.
		"RABBITMQ_CTL_DIST_PORT_MIN=0", "RABBITMQ_CTL_DIST_PORT_MAX=0",
	}
}

// newNode picks node i's ports and directory.
func (c *Cluster) newNode(i int, opts Options) (*Node, error) {
	n := &Node{c: c, Name: fmt.Sprintf("rabbit%d@localhost", i), Index: i, opts: opts, log: new(bytes.Buffer)}
	n.dir = filepath.Join(c.dir, fmt.Sprintf("rabbit%d", i))
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, fmt.Errorf("make directory of %s: %w", n.Name, err)
	}
	for _, p := range []*int{&n.AMQPPort, &n.DistPort, &n.MQTTPort, &n.MQTTSPort, &n.AMQPSPort} {
		var err error
		if *p, err = testenv.FreePort(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// config is the node's rabbitmq.conf.
func (n *Node) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listeners.tcp.default = 127.0.0.1:%d\n", n.AMQPPort)
	fmt.Fprintf(&b, "mqtt.listeners.tcp.default = 127.0.0.1:%d\n", n.MQTTPort)
	b.WriteString("mqtt.durable_queue_type = quorum\n")
	b.WriteString("log.console = true\nlog.console.level = info\nlog.file = false\n")
	if n.Index > 1 {
		b.WriteString("cluster_formation.peer_discovery_backend = classic_config\n")
		fmt.Fprintf(&b, "cluster_formation.classic_config.nodes.1 = %s\n", n.c.Nodes[0].Name)
	}
	if n.opts.Config != nil {
		b.WriteString(n.opts.Config(n))
		b.WriteString("\n")
	}
	return b.String()
}

// env is the environment of the node's server process.
func (n *Node) env() []string {
	return append(n.c.env(),
		"RABBITMQ_NODENAME="+n.Name,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.DistPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_PID_FILE="+filepath.Join(n.dir, "pid"),
		"RABBITMQ_LOGS=-",
		// Set, rabbitmq-server execs the Erlang VM instead of running it
		// behind a shell that traps signals: the process we start is the
		// node, so the parent-death signal and SIGKILL reach it. The node
		// sends its readiness to this socket, which nobody reads.
		"NOTIFY_SOCKET="+filepath.Join(n.dir, "notify"),
	)
}

// launch writes the node's config, starts it and waits until it accepts
// MQTT connections.
func (n *Node) launch() error {
	conf := filepath.Join(n.dir, "rabbitmq.conf")
	if err := os.WriteFile(conf, []byte(n.config()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", conf, err)
	}
	cmd := exec.Command(filepath.Join(n.c.bin, "rabbitmq-server"))
	cmd.Env = n.env()
	cmd.Dir = n.dir
	n.mu.Lock()
	fmt.Fprintf(n.log, "--- start %s (amqp %d, dist %d, mqtt %d)\n", n.Name, n.AMQPPort, n.DistPort, n.MQTTPort)
	n.mu.Unlock()
	p, err := startProcess(cmd, newOutput(n.log, &n.mu))
	if err != nil {
		return fmt.Errorf("run %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	if err := waitListening(context.Background(), n.MQTTAddr(), p.done, bootTimeout); err != nil {
		return fmt.Errorf("%s: %w\n%s", n.Name, err, n.tail())
	}
	return nil
}

// tail returns the end of the node's output, for error messages.
func (n *Node) tail() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := n.log.Bytes()
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// MQTTAddr returns the node's MQTT address, e.g. "127.0.0.1:41883".
func (n *Node) MQTTAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.MQTTPort)) }

// MQTTURL returns the node's MQTT URL for paho, e.g. "tcp://127.0.0.1:41883".
func (n *Node) MQTTURL() string { return "tcp://" + n.MQTTAddr() }

// AMQPURL returns the node's AMQP 0-9-1 URL as the default guest user
// (allowed from loopback only), e.g. "amqp://guest:guest@127.0.0.1:45672/".
func (n *Node) AMQPURL() string {
	return "amqp://guest:guest@" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.AMQPPort)) + "/"
}

// Kill SIGKILLs the node's whole process group, as a crash or a power cut
// would, and waits until it has exited. It does nothing when the node is
// not running.
func (n *Node) Kill() {
	n.mu.Lock()
	p := n.proc
	n.proc = nil
	n.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Restart kills the node if it runs and starts it again with its data,
// ports and config; it waits until the node accepts MQTT connections.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.Kill()
	began := time.Now()
	if err := n.launch(); err != nil {
		t.Fatalf("rabbittest: restart: %v", err)
	}
	t.Logf("rabbittest: %s restarted in %v", n.Name, time.Since(began).Round(time.Millisecond))
}

// Ctl runs rabbitmqctl against the node, e.g. Ctl(ctx, "cluster_status"),
// and returns its output.
func (n *Node) Ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(n.c.bin, "rabbitmqctl"), append([]string{"-n", n.Name}, args...)...)
	cmd.Env = n.c.env()
	cmd.Dir = n.c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl -n %s %s: %w\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MQTTURLs returns every node's MQTT URL, node 1 first.
func (c *Cluster) MQTTURLs() []string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.MQTTURL()
	}
	return urls
}

// stop kills every node and epmd; with failed, it logs each node's output.
func (c *Cluster) stop(failed bool) {
	for _, n := range c.Nodes {
		n.Kill()
		if failed {
			c.t.Logf("rabbittest: output of %s:\n%s", n.Name, n.tail())
		}
	}
	if c.epmd != nil {
		c.epmd.kill()
	}
}

// waitListening polls addr until it accepts a connection, the process
// exits (done closes) or timeout passes.
func waitListening(ctx context.Context, addr string, done <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections on %s after %v: %w", addr, timeout, err)
		case <-done:
			return fmt.Errorf("exited before accepting connections on %s", addr)
		case <-tick.C:
		}
	}
}

// process is a started child in its own process group.
type process struct {
	cmd  *exec.Cmd
	done <-chan struct{} // closed when cmd has exited
}

// output is where a process writes its stdout and stderr.
type output struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

// newOutput returns an output into w, serialised by mu when mu is not nil.
func newOutput(w *bytes.Buffer, mu *sync.Mutex) output {
	if mu == nil {
		mu = new(sync.Mutex)
	}
	return output{mu: mu, w: w}
}

// Write implements io.Writer.
func (o output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Write(p)
}

// startProcess starts cmd in a process group of its own, killed by the
// kernel if the test binary dies (internal/childproc).
func startProcess(cmd *exec.Cmd, out output) (*process, error) {
	cmd.Stdout, cmd.Stderr = out, out
	p, err := childproc.Start(cmd, childproc.Options{Group: true})
	if err != nil {
		return nil, err
	}
	return &process{cmd: cmd, done: p.Done()}, nil
}

// kill SIGKILLs the process group and waits for the leader to exit.
func (p *process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
