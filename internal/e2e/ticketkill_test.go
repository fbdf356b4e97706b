package e2e_test

// The processes of TestTicketsUnderRandomFaults: HQ and each gate run in a
// child process of their own (the test binary again, its role chosen by
// envTicketChild in TestMain) that the test SIGKILLs at random points;
// their bbolt files survive the kill. The test drives a child through its
// stdin, one command a line, and reads one answer a line from its stdout
// ("ok <answer>" or "err <problem>"); closing stdin stops it cleanly.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/faultproxy"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Environment of a ticket child.
const (
	envTicketChild   = "TOBIRA_TEST_TICKET_CHILD"   // its role: "gate" or "hq"
	envTicketBroker  = "TOBIRA_TEST_TICKET_BROKER"  // the broker's URL
	envTicketDir     = "TOBIRA_TEST_TICKET_DIR"     // where its files live
	envTicketDevice  = "TOBIRA_TEST_TICKET_DEVICE"  // the gate's device name
	envTicketKey     = "TOBIRA_TEST_TICKET_KEY"     // HQ's private key, hex
	envTicketStart   = "TOBIRA_TEST_TICKET_START"   // the event's start, RFC 3339
	envTicketTickets = "TOBIRA_TEST_TICKET_TICKETS" // how many tickets
	envTicketCheck   = "TOBIRA_TEST_TICKET_CHECK"   // the gate's online-check budget
)

// ticketEnv is what a ticket child is told.
type ticketEnv struct {
	role, broker, dir, device string
	key                       ed25519.PrivateKey
	start                     time.Time
	tickets                   int
	check                     time.Duration
}

// environ returns e as environment variables for the child.
func (e ticketEnv) environ() []string {
	return append(os.Environ(), envTicketChild+"="+e.role, envTicketBroker+"="+e.broker, envTicketDir+"="+e.dir,
		envTicketDevice+"="+e.device, envTicketKey+"="+hex.EncodeToString(e.key),
		envTicketStart+"="+e.start.Format(time.RFC3339Nano), envTicketTickets+"="+strconv.Itoa(e.tickets),
		envTicketCheck+"="+e.check.String())
}

// readTicketEnv reads the ticketEnv of a child of role.
func readTicketEnv(role string) (ticketEnv, error) {
	e := ticketEnv{role: role, broker: os.Getenv(envTicketBroker), dir: os.Getenv(envTicketDir), device: os.Getenv(envTicketDevice)}
	key, err := hex.DecodeString(os.Getenv(envTicketKey))
	if err != nil || len(key) != ed25519.PrivateKeySize {
		return e, fmt.Errorf("%s: %d bytes, %v", envTicketKey, len(key), err)
	}
	e.key = key
	if e.start, err = time.Parse(time.RFC3339Nano, os.Getenv(envTicketStart)); err != nil {
		return e, fmt.Errorf("%s: %w", envTicketStart, err)
	}
	if e.tickets, err = strconv.Atoi(os.Getenv(envTicketTickets)); err != nil {
		return e, fmt.Errorf("%s: %w", envTicketTickets, err)
	}
	if e.check, err = time.ParseDuration(os.Getenv(envTicketCheck)); err != nil {
		return e, fmt.Errorf("%s: %w", envTicketCheck, err)
	}
	return e, nil
}

// childCommand answers one command line's arguments.
type childCommand func(args []string) (string, error)

// ticketChild runs the child of role until its stdin closes and returns
// its exit code.
func ticketChild(role string) int {
	env, err := readTicketEnv(role)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ticket child:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("child", role, "device", env.device)
	var cmds map[string]childCommand
	var stop func()
	switch role {
	case "gate":
		cmds, stop, err = startGateChild(env, log)
	case "hq":
		cmds, stop, err = startHQChild(env, log)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ticket child:", err)
		return 1
	}
	defer stop()
	fmt.Println("ready")
	serveCommands(os.Stdin, os.Stdout, cmds)
	return 0
}

