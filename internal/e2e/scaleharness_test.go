package e2e_test

// The harness of the scale tests (scale_test.go, scalebench_test.go): a
// fleet of simulated gates, each a real sync.Edge with its own bbolt
// outbox and policy store, and HQ replicas that are child processes of the
// real tobira-hq binary, configured through its TOBIRA_HQ_* environment.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// scaleSite is the site of every simulated gate; scaleEvent its ticketed
// event, open at every gate (door group "gates").
const (
	scaleSite  = "venue"
	scaleEvent = "concert"
)

// gateName names simulated gate i (0-based): gate-001, gate-002 ...
func gateName(i int) string { return fmt.Sprintf("gate-%03d", i+1) }

// fleetConfig is what newFleet builds.
type fleetConfig struct {
	gates   int                     // simulated devices
	tickets int                     // tickets the venue sold: the most taps a test makes
	brokers []string                // MQTT URLs; gate i lists them rotated by i
	key     ed25519.PublicKey       // HQ's mark-signing key; nil: no ticket marks (no policy store)
	start   time.Time               // the event's start; it lasts 25 hours
	batch   int                     // events per batch (0: the Edge's default)
	tune    func(*tsync.EdgeConfig) // optional: changes each gate's config
	debug   bool                    // the gates log at Debug (a failure shows their mark and enrollment lines)
}

// scaleSnapshot is the policy every gate holds: cfg.tickets tickets for
// scaleEvent, at every gate of the fleet.
func scaleSnapshot(cfg fleetConfig) policy.Snapshot {
	snap := policy.Snapshot{
		Version: 1,
		Events:  []policy.Event{{ID: scaleEvent, Start: cfg.start, End: cfg.start.Add(25 * time.Hour), DoorGroup: "gates"}},
	}
	for i := range cfg.gates {
		snap.Doors = append(snap.Doors, policy.Door{ID: gateName(i), Groups: []string{"gates"}})
	}
	for i := range cfg.tickets {
		snap.Allow = append(snap.Allow, policy.Entry{Credential: ticket(i), Person: fmt.Sprintf("ticket-%d", i), Event: scaleEvent})
	}
	return snap
}

// scaleGate is one simulated device: a gate with its policy store (the
// ticket marks it made and learned; nil without marks), its outbox and
// its Edge.
type scaleGate struct {
	name  string
	store *policy.Store
	ob    *tsync.Outbox
	edge  *tsync.Edge
	known *knownSet  // tickets it holds a mark of
	logs  *childLogs // the Edge's log, shown when the gate does not drain
}

// fleet is the simulated devices of a test and what they produced.
type fleet struct {
	t       *testing.T
	gates   []*scaleGate
	tickets int // tickets tapped so far: 0 .. tickets-1
	events  int // events appended, over every gate
	enrolls int // enrollment records appended, over every gate
}

// newFleet starts cfg.gates gates; they run until the test ends.
func newFleet(t *testing.T, cfg fleetConfig) *fleet {
	t.Helper()
	f := &fleet{t: t}
	snap := scaleSnapshot(cfg)
	for i := range cfg.gates {
		f.gates = append(f.gates, startScaleGate(t, cfg, snap, i))
	}
	return f
}

// startScaleGate opens gate i's files and runs its Edge until the test
// ends.
func startScaleGate(t *testing.T, cfg fleetConfig, snap policy.Snapshot, i int) *scaleGate {
	t.Helper()
	dir := t.TempDir()
	g := &scaleGate{name: gateName(i), known: newKnownSet(), logs: &childLogs{}}
	var err error
	if g.ob, err = tsync.OpenOutbox(filepath.Join(dir, "events.db")); err != nil {
		t.Fatal(err)
	}
	level := slog.LevelInfo
	if cfg.debug {
		level = slog.LevelDebug
	}
	ecfg := tsync.EdgeConfig{
		Brokers: rotate(cfg.brokers, i), Site: scaleSite, Device: g.name, Batch: cfg.batch,
		Status: tsync.StatusFunc(func(context.Context) (proto.Status, error) {
			return proto.Status{Doors: []proto.DoorStatus{{Name: g.name}}}, nil
		}),
		AckTimeout: 2 * time.Second, RetryDelay: 200 * time.Millisecond,
		ConnectRetry: 200 * time.Millisecond, MaxReconnect: time.Second,
		Logger: slog.New(slog.NewTextHandler(logWriter{g.logs}, &slog.HandlerOptions{Level: level})),
	}
	if cfg.key != nil { // a gate of the ticketed event
		if g.store, err = policy.Open(filepath.Join(dir, "policy.db"), discardLogger()); err != nil {
			t.Fatal(err)
		}
		if err := g.store.ApplyFull(t.Context(), snap); err != nil {
			t.Fatal(err)
		}
		ecfg.Marks, ecfg.Keys = knownMarks{MarkStore: g.store, known: g.known}, []ed25519.PublicKey{cfg.key}
	}
	if cfg.tune != nil {
		cfg.tune(&ecfg)
	}
	if g.edge, err = tsync.NewEdge(ecfg, g.ob); err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, g.edge.Run, func(err error) {
		if err != nil {
			t.Errorf("%s Run: %v", g.name, err)
		}
		g.ob.Close()
		if g.store != nil {
			g.store.Close()
		}
	})
	return g
}

// appendEvents appends n events to the gate's outbox (seqEvent of its next
// sequence numbers) in one transaction.
func (g *scaleGate) appendEvents(n int) error {
	last, err := g.ob.LastSeq()
	if err != nil {
		return err
	}
	evs := make([]proto.Event, n)
	for i := range evs {
		evs[i] = seqEvent(last + 1 + uint64(i))
	}
	_, err = g.ob.AppendAll(evs)
	return err
}

// tap admits ticket i at the gate, which makes a used mark for HQ to
// relay to every other gate.
func (g *scaleGate) tap(i int) error {
	d := g.store.DecideAt(policy.Request{Credential: ticket(i), Door: g.name, Now: time.Now()})
	if d.Reason != policy.ReasonTicket {
		return fmt.Errorf("%s: ticket %d: %s, want admitted", g.name, i, d.Reason)
	}
	k, _ := ticket(i).Key()
	return g.known.add(k)
}

// work is what fleet.produce appends: per gate, and over the whole fleet.
type work struct {
	eventsPerGate int
	taps          int // fresh tickets, each at a random gate
	enrolls       int // enrollment records, each at a random gate
}

// produce appends w to the gates' outboxes and wakes their Edges.
func (f *fleet) produce(rnd *rand.Rand, w work) {
	f.t.Helper()
	for _, g := range f.gates {
		if err := g.appendEvents(w.eventsPerGate); err != nil {
			f.t.Fatal(err)
		}
		f.events += w.eventsPerGate
	}
	for range w.taps {
		if err := f.gates[rnd.IntN(len(f.gates))].tap(f.tickets); err != nil {
			f.t.Fatal(err)
		}
		f.tickets++
	}
	for range w.enrolls {
		g := f.gates[rnd.IntN(len(f.gates))]
		f.enrolls++
		rec, _ := json.Marshal(map[string]any{"test": "scale", "gate": g.name, "n": f.enrolls})
		if _, err := g.ob.AppendEnrollment(rec); err != nil {
			f.t.Fatal(err)
		}
	}
	for _, g := range f.gates {
		g.edge.Notify()
	}
}

// gateError is settle's error about one gate.
type gateError struct {
	gate string
	err  error
}

// gateErr returns a gateError about gate.
func gateErr(gate, format string, args ...any) error {
	return &gateError{gate: gate, err: fmt.Errorf(format, args...)}
}

// Error implements error.
func (e *gateError) Error() string { return e.err.Error() }

// Unwrap returns the cause.
func (e *gateError) Unwrap() error { return e.err }

// gateLogLines is how many of a gate's log lines a failure shows: the
// last ones above Debug, and the last ones about marks and enrollments.
const gateLogLines = 120

// gateLog returns what a failure shows of g's log.
func (g *scaleGate) gateLog() string {
	info := g.logs.filter(func(l string) bool { return !strings.Contains(l, "level=DEBUG") }, gateLogLines)
	marks := g.logs.filter(func(l string) bool { return strings.Contains(l, "mark") || strings.Contains(l, "enroll") }, gateLogLines)
	return fmt.Sprintf("%s's log (last lines above Debug):\n%s%s's log (last lines on marks and enrollments):\n%s", g.name, info, g.name, marks)
}