// serveCommands answers the command lines of in on out until in ends.
func serveCommands(in io.Reader, out io.Writer, cmds map[string]childCommand) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var ans string
		err := errors.New("empty command")
		if len(f) > 0 {
			if c, ok := cmds[f[0]]; ok {
				ans, err = c(f[1:])
			} else {
				err = fmt.Errorf("unknown command %q", f[0])
			}
		}
		if err != nil {
			fmt.Fprintf(out, "err %v\n", err)
			continue
		}
		fmt.Fprintf(out, "ok %s\n", ans)
	}
}

// atoiAll parses every argument as a ticket number.
func atoiAll(args []string) ([]int, error) {
	is := make([]int, len(args))
	for n, a := range args {
		i, err := strconv.Atoi(a)
		if err != nil {
			return nil, fmt.Errorf("ticket %q: %w", a, err)
		}
		is[n] = i
	}
	return is, nil
}

// startGateChild opens a gate's policy store (the venue's tickets on first
// use), outbox and known-marks file in env.dir and runs its link. Its
// commands: "tap <i>" taps ticket i and answers the decision's reason;
// "learned <i>..." waits up to markWait until the gate holds a mark of
// every ticket listed and answers "yes" or "no".
func startGateChild(env ticketEnv, log *slog.Logger) (map[string]childCommand, func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	store, err := policy.Open(filepath.Join(env.dir, "policy.db"), log)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	closers := []func() error{store.Close}
	stop := func() {
		cancel()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	known, e, err := openGateLink(ctx, env, store, log, &closers)
	if err != nil {
		stop()
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	closers = append(closers, func() error { store.SetTicketCheck(nil, 0); cancel(); return <-done }) // first
	store.SetTicketCheck(e.CheckTicket, env.check)
	cmds := map[string]childCommand{
		"tap": func(args []string) (string, error) {
			is, err := atoiAll(args)
			if err != nil || len(is) != 1 {
				return "", fmt.Errorf("tap %v: want one ticket (%v)", args, err)
			}
			d := store.DecideAt(policy.Request{Credential: ticket(is[0]), Door: env.device, Now: time.Now()})
			if d.Reason == policy.ReasonTicket {
				k, _ := ticket(is[0]).Key()
				if err := known.add(k); err != nil {
					return "", err
				}
				e.Notify()
			}
			return string(d.Reason), nil
		},
		"learned": func(args []string) (string, error) {
			is, err := atoiAll(args)
			if err != nil {
				return "", err
			}
			if known.waitAll(is, markWait) {
				return "yes", nil
			}
			return "no", nil
		},
	}
	return cmds, stop, nil
}

// openGateLink applies the venue's snapshot to a new store, opens the
// outbox and the known-marks file and makes the gate's Edge; what it
// opens is appended to closers.
func openGateLink(ctx context.Context, env ticketEnv, store *policy.Store, log *slog.Logger, closers *[]func() error) (*knownSet, *tsync.Edge, error) {
	if v, err := store.Version(); err != nil || v == 0 {
		if err == nil {
			err = store.ApplyFull(ctx, venueSnapshot(env.tickets, env.start))
		}
		if err != nil {
			return nil, nil, err
		}
	}
	ob, err := tsync.OpenOutbox(filepath.Join(env.dir, "events.db"))
	if err != nil {
		return nil, nil, err
	}
	*closers = append(*closers, ob.Close)
	known, err := openKnown(filepath.Join(env.dir, "known.txt"))
	if err != nil {
		return nil, nil, err
	}
	*closers = append(*closers, known.f.Close)
	e, err := tsync.NewEdge(tsync.EdgeConfig{
		Broker: env.broker, Site: "venue", Device: env.device, Marks: knownMarks{MarkStore: store, known: known},
		TicketChecks: env.check > 0,
		Status: tsync.StatusFunc(func(context.Context) (proto.Status, error) {
			return proto.Status{Doors: []proto.DoorStatus{{Name: env.device}}}, nil
		}),
		Keys: []ed25519.PublicKey{env.key.Public().(ed25519.PublicKey)}, AckTimeout: time.Second,
		ConnectRetry: 200 * time.Millisecond, MaxReconnect: 500 * time.Millisecond, StatusInterval: time.Hour, Logger: log,
	}, ob)
	return known, e, err
}

// knownSet is the tickets a gate holds a mark of (its own or merged). A
// gate child keeps it in a file too so that it outlives a SIGKILL: a line
// is written after the mark is committed and before the peer-marks cursor
// moves past it.
type knownSet struct {
	f      *os.File      // nil: in memory only
	merged chan struct{} // a mark was added (capacity 1)

	mu   sync.Mutex
	keys map[string]bool
}

// newKnownSet returns an empty knownSet in memory.
func newKnownSet() *knownSet {
	return &knownSet{merged: make(chan struct{}, 1), keys: map[string]bool{}}
}

// openKnown reads and appends to the known-marks file at path.
func openKnown(path string) (*knownSet, error) {
	k := newKnownSet()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for line := range strings.Lines(string(b)) {
		if key, err := hex.DecodeString(strings.TrimSpace(line)); err == nil {
			k.keys[string(key)] = true
		}
	}
	if k.f, err = os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

// add records ticket keys.
func (k *knownSet) add(keys ...[]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b bytes.Buffer
	for _, key := range keys {
		if !k.keys[string(key)] {
			k.keys[string(key)] = true
			fmt.Fprintf(&b, "%x\n", key)
		}
	}
	if k.f != nil {
		if _, err := k.f.Write(b.Bytes()); err != nil {
			return fmt.Errorf("record known marks in %s: %w", k.f.Name(), err)
		}
	}
	select {
	case k.merged <- struct{}{}:
	default:
	}
	return nil
}

// missing reports whether a ticket of is has no mark yet.
func (k *knownSet) missing(is []int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, i := range is {
		if key, _ := ticket(i).Key(); !k.keys[string(key)] {
			return true
		}
	}
	return false
}

// waitAll waits up to d until every ticket of is has a mark, and reports
// whether they all do.
func (k *knownSet) waitAll(is []int, d time.Duration) bool {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for k.missing(is) {
		select {
		case <-k.merged:
		case <-timeout.C:
			return false
		}
	}
	return true
}

// knownMarks is a gate child's MarkStore recording every merged ticket.
type knownMarks struct {
	tsync.MarkStore
	known *knownSet
}

// MergePeerMarks implements tsync.MarkStore.
func (w knownMarks) MergePeerMarks(ctx context.Context, marks []policy.UsedMark) (policy.MergeResult, error) {
	r, err := w.MarkStore.MergePeerMarks(ctx, marks)
	if err != nil {
		return r, err
	}
	keys := make([][]byte, len(marks))
	for i, m := range marks {
		keys[i] = m.Ticket
	}
	return r, w.known.add(keys...)
}

// startHQChild opens HQ's store in env.dir with the venue's ticket rules
// and runs it. Its command "reports" answers four counts: the mark
// refusals and conflicts in HQ's mark store, and the device_refused
// events stored for refused=mark_refused and refused=ticket_conflict.
func startHQChild(env ticketEnv, log *slog.Logger) (map[string]childCommand, func(), error) {
	svc, err := hq.Open(hq.Config{Broker: env.broker, Path: filepath.Join(env.dir, "hq.db"), ClientID: "tobira-hq", Key: env.key,
		TicketRules:  venueRules{start: env.start, end: env.start.Add(25 * time.Hour)},
		ConnectRetry: 200 * time.Millisecond, MaxReconnect: 500 * time.Millisecond, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stop := func() {
		cancel()
		<-done
		svc.Close()
	}
	cmds := map[string]childCommand{
		"reports": func([]string) (string, error) {
			reps, err := svc.MarkReports(ctx, "venue")
			if err != nil {
				return "", err
			}
			var refused, conflicts, refusedEvents, conflictEvents int
			for _, r := range reps {
				if r.Kind == hq.ReportConflict {
					conflicts++
				} else {
					refused++
				}
			}
			evs, err := svc.Events("venue", hq.SystemDevice)
			if err != nil {
				return "", err
			}
			for _, ev := range evs {
				refusedEvents += strings.Count(ev.Detail, " refused=mark_refused ")
				conflictEvents += strings.Count(ev.Detail, " refused=ticket_conflict ")
			}
			return fmt.Sprintf("%d %d %d %d", refused, conflicts, refusedEvents, conflictEvents), nil
		},
	}
	return cmds, stop, nil
}

// ticketProc is a ticket child as the test sees it: a process it starts,
// drives, kills and starts again on the same files, reaching the broker
// through its own proxy (down: the process runs offline).
type ticketProc struct {
	t     *testing.T
	env   ticketEnv
	proxy *faultproxy.Proxy
	logs  *childLogs

	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string
	exited chan struct{}
}

// childLogs collects the children's stderr, shown when the test fails.
type childLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// newTicketProc returns a child of role (device: a gate's name) reaching
// m through a proxy of its own, not started. It is stopped when the test
// ends.
func newTicketProc(t *testing.T, logs *childLogs, m *mosquittotest.Mosquitto, env ticketEnv) *ticketProc {
	t.Helper()
	p, err := faultproxy.Start(t.Context(), faultproxy.Config{Target: m.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	env.broker, env.dir = p.URL("tcp"), t.TempDir()
	c := &ticketProc{t: t, env: env, proxy: p, logs: logs}
	t.Cleanup(func() {
		c.stop()
		p.Close()
	})
	return c
}

// name names the child in messages.
func (c *ticketProc) name() string { return cmp.Or(c.env.device, c.env.role) }

// start runs the child and waits until it is ready.
func (c *ticketProc) start() {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = c.env.environ()
	cmd.Stderr = logWriter{c.logs}
	in, err := cmd.StdinPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.cmd, c.in, c.lines, c.exited = cmd, in, make(chan string), make(chan struct{})
	go func(lines chan<- string, exited chan<- struct{}) {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		cmd.Wait()
		close(exited)
	}(c.lines, c.exited)
	if got := c.read(); got != "ready" {
		c.t.Fatalf("%s started with %q, want ready", c.name(), got)
	}
}

// read returns the child's next line.
func (c *ticketProc) read() string {
	c.t.Helper()
	select {
	case l := <-c.lines:
		return l
	case <-c.exited:
		c.t.Fatalf("%s exited (see the children's logs)", c.name())
	case <-time.After(linkDeadline + markWait):
		c.t.Fatalf("%s did not answer within %v", c.name(), linkDeadline+markWait)
	}
	return ""
}

// call sends a command line and returns its answer.
func (c *ticketProc) call(format string, args ...any) string {
	c.t.Helper()
	line := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		c.t.Fatalf("%s %q: %v", c.name(), line, err)
	}
	got := c.read()
	ans, ok := strings.CutPrefix(got, "ok ")
	if !ok {
		c.t.Fatalf("%s %q: %s", c.name(), line, got)
	}
	return ans
}

// kill SIGKILLs the child and waits until it is gone.
func (c *ticketProc) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill %s: %v", c.name(), err)
	}
	<-c.exited
	c.cmd = nil
}

// stop closes the child's stdin (a clean stop) and waits until it is
// gone.
func (c *ticketProc) stop() {
	if c.cmd == nil {
		return
	}
	c.in.Close()
	select {
	case <-c.exited:
	case <-time.After(linkDeadline):
		c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
}

// logWriter appends a child's stderr to the test's childLogs.
type logWriter struct{ l *childLogs }

// Write implements io.Writer.
func (w logWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.l.b.Write(p)
}

// filter returns the last n lines of the logs that keep holds for.
func (l *childLogs) filter(keep func(line string) bool, n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var hits []string
	for line := range strings.Lines(l.b.String()) {
		if keep(line) {
			hits = append(hits, line)
		}
	}
	return strings.Join(hits[max(0, len(hits)-n):], "")
}

// tail returns the last n bytes of the logs.
func (l *childLogs) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.Bytes()
	return string(b[max(0, len(b)-n):])
}