// outstanding describes what g's outbox holds of enrollments and marks.
func (g *scaleGate) outstanding() string {
	ens, err := g.ob.PendingEnrollments()
	if err != nil {
		return err.Error()
	}
	seqs := make([]uint64, len(ens))
	for i, e := range ens {
		seqs[i] = e.Seq
	}
	ms, err := g.ob.PendingMarks(proto.MaxMarks)
	if err != nil {
		return err.Error()
	}
	marks := "none"
	if len(ms) > 0 {
		marks = fmt.Sprintf("%d (seq %d..%d)", len(ms), ms[0].Seq, ms[len(ms)-1].Seq)
	}
	cur, err := g.ob.PeerMarksCursor()
	return fmt.Sprintf("pending enrollments %v, pending marks %s, peer-marks cursor %d (%v)", seqs, marks, cur, err)
}

// settle waits, within d, until every gate's outbox is empty (events,
// enrollments, marks acknowledged by HQ) and every gate holds a mark of
// every ticket tapped.
func (f *fleet) settle(d time.Duration) error {
	ctx, cancel := context.WithTimeout(f.t.Context(), d)
	defer cancel()
	tapped := make([]int, f.tickets)
	for i := range tapped {
		tapped[i] = i
	}
	for _, g := range f.gates {
		if err := g.edge.WaitDrained(ctx); err != nil {
			return gateErr(g.name, "%s: events not drained: %w\n%s", g.name, err, g.gateLog())
		}
		if err := waitUntil(ctx, func() (bool, error) {
			ens, err := g.ob.PendingEnrollments()
			if err != nil || len(ens) > 0 {
				return false, err
			}
			ms, err := g.ob.PendingMarks(1)
			return len(ms) == 0, err
		}); err != nil {
			return gateErr(g.name, "%s: enrollments or marks not acknowledged: %w: %s\n%s", g.name, err, g.outstanding(), g.gateLog())
		}
		left := time.Until(deadlineOf(ctx))
		if !g.known.waitAll(tapped, max(left, 0)) {
			return gateErr(g.name, "%s: did not learn every ticket mark within %v\n%s", g.name, d, g.gateLog())
		}
	}
	return nil
}

// deadlineOf returns ctx's deadline (now when it has none).
func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now()
	}
	return d
}

// waitUntil polls cond every 20 ms until it holds, fails or ctx ends.
func waitUntil(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// hqBinary builds cmd/tobira-hq into a temporary directory and returns its
// path: the tests run the real binary.
func hqBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tobira-hq")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tobira-ac/tobira/cmd/tobira-hq").CombinedOutput()
	if err != nil {
		t.Fatalf("build tobira-hq: %v\n%s", err, out)
	}
	return bin
}

// hqSetup is what every tobira-hq process of a scale test shares: the
// binary, the PostgreSQL store, the registry file, the signing key.
type hqSetup struct {
	t   *testing.T
	bin string
	env []string // TOBIRA_HQ_* settings common to every command
	key ed25519.PrivateKey
}

// newHQSetup builds tobira-hq, writes HQ's signing key, migrates the
// store at dbURL and fills the registry with the fleet's doors and ticketed
// event (cfg), through tobira-hq's own commands.
func newHQSetup(t *testing.T, dbURL string, cfg fleetConfig) *hqSetup {
	t.Helper()
	dir := t.TempDir()
	_, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "hq.key")
	if err := signed.WriteKeyPair(keyFile, keyFile+".pub", priv); err != nil {
		t.Fatal(err)
	}
	s := &hqSetup{t: t, bin: hqBinary(t), key: priv, env: []string{
		"TOBIRA_HQ_STORE=" + dbURL, "TOBIRA_HQ_REGISTRY=" + filepath.Join(dir, "registry.db"), "TOBIRA_HQ_KEY=" + keyFile,
	}}
	s.run("migrate")
	var doors strings.Builder
	doors.WriteString("door,groups\n")
	for i := range cfg.gates {
		fmt.Fprintf(&doors, "%s,gates\n", gateName(i))
	}
	events := fmt.Sprintf("event,start,end,door_group\n%s,%s,%s,gates\n", scaleEvent,
		cfg.start.Format(time.RFC3339), cfg.start.Add(25*time.Hour).Format(time.RFC3339))
	for table, csv := range map[string]string{"doors": doors.String(), "events": events} {
		path := writeFile(t, dir, table+".csv", []byte(csv))
		s.run("import", table, "--site", scaleSite, "--csv", path)
	}
	return s
}

// run runs a tobira-hq command and returns its standard output.
func (s *hqSetup) run(args ...string) string {
	s.t.Helper()
	cmd := exec.CommandContext(s.t.Context(), s.bin, append(args, "--config", "")...)
	cmd.Env = append(os.Environ(), s.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("tobira-hq %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// pendingEnrollments returns how many enrollments `tobira-hq enroll list`
// shows, and how many of them repeat a (site, device, seq) shown before.
func (s *hqSetup) pendingEnrollments() (n, dups int) {
	s.t.Helper()
	seen := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSpace(s.run("enroll", "list")), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 4 {
			continue // the header
		}
		n++
		key := strings.Join(f[1:4], "/")
		if seen[key] {
			dups++
		}
		seen[key] = true
	}
	return n, dups
}

// hqReplica is one `tobira-hq serve` child process, which the test may
// SIGKILL and start again on the same files.
type hqReplica struct {
	s    *hqSetup
	name string
	env  []string
	logs *childLogs

	cmd    *exec.Cmd
	exited chan struct{}
}

// newReplica returns replica name with its own client ID and bbolt
// directory, extra settings env, not started. It is stopped when the test
// ends and its log shown when the test fails.
func (s *hqSetup) newReplica(name string, env ...string) *hqReplica {
	dir := s.t.TempDir()
	r := &hqReplica{s: s, name: name, logs: &childLogs{}, env: append([]string{
		"TOBIRA_HQ_CLIENT_ID=tobira-hq-" + name, "TOBIRA_HQ_DB=" + filepath.Join(dir, "hq.db"),
	}, env...)}
	s.t.Cleanup(func() {
		r.stop()
		if s.t.Failed() {
			s.t.Logf("replica %s log (tail):\n%s", name, r.logs.tail(8000))
		}
	})
	return r
}

// start runs the replica.
func (r *hqReplica) start() {
	r.s.t.Helper()
	cmd := exec.Command(r.s.bin, "serve", "--config", "")
	cmd.Env = append(append(os.Environ(), r.s.env...), r.env...)
	cmd.Stdout, cmd.Stderr = logWriter{r.logs}, logWriter{r.logs}
	if err := cmd.Start(); err != nil {
		r.s.t.Fatalf("start replica %s: %v", r.name, err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func(exited chan<- struct{}) {
		cmd.Wait()
		close(exited)
	}(r.exited)
}

// kill SIGKILLs the replica and waits until it is gone.
func (r *hqReplica) kill() {
	r.s.t.Helper()
	if r.cmd == nil {
		return
	}
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.s.t.Fatalf("kill replica %s: %v", r.name, err)
	}
	<-r.exited
	r.cmd = nil
}

// stop asks the replica to stop (SIGTERM), SIGKILLs it after linkDeadline
// and waits until it is gone.
func (r *hqReplica) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(linkDeadline):
		r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

// storedMarks is HQ's view of the ticket marks in PostgreSQL: marks,
// distinct tickets among them, the highest mark sequence number, and the
// refusals and conflicts HQ reported.
type storedMarks struct{ rows, tickets, maxSeq, reports int64 }

// countMarks counts the marks tables of the PostgreSQL database at dbURL.
func countMarks(ctx context.Context, dbURL string) (storedMarks, error) {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return storedMarks{}, fmt.Errorf("connect to %s: %w", dbURL, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var s storedMarks
	err = c.QueryRow(ctx, `SELECT count(*), count(DISTINCT ticket), coalesce(max(seq), 0), (SELECT count(*) FROM mark_reports) FROM marks`).
		Scan(&s.rows, &s.tickets, &s.maxSeq, &s.reports)
	if err != nil {
		return s, fmt.Errorf("count marks in %s: %w", dbURL, err)
	}
	return s, nil
}

// storedEvents is HQ's view of the events in PostgreSQL: rows, and rows
// that repeat a (site, device, seq).
type storedEvents struct{ rows, dups int64 }

// countEvents counts the events table of the PostgreSQL database at dbURL.
func countEvents(ctx context.Context, dbURL string) (storedEvents, error) {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return storedEvents{}, fmt.Errorf("connect to %s: %w", dbURL, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var s storedEvents
	err = c.QueryRow(ctx, `SELECT count(*), count(*) - count(DISTINCT (site, device, seq)) FROM events`).Scan(&s.rows, &s.dups)
	if err != nil {
		return s, fmt.Errorf("count events in %s: %w", dbURL, err)
	}
	return s, nil
}
